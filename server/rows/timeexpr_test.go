package rows

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-03-01T08:00:00Z":      time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC),
		"2026-03-01T09:00:00+01:00": time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC),
		"2026-03-01":                time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		"now":                       now,
		"-2h":                       now.Add(-2 * time.Hour),
		"2h":                        now.Add(-2 * time.Hour),
		"+1h":                       now.Add(time.Hour),
		"30d":                       now.Add(-30 * 24 * time.Hour),
		"2w":                        now.Add(-14 * 24 * time.Hour),
		"1d12h":                     now.Add(-36 * time.Hour),
		" 90m ":                     now.Add(-90 * time.Minute),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2026-13-01", "-", "0h", "d", "-x2h", "1.5d", "2026-03-01 08:00", "--2h"} {
		if _, err := ParseTime(bad, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}
