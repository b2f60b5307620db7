package wmi

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/source"
)

// TestSessionProcessesMarkLingering: with CountSessionProcesses, a snapshot
// queries Win32_SessionProcess last and marks the interactive session with
// no process as lingering since the first pass that saw it so; a process
// clears the mark; a failed query keeps the previous verdict and is no
// collection error; without the option the class is never queried.
func TestSessionProcessesMarkLingering(t *testing.T) {
	f := newFakeWMI(t)
	s, clk := newTestSource(t, f, Options{CountSessionProcesses: true})
	snapshot := func(step string) (lingering string) {
		t.Helper()
		snap, err := s.Snapshot(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		for _, ls := range snap.GetLogonSessions() {
			if ls.GetLogonId() == "999" && ls.GetLingeringSince() != nil {
				t.Fatalf("%s: the System session (type 0) marked lingering", step)
			}
			if ls.GetLogonId() == "123456" && ls.GetLingeringSince() != nil {
				return ls.GetLingeringSince().AsTime().Format(time.RFC3339)
			}
		}
		if n := len(snap.GetErrors()); n != 1 { // the wildcard StartTime only
			t.Fatalf("%s: %d collection errors, want 1: %v", step, n, snap.GetErrors())
		}
		return ""
	}
	first := clk.Now().UTC().Format(time.RFC3339)
	if got := snapshot("no process"); got != first {
		t.Fatalf("no process: lingering since %q, want %q", got, first)
	}
	if q := f.queried(); q[len(q)-1] != source.ClassSessionProcess || !slices.Equal(q[:len(q)-1], QueryOrder) {
		t.Fatalf("queries %v, want QueryOrder then %s", q, source.ClassSessionProcess)
	}
	clk.Advance(time.Minute)
	if got := snapshot("still no process"); got != first {
		t.Fatalf("still no process: lingering since %q, want %q (the first pass)", got, first)
	}
	f.mu.Lock()
	f.fail[source.ClassSessionProcess] = errors.New("WBEM_E_FAILED")
	f.mu.Unlock()
	clk.Advance(time.Minute)
	if got := snapshot("query failed"); got != first {
		t.Fatalf("query failed: lingering since %q, want the previous verdict %q", got, first)
	}
	f.mu.Lock()
	delete(f.fail, source.ClassSessionProcess)
	f.processes = []source.SessionProcessRow{{
		Antecedent: `\\.\root\cimv2:Win32_LogonSession.LogonId="123456"`,
		Dependent:  `\\.\root\cimv2:Win32_Process.Handle="4242"`,
	}}
	f.mu.Unlock()
	clk.Advance(time.Minute)
	if got := snapshot("a process"); got != "" {
		t.Fatalf("a process: lingering since %q, want live", got)
	}

	g := newFakeWMI(t)
	plain, _ := newTestSource(t, g, Options{})
	if _, err := plain.Snapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	if q := strings.Join(g.queried(), ","); strings.Contains(q, source.ClassSessionProcess) {
		t.Fatalf("queried %s without CountSessionProcesses", q)
	}
}
