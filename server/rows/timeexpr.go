package rows

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTime reads a moment as analysts write it, relative to now:
//
//   - RFC 3339, with a zone or Z: 2026-03-01T08:00:00Z, 2026-03-01T09:00:00+01:00
//   - a date, taken as midnight UTC: 2026-03-01
//   - "now"
//   - a duration ago: -2h, 2h, 90m, 30d, 2w (d is 24 hours, w 7 days; a
//     leading "-" or no sign means before now, "+" after now)
//
// The error names what was given and what is accepted.
func ParseTime(s string, now time.Time) (time.Time, error) {
	v := strings.TrimSpace(s)
	if v == "" {
		return time.Time{}, fmt.Errorf("time is empty: want RFC 3339 (2026-03-01T08:00:00Z), a date, now, or a duration ago (-2h, 30d)")
	}
	if strings.EqualFold(v, "now") {
		return now.UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t.UTC(), nil
	}
	sign := time.Duration(-1)
	switch v[0] {
	case '+':
		sign, v = 1, v[1:]
	case '-':
		v = v[1:]
	}
	d, err := ParseDuration(v)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-03-01T08:00:00Z), a date (2026-03-01), now, or a duration ago (-2h, 30d, 2w)", s)
	}
	return now.Add(sign * d).UTC(), nil
}

// ParseDuration reads a positive duration: Go's syntax (1h30m, 90s) plus d
// (24 hours) and w (7 days) as whole-number units (30d, 2w, 1d12h).
func ParseDuration(s string) (time.Duration, error) {
	v := strings.TrimSpace(s)
	var total time.Duration
	for _, unit := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		i := strings.Index(v, unit.suffix)
		if i < 0 {
			continue
		}
		n, err := strconv.ParseUint(v[:i], 10, 16)
		if err != nil {
			return 0, fmt.Errorf("duration %q: want e.g. 90m, 2h, 30d, 2w", s)
		}
		total += time.Duration(n) * unit.d
		v = v[i+1:]
	}
	if v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("duration %q: want e.g. 90m, 2h, 30d, 2w", s)
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("duration %q: want a positive duration, e.g. 90m, 2h, 30d, 2w", s)
	}
	return total, nil
}
