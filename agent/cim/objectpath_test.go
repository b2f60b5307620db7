package cim

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseObjectPath(t *testing.T) {
	tests := []struct {
		in   string
		want ObjectPath
	}{
		{
			in: `\\.\root\cimv2:Win32_Account.Domain="CONTOSO",Name="alice"`,
			want: ObjectPath{Host: ".", Namespace: `root\cimv2`, Class: "Win32_Account",
				Keys: map[string]string{"Domain": "CONTOSO", "Name": "alice"}},
		},
		{
			in: `\\HOST01\root\cimv2:Win32_LogonSession.LogonId="999"`,
			want: ObjectPath{Host: "HOST01", Namespace: `root\cimv2`, Class: "Win32_LogonSession",
				Keys: map[string]string{"LogonId": "999"}},
		},
		{
			in:   `Win32_Account.Name="x",Domain="y"`,
			want: ObjectPath{Class: "Win32_Account", Keys: map[string]string{"Name": "x", "Domain": "y"}},
		},
		{
			in: `root\cimv2:Win32_Account.Domain="NT AUTHORITY",Name="SYSTEM"`,
			want: ObjectPath{Namespace: `root\cimv2`, Class: "Win32_Account",
				Keys: map[string]string{"Domain": "NT AUTHORITY", "Name": "SYSTEM"}},
		},
		{
			in: `//ws01.contoso.com/root/cimv2:Win32_LogonSession.LogonId="4294967297"`,
			want: ObjectPath{Host: "ws01.contoso.com", Namespace: "root/cimv2", Class: "Win32_LogonSession",
				Keys: map[string]string{"LogonId": "4294967297"}},
		},
		{
			// Escaped quote and backslashes; ',' '=' '.' ':' '@' inside quotes.
			in: `Win32_Account.Domain="A\\B",Name="say \"hi\", x=1.2:@"`,
			want: ObjectPath{Class: "Win32_Account",
				Keys: map[string]string{"Domain": `A\B`, "Name": `say "hi", x=1.2:@`}},
		},
		{
			// A '\' before another character is kept.
			in:   `Win32_Account.Name="a\b"`,
			want: ObjectPath{Class: "Win32_Account", Keys: map[string]string{"Name": `a\b`}},
		},
		{
			in:   `Win32_Account.Name=""`,
			want: ObjectPath{Class: "Win32_Account", Keys: map[string]string{"Name": ""}},
		},
		{
			in: `\\.\root\cimv2:Win32_DiskPartition.DiskIndex=0,Index=-1`,
			want: ObjectPath{Host: ".", Namespace: `root\cimv2`, Class: "Win32_DiskPartition",
				Keys: map[string]string{"DiskIndex": "0", "Index": "-1"}},
		},
		{
			in:   `\\.\root\cimv2:Win32_OperatingSystem=@`,
			want: ObjectPath{Host: ".", Namespace: `root\cimv2`, Class: "Win32_OperatingSystem", Singleton: true},
		},
		{in: `Win32_Account`, want: ObjectPath{Class: "Win32_Account"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseObjectPath(tt.in)
			if err != nil {
				t.Fatalf("ParseObjectPath(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseObjectPath(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
			again, err := ParseObjectPath(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("reparse of %q = %#v, %v; want %#v", got.String(), again, err, got)
			}
		})
	}
}

func TestObjectPathKeyCaseInsensitive(t *testing.T) {
	p, err := ParseObjectPath(`Win32_LogonSession.LOGONID="42"`)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"LogonId", "logonid", "LOGONID"} {
		if v, ok := p.Key(name); !ok || v != "42" {
			t.Errorf("Key(%q) = %q, %v; want 42, true", name, v, ok)
		}
	}
	if _, ok := p.Key("Name"); ok {
		t.Error(`Key("Name") found a key that is not there`)
	}
}

func TestParseObjectPathErrors(t *testing.T) {
	tests := []struct {
		in     string
		offset int
		detail string
	}{
		{``, 0, "empty path"},
		{`\\`, 2, "empty host"},
		{`\\host`, 6, "namespace"},
		{`\\host\root\cimv2`, 7, "not followed by ':'"},
		{`\\host\:Win32_Account`, 7, "empty namespace"},
		{`:Win32_Account`, 0, "empty namespace"},
		{`Win32_Account.`, 14, "key name"},
		{`1Class.Name="x"`, 0, "class name"},
		{`Win32_Account.Name`, 18, "expected '='"},
		{`Win32_Account.Name=`, 19, "missing value"},
		{`Win32_Account.Name="alice`, 19, "unterminated"},
		{`Win32_Account.Name="a\"`, 19, "unterminated"},
		{`Win32_Account.Name="a"x`, 22, "expected ','"},
		{`Win32_Account.Name="a",`, 23, "key name"},
		{`Win32_Account.Name="a",name="b"`, 23, "given twice"},
		{`Win32_Account.Name=a b`, 20, "unquoted"},
		{`Win32_Account.Name=,`, 19, "empty unquoted"},
		{`Win32_Account=@x`, 13, "=@"},
		{`Win32_Account="x"`, 13, "=@"},
		{`Win32_Account Name="x"`, 13, "after class name"},
		{`Win32_Account.Name ="x"`, 18, "expected '='"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseObjectPath(tt.in)
			var pe *PathError
			if !errors.As(err, &pe) || !errors.Is(err, ErrPathSyntax) {
				t.Fatalf("ParseObjectPath(%q) error = %v, want a *PathError", tt.in, err)
			}
			if pe.Input != tt.in || pe.Offset != tt.offset || !strings.Contains(pe.Detail, tt.detail) {
				t.Errorf("ParseObjectPath(%q) error = %q (offset %d), want offset %d and %q", tt.in, err, pe.Offset, tt.offset, tt.detail)
			}
			if !strings.Contains(err.Error(), quoteShort(tt.in)) {
				t.Errorf("error %q does not name the input", err)
			}
		})
	}
}

var pathSeeds = []string{
	`\\.\root\cimv2:Win32_Account.Domain="CONTOSO",Name="alice"`,
	`\\HOST01\root\cimv2:Win32_LogonSession.LogonId="999"`,
	`Win32_Account.Name="x",Domain="y"`,
	`root\cimv2:Win32_Account.Domain="NT AUTHORITY",Name="SYSTEM"`,
	`//h/root/cimv2:C.K="v"`,
	`Win32_Account.Domain="A\\B",Name="say \"hi\", x=1.2:@"`,
	`Win32_Account.Name="a\b"`,
	`Win32_DiskPartition.DiskIndex=0,Index=-1`,
	`\\.\root\cimv2:Win32_OperatingSystem=@`,
	`Win32_Account`,
	`Win32_Account.Name="a",name="b"`,
	`\\host\:Win32_Account`,
}

// FuzzParseObjectPath checks that ParseObjectPath never panics, that errors
// name the input and an offset inside it, and that what it accepts prints
// (String) to a path that parses back to the same value.
func FuzzParseObjectPath(f *testing.F) {
	for _, s := range pathSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseObjectPath(s)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) || pe.Input != s || pe.Offset < 0 || pe.Offset > len(s) {
				t.Fatalf("ParseObjectPath(%q) error %v: not a *PathError with the input and an offset in it", s, err)
			}
			return
		}
		again, err := ParseObjectPath(p.String())
		if err != nil {
			t.Fatalf("ParseObjectPath(%q) = %#v, whose String %q does not parse: %v", s, p, p.String(), err)
		}
		if !reflect.DeepEqual(again, p) {
			t.Fatalf("ParseObjectPath(%q) = %#v; reparse of %q = %#v", s, p, p.String(), again)
		}
	})
}

// FuzzObjectPathValues builds Win32_LoggedOnUser-shaped references with
// arbitrary key values and checks that parsing gives the values back.
func FuzzObjectPathValues(f *testing.F) {
	f.Add("CONTOSO", "alice", "HOST01")
	f.Add(`A\B`, `say "hi"`, ".")
	f.Add(`\`, `"`, "x")
	f.Add(`\\"\"`, `,=.:@`, "h")
	f.Add("", "", "h")
	f.Fuzz(func(t *testing.T, domain, name, host string) {
		if host == "" || strings.ContainsAny(host, `\/:`) {
			host = "."
		}
		want := ObjectPath{Host: host, Namespace: `root\cimv2`, Class: "Win32_Account",
			Keys: map[string]string{"Domain": domain, "Name": name}}
		got, err := ParseObjectPath(want.String())
		if err != nil {
			t.Fatalf("ParseObjectPath(%q): %v", want.String(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ParseObjectPath(%q) = %#v, want %#v", want.String(), got, want)
		}
	})
}
