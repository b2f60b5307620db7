package cim

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors for CIM datetimes; a *DatetimeError wraps one of them, so
// callers can test with errors.Is.
var (
	// ErrSyntax reports a value that is not shaped like a CIM datetime: wrong
	// length, a non-digit where a digit belongs, a missing '.' or sign.
	ErrSyntax = errors.New("malformed CIM datetime")
	// ErrInterval reports a CIM interval (ddddddddHHMMSS.mmmmmm:000), which is
	// a duration, not a moment.
	ErrInterval = errors.New("CIM interval where a datetime was expected")
	// ErrWildcard reports a field given as '*' (not significant) where the
	// parser needs a value: any part of the date or time of day, or the UTC
	// offset. Only microseconds may be wildcarded.
	ErrWildcard = errors.New("wildcarded CIM datetime field")
	// ErrRange reports a field outside its range (month 13, minute 61,
	// February 30).
	ErrRange = errors.New("CIM datetime field out of range")
)

// DatetimeLen is the length of every CIM datetime and interval value.
const DatetimeLen = 25

// MaxOffsetMinutes is the largest UTC offset a CIM datetime can carry: three
// decimal digits of minutes.
const MaxOffsetMinutes = 999

// DatetimeError is the error ParseDatetime returns. It names the input.
type DatetimeError struct {
	// Input is the value that failed to parse, in full.
	Input string
	// Detail says which part is wrong, for people.
	Detail string
	// Err is one of ErrSyntax, ErrInterval, ErrWildcard, ErrRange.
	Err error
}

// Error returns a message naming the input (shortened when very long) and
// the offending field.
func (e *DatetimeError) Error() string {
	return fmt.Sprintf("cim: parse datetime %s: %s", quoteShort(e.Input), e.Detail)
}

// Unwrap returns the sentinel the error wraps.
func (e *DatetimeError) Unwrap() error { return e.Err }

// quoteShort quotes s for an error message, keeping at most 64 bytes of it.
func quoteShort(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q... (%d bytes)", s[:max], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// ParseDatetime parses a CIM datetime, yyyymmddHHMMSS.mmmmmmsUUU, where s is
// '+' or '-' and UUU is the offset from UTC in minutes, and returns the moment
// in UTC. For example "20110328152159.578125-420" is 2011-03-28 22:21:59.578125
// UTC (15:21:59.578125 at UTC-7h).
//
// Wildcards ('*', "not significant") are accepted only in the microseconds:
// "******" yields 0 and trailing wildcards after some digits ("578***")
// yield those digits with the rest 0, a lower precision. A wildcard anywhere
// else (date, hour, minute, second, UTC offset) makes the value unusable as a
// moment and is refused with ErrWildcard: the parser never guesses a day or an
// offset. An interval (sign ':') is refused with ErrInterval. Out-of-range
// fields (month 13, day 31 in April, hour 24, minute 60, second 60) are
// refused with ErrRange. The offset may be any three digits (000 to 999).
//
// The empty value, which is how WMI gives NULL, is refused with ErrSyntax;
// use ParseOptionalDatetime where NULL is allowed.
func ParseDatetime(s string) (time.Time, error) {
	fail := func(err error, format string, args ...any) (time.Time, error) {
		return time.Time{}, &DatetimeError{Input: s, Detail: fmt.Sprintf(format, args...), Err: err}
	}
	if len(s) != DatetimeLen {
		return fail(ErrSyntax, "length %d, want %d (yyyymmddHHMMSS.mmmmmmsUUU)", len(s), DatetimeLen)
	}
	if s[21] == ':' {
		return fail(ErrInterval, "sign ':' at offset 21 marks an interval (ddddddddHHMMSS.mmmmmm:000)")
	}
	if s[14] != '.' {
		return fail(ErrSyntax, "offset 14 is %q, want '.'", s[14])
	}
	if s[21] != '+' && s[21] != '-' {
		return fail(ErrSyntax, "offset 21 is %q, want '+' or '-'", s[21])
	}

	type field struct {
		name     string
		from, to int
		min, max int
	}
	fields := [...]field{
		{"year", 0, 4, 0, 9999},
		{"month", 4, 6, 1, 12},
		{"day", 6, 8, 1, 31},
		{"hour", 8, 10, 0, 23},
		{"minute", 10, 12, 0, 59},
		{"second", 12, 14, 0, 59},
		{"UTC offset", 22, 25, 0, MaxOffsetMinutes},
	}
	var v [len(fields)]int
	for i, f := range fields {
		text := s[f.from:f.to]
		n, wild, ok := digits(text)
		if wild {
			return fail(ErrWildcard, "%s %q is wildcarded; only microseconds may be", f.name, text)
		}
		if !ok {
			return fail(ErrSyntax, "%s %q at offset %d is not %d digits", f.name, text, f.from, f.to-f.from)
		}
		if n < f.min || n > f.max {
			return fail(ErrRange, "%s %s out of range %0*d-%0*d", f.name, text, f.to-f.from, f.min, f.to-f.from, f.max)
		}
		v[i] = n
	}
	year, month, day := v[0], time.Month(v[1]), v[2]
	if last := daysIn(year, month); day > last {
		return fail(ErrRange, "day %02d out of range 01-%02d for %04d-%02d", day, last, year, int(month))
	}

	micro, err := microseconds(s[15:21])
	switch {
	case errors.Is(err, ErrWildcard):
		return fail(err, "microseconds %q: a digit follows a wildcard; wildcards may only trail", s[15:21])
	case err != nil:
		return fail(err, "microseconds %q at offset 15 are not digits or trailing '*'", s[15:21])
	}
	offset := v[6]
	if s[21] == '-' {
		offset = -offset
	}
	zone := time.FixedZone("", offset*60)
	t := time.Date(year, month, day, v[3], v[4], v[5], micro*1000, zone)
	return t.UTC(), nil
}

// ParseOptionalDatetime parses a CIM datetime property that may be NULL. WMI
// gives NULL as the empty string: then ok is false and err nil. Otherwise it
// behaves as ParseDatetime, with ok true on success.
func ParseOptionalDatetime(s string) (t time.Time, ok bool, err error) {
	if s == "" {
		return time.Time{}, false, nil
	}
	t, err = ParseDatetime(s)
	if err != nil {
		return time.Time{}, false, err
	}
	return t, true, nil
}

// FormatDatetime formats t as a CIM datetime expressed at offsetMinutes from
// UTC (for example -420 for UTC-7h), with microsecond precision (finer
// digits are truncated). It fails when the offset is beyond ±999 minutes or
// the year at that offset is outside 0000-9999. ParseDatetime of the result
// gives t truncated to the microsecond, in UTC.
func FormatDatetime(t time.Time, offsetMinutes int) (string, error) {
	if offsetMinutes < -MaxOffsetMinutes || offsetMinutes > MaxOffsetMinutes {
		return "", fmt.Errorf("cim: format datetime %s: offset %d minutes out of range ±%d", t.Format(time.RFC3339Nano), offsetMinutes, MaxOffsetMinutes)
	}
	local := t.In(time.FixedZone("", offsetMinutes*60))
	if y := local.Year(); y < 0 || y > 9999 {
		return "", fmt.Errorf("cim: format datetime %s: year %d out of range 0000-9999", t.Format(time.RFC3339Nano), y)
	}
	sign := byte('+')
	if offsetMinutes < 0 {
		sign = '-'
		offsetMinutes = -offsetMinutes
	}
	return fmt.Sprintf("%04d%02d%02d%02d%02d%02d.%06d%c%03d",
		local.Year(), int(local.Month()), local.Day(),
		local.Hour(), local.Minute(), local.Second(), local.Nanosecond()/1000,
		sign, offsetMinutes), nil
}

// digits parses an all-digit field. wild reports a '*' anywhere in it; ok is
// false for any other non-digit.
func digits(s string) (n int, wild, ok bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '*':
			wild = true
		case c >= '0' && c <= '9':
			n = n*10 + int(c-'0')
		default:
			return 0, false, false
		}
	}
	return n, wild, !wild
}

// microseconds parses the six-character microseconds field: digits followed
// by zero or more '*', which count as 0.
func microseconds(s string) (int, error) {
	n, seenWild := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '*':
			seenWild = true
			n *= 10
		case c >= '0' && c <= '9' && !seenWild:
			n = n*10 + int(c-'0')
		case c >= '0' && c <= '9':
			return 0, ErrWildcard
		default:
			return 0, ErrSyntax
		}
	}
	return n, nil
}

// daysIn returns the number of days of month m of year y (proleptic
// Gregorian, as time.Date).
func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
