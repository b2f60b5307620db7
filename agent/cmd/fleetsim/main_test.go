package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDispatch: help lists every mode, each mode's --help documents its
// flags, and mistakes are usage errors (status 2) that say what is wrong.
func TestDispatch(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout
		err  string // in stderr
	}{
		{[]string{"help"}, 0, "bench-connections", ""},
		{nil, 2, "Modes:", ""},
		{[]string{"run", "--help"}, 0, "--enrollment-secret", ""},
		{[]string{"bench-ingest", "--help"}, 0, "store.Ingest", ""},
		{[]string{"bench-connections", "--help"}, 0, "--p99", ""},
		{[]string{"help", "bench-connections"}, 0, "--steps", ""},
		{[]string{"nope"}, 2, "", `unknown mode "nope"`},
		{[]string{"run"}, 2, "", "--address is required"},
		{[]string{"run", "--address", "x:1", "--ca-cert", "c", "--enrollment-secret", "s", "--hosts", "0"}, 2, "", "--hosts 0"},
		{[]string{"bench-connections", "--database-url", "postgres://x", "--steps", "10,5"}, 2, "", "increasing"},
		{[]string{"bench-ingest", "--bogus"}, 2, "", "not defined"},
	} {
		var stdout, stderr bytes.Buffer
		code := dispatch(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
			t.Errorf("fleetsim %q: status %d, stdout %q, stderr %q; want %d, %q, %q",
				tc.args, code, stdout.String(), stderr.String(), tc.code, tc.out, tc.err)
		}
	}
}
