package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDispatch: help lists every mode, each mode's --help documents its
// flags, version prints the version, and mistakes are usage errors (status 2) that say what is wrong.
func TestDispatch(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout
		err  string // in stderr
	}{
		{[]string{"help"}, 0, "version", ""},
		{nil, 2, "Modes:", ""},
		{[]string{"version"}, 0, "fleetsim dev\n", ""},
		{[]string{"version", "extra"}, 2, "", "unexpected argument"},
		{[]string{"run", "--help"}, 0, "--enrollment-secret", ""},
		{[]string{"help", "run"}, 0, "--ca-cert", ""},
		{[]string{"nope"}, 2, "", `unknown mode "nope"`},
		{[]string{"bench-ingest"}, 2, "", "moved to 'collectorbench ingest'"},
		{[]string{"run"}, 2, "", "--address is required"},
		{[]string{"run", "--address", "x:1", "--ca-cert", "c", "--enrollment-secret", "s", "--hosts", "0"}, 2, "", "--hosts 0"},
		{[]string{"run", "--bogus"}, 2, "", "not defined"},
	} {
		var stdout, stderr bytes.Buffer
		code := dispatch(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
			t.Errorf("fleetsim %q: status %d, stdout %q, stderr %q; want %d, %q, %q",
				tc.args, code, stdout.String(), stderr.String(), tc.code, tc.out, tc.err)
		}
	}
}

// TestLogonTypeText: the table names logon types as every other surface
// does (pb.LogonTypeName: rdp, not remote-interactive), "-" when absent.
func TestLogonTypeText(t *testing.T) {
	n := func(v uint32) *uint32 { return &v }
	for _, tc := range []struct {
		raw  *uint32
		want string
	}{{nil, "-"}, {n(0), "system"}, {n(2), "interactive"}, {n(10), "rdp"}, {n(11), "cached-interactive"}, {n(1), "unknown(1)"}, {n(99), "unknown(99)"}} {
		if got := logonTypeText(tc.raw); got != tc.want {
			t.Errorf("logonTypeText(%v) = %q; want %q", deref(tc.raw), got, tc.want)
		}
	}
}

func deref(p *uint32) any {
	if p == nil {
		return nil
	}
	return *p
}
