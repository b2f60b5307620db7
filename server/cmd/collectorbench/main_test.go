package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDispatch: help lists every mode, each mode's --help documents its
// flags, version prints the version, and mistakes are usage errors
// (status 2) that say what is wrong. No mode runs: they need PostgreSQL.
func TestDispatch(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout
		err  string // in stderr
	}{
		{[]string{"help"}, 0, "connections", ""},
		{nil, 2, "Modes:", ""},
		{[]string{"version"}, 0, "collectorbench dev\n", ""},
		{[]string{"ingest", "--help"}, 0, "store.Ingest", ""},
		{[]string{"connections", "--help"}, 0, "--p99", ""},
		{[]string{"collector", "--help"}, 0, "--max-connections", ""},
		{[]string{"unauthenticated", "--help"}, 0, "VmHWM", ""},
		{[]string{"unauthenticated", "--database-url", "postgres://x", "--method", "Renew"}, 2, "", "want Ingest or ListLogonSessions"},
		{[]string{"help", "connections"}, 0, "--steps", ""},
		{[]string{"nope"}, 2, "", `unknown mode "nope"`},
		{[]string{"bench-ingest"}, 2, "", `unknown mode "bench-ingest"`},
		{[]string{"ingest"}, 2, "", "--database-url (or DATABASE_URL) is required"},
		{[]string{"collector", "--database-url", "postgres://x"}, 2, "", "--dir are required"},
		{[]string{"connections", "--database-url", "postgres://x", "--steps", "10,5"}, 2, "", "increasing"},
		{[]string{"ingest", "--bogus"}, 2, "", "not defined"},
		{[]string{"version", "extra"}, 2, "", "unexpected argument"},
	} {
		var stdout, stderr bytes.Buffer
		code := dispatch(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) || !strings.Contains(stderr.String(), tc.err) {
			t.Errorf("collectorbench %q: status %d, stdout %q, stderr %q; want %d, %q, %q",
				tc.args, code, stdout.String(), stderr.String(), tc.code, tc.out, tc.err)
		}
	}
}
