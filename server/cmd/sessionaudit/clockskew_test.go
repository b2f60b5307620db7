package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHostsClockSkew: `hosts` warns on stderr about each host whose clock
// was last measured more than a minute off the collector's, ahead or
// behind, and leaves its output (table, JSON, CSV) as it was; a host with a
// small skew gets no warning.
func TestHostsClockSkew(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	for guid, skew := range map[string]time.Duration{
		guidFS01: 3*time.Hour + 400*time.Millisecond,
		guidWS01: 20 * time.Second,
		guidDC01: -2 * time.Hour,
	} {
		if ok, err := f.st.RecordClockSkew(ctx, guid, skew, t0.Add(-time.Minute)); !ok || err != nil {
			t.Fatalf("RecordClockSkew %s: %v, %v", guid, ok, err)
		}
	}
	for _, format := range []string{"table", "json", "csv"} {
		args := []string{"hosts"}
		if format != "table" {
			args = append(args, "--"+format)
		}
		r := f.sa(t, args...)
		if r.code != exitOK {
			t.Fatalf("%q: exit %d\nstderr: %s", args, r.code, r.stderr)
		}
		want, err := os.ReadFile(filepath.Join("testdata", "hosts."+format))
		if err != nil {
			t.Fatal(err)
		}
		if r.stdout != string(want) {
			t.Errorf("%q: the output changed with clock skews:\n%s", args, r.stdout)
		}
		lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
		if len(lines) != 2 ||
			!strings.Contains(lines[0], "host fs01 (machine GUID "+guidFS01+"): its clock was 3h0m0s ahead of the collector's (measured 2026-03-10T11:59:00Z)") ||
			!strings.Contains(lines[1], "host dc01 (machine GUID "+guidDC01+"): its clock was 2h0m0s behind the collector's") {
			t.Errorf("%q: stderr %q; want one warning for fs01 (ahead) and one for dc01 (behind), none for ws01", args, r.stderr)
		}
	}
}
