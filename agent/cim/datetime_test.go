package cim

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseDatetime(t *testing.T) {
	utc := func(y int, mo time.Month, d, h, mi, s, us int) time.Time {
		return time.Date(y, mo, d, h, mi, s, us*1000, time.UTC)
	}
	tests := []struct {
		in      string
		want    time.Time
		wantErr error
	}{
		// The documentation's example: 15:21:59.578125 at UTC-7h.
		{in: "20110328152159.578125-420", want: utc(2011, 3, 28, 22, 21, 59, 578125)},
		{in: "20110328152159.578125+420", want: utc(2011, 3, 28, 8, 21, 59, 578125)},
		{in: "20240101000000.000000+000", want: utc(2024, 1, 1, 0, 0, 0, 0)},
		{in: "20240101000000.000000-000", want: utc(2024, 1, 1, 0, 0, 0, 0)},
		// An offset that crosses midnight and a year.
		{in: "20231231233000.000000-060", want: utc(2024, 1, 1, 0, 30, 0, 0)},
		{in: "20240101003000.000000+330", want: utc(2023, 12, 31, 19, 0, 0, 0)},
		{in: "20240229120000.000001+000", want: utc(2024, 2, 29, 12, 0, 0, 1)},
		{in: "00000101000000.000000+000", want: utc(0, 1, 1, 0, 0, 0, 0)},
		{in: "99991231235959.999999+999", want: time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.FixedZone("", 999*60)).UTC()},
		// Wildcarded microseconds: all → 0, trailing → lower precision.
		{in: "20110328152159.******-420", want: utc(2011, 3, 28, 22, 21, 59, 0)},
		{in: "20110328152159.578***-420", want: utc(2011, 3, 28, 22, 21, 59, 578000)},

		// Wildcards anywhere else are refused.
		{in: "****0328152159.578125-420", wantErr: ErrWildcard},
		{in: "2011**28152159.578125-420", wantErr: ErrWildcard},
		{in: "201103**152159.578125-420", wantErr: ErrWildcard},
		{in: "20110328**2159.578125-420", wantErr: ErrWildcard},
		{in: "2011032815**59.578125-420", wantErr: ErrWildcard},
		{in: "201103281521**.578125-420", wantErr: ErrWildcard},
		{in: "20110328152159.578125+***", wantErr: ErrWildcard},
		{in: "********152159.******+***", wantErr: ErrWildcard},
		{in: "20110328152159.5*8125-420", wantErr: ErrWildcard},
		// Intervals.
		{in: "00000001132312.000000:000", wantErr: ErrInterval},
		{in: "99999999235959.999999:000", wantErr: ErrInterval},
		// Lengths and shapes.
		{in: "", wantErr: ErrSyntax},
		{in: "20110328152159", wantErr: ErrSyntax},
		{in: "20110328152159.578125-42", wantErr: ErrSyntax},
		{in: "20110328152159.578125-4200", wantErr: ErrSyntax},
		{in: " 0110328152159.578125-420", wantErr: ErrSyntax},
		{in: "2011-328152159.578125-420", wantErr: ErrSyntax},
		{in: "20110328152159,578125-420", wantErr: ErrSyntax},
		{in: "20110328152159.578125*420", wantErr: ErrSyntax},
		{in: "20110328152159.57812a-420", wantErr: ErrSyntax},
		{in: "20110328152159.578125-4x0", wantErr: ErrSyntax},
		{in: "2011032815215٩.57812-420", wantErr: ErrSyntax}, // non-ASCII digit
		// Ranges.
		{in: "20111328152159.578125-420", wantErr: ErrRange},
		{in: "20110028152159.578125-420", wantErr: ErrRange},
		{in: "20110300152159.578125-420", wantErr: ErrRange},
		{in: "20110332152159.578125-420", wantErr: ErrRange},
		{in: "20110431152159.578125-420", wantErr: ErrRange},
		{in: "20230229152159.578125-420", wantErr: ErrRange},
		{in: "21000229152159.578125-420", wantErr: ErrRange},
		{in: "20110328242159.578125-420", wantErr: ErrRange},
		{in: "20110328156159.578125-420", wantErr: ErrRange},
		{in: "20110328152160.578125-420", wantErr: ErrRange},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDatetime(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ParseDatetime(%q) error = %v, want %v", tt.in, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), quoteShort(tt.in)) {
					t.Errorf("error %q does not name the input", err)
				}
				var de *DatetimeError
				if !errors.As(err, &de) || de.Input != tt.in {
					t.Errorf("error %v is not a *DatetimeError for the input", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDatetime(%q): %v", tt.in, err)
			}
			if !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Errorf("ParseDatetime(%q) = %v, want %v in UTC", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseDatetimeErrorMessages(t *testing.T) {
	for in, want := range map[string]string{
		"20111328152159.578125-420": "month 13 out of range 01-12",
		"20110328156159.578125-420": "minute 61 out of range 00-59",
		"00000001132312.000000:000": "interval",
		"2011**28152159.578125-420": `month "**" is wildcarded`,
	} {
		_, err := ParseDatetime(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), in) {
			t.Errorf("ParseDatetime(%q) error = %v, want it to name the input and say %q", in, err, want)
		}
	}
}

func TestParseOptionalDatetime(t *testing.T) {
	if got, ok, err := ParseOptionalDatetime(""); err != nil || ok || !got.IsZero() {
		t.Errorf(`ParseOptionalDatetime("") = %v, %v, %v; want zero, false, nil`, got, ok, err)
	}
	got, ok, err := ParseOptionalDatetime("20110328152159.578125-420")
	if err != nil || !ok || !got.Equal(time.Date(2011, 3, 28, 22, 21, 59, 578125000, time.UTC)) {
		t.Errorf("ParseOptionalDatetime(valid) = %v, %v, %v", got, ok, err)
	}
	if _, ok, err := ParseOptionalDatetime("garbage"); err == nil || ok {
		t.Errorf("ParseOptionalDatetime(garbage) = %v, %v; want an error", ok, err)
	}
}

func TestFormatDatetime(t *testing.T) {
	tm := time.Date(2011, 3, 28, 22, 21, 59, 578125999, time.UTC)
	for _, tt := range []struct {
		offset int
		want   string
	}{
		{-420, "20110328152159.578125-420"},
		{0, "20110328222159.578125+000"},
		{330, "20110329035159.578125+330"},
	} {
		got, err := FormatDatetime(tm, tt.offset)
		if err != nil || got != tt.want {
			t.Errorf("FormatDatetime(%v, %d) = %q, %v; want %q", tm, tt.offset, got, err, tt.want)
		}
	}
	if _, err := FormatDatetime(tm, 1000); err == nil {
		t.Error("FormatDatetime with offset 1000: no error")
	}
	if _, err := FormatDatetime(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), 0); err == nil {
		t.Error("FormatDatetime of year 10000: no error")
	}
	if _, err := FormatDatetime(time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), -1); err == nil {
		t.Error("FormatDatetime of a moment in year -1 at its offset: no error")
	}
}

// FuzzParseDatetime checks that ParseDatetime never panics, that what it
// accepts formats back to a value that parses to the same moment, and that a
// value without wildcards formats back to itself at its own offset.
func FuzzParseDatetime(f *testing.F) {
	for _, s := range []string{
		"20110328152159.578125-420",
		"20240101000000.000000+000",
		"20240101000000.000000-000",
		"20231231233000.000000-060",
		"99991231235959.999999+999",
		"00000101000000.000000-999",
		"20110328152159.******-420",
		"20110328152159.578***-420",
		"********152159.******+***",
		"00000001132312.000000:000",
		"20110431152159.578125-420",
		"20230229152159.578125-420",
		"20110328152160.578125-420",
		"",
		"2011032815215٩.57812-420",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseDatetime(s)
		if err != nil {
			var de *DatetimeError
			if !errors.As(err, &de) || de.Input != s {
				t.Fatalf("ParseDatetime(%q) error %v is not a *DatetimeError naming the input", s, err)
			}
			return
		}
		if got.Location() != time.UTC {
			t.Fatalf("ParseDatetime(%q) = %v, not UTC", s, got)
		}
		offset := int(s[22]-'0')*100 + int(s[23]-'0')*10 + int(s[24]-'0')
		if s[21] == '-' {
			offset = -offset
		}
		back, err := FormatDatetime(got, offset)
		if err != nil {
			t.Fatalf("FormatDatetime(%v, %d) of parsed %q: %v", got, offset, s, err)
		}
		again, err := ParseDatetime(back)
		if err != nil || !again.Equal(got) {
			t.Fatalf("round trip %q → %v → %q → %v, %v", s, got, back, again, err)
		}
		if !strings.Contains(s, "*") {
			want := s
			if offset == 0 {
				want = s[:21] + "+000"
			}
			if back != want {
				t.Fatalf("FormatDatetime(ParseDatetime(%q)) = %q, want %q", s, back, want)
			}
		}
	})
}
