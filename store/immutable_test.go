package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// closedRowsText returns every column, the location and the writing
// transaction of every closed session row: unchanged when no closed row was
// written.
func closedRowsText(t *testing.T, s *Store) string {
	t.Helper()
	var out string
	if err := s.pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(x, E'\n' ORDER BY x), '') FROM (
		SELECT tableoid::regclass || ctid::text || ' xmin ' || xmin::text || ' ' || s::text AS x
		FROM logon_session s WHERE end_before < 'infinity'
		UNION ALL
		SELECT tableoid::regclass || ctid::text || ' xmin ' || xmin::text || ' ' || s::text
		FROM server_session s WHERE end_before < 'infinity') q`).Scan(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// A report that moves the boot back to one the host had left (a compromised
// agent rewriting history, or a virtual machine restored from a snapshot)
// changes no closed row: the sessions it shows get new intervals from its
// observation, and the store notes it (docs/design/0002-storage.md, "Closed
// intervals are immutable").
func TestBootMovedBackChangesNoClosedRow(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	boot5 := at(5 * time.Minute)
	sys := logon("999", boot1.Add(time.Second), "NT AUTHORITY", "SYSTEM")
	alice := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	sys5 := logon("999", boot5.Add(time.Second), "NT AUTHORITY", "SYSTEM")
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, []LogonSession{sys, alice}, []ServerSession{server("PC7", "bob", 60)}))
	mustIngest(t, s, "agent-1", full(2, at(10*time.Minute), boot5, []LogonSession{sys5}, nil))
	before := closedRowsText(t, s)
	if before == "" {
		t.Fatal("no closed rows after the reboot")
	}

	res := mustIngest(t, s, "agent-1", full(3, at(11*time.Minute), boot1,
		[]LogonSession{sys, alice}, []ServerSession{server("PC7", "bob", 720)}))
	if len(res.Anomalies) != 3 || res.Anomalies[0].Field != "Host.LastBootTime" {
		t.Errorf("anomalies = %+v, want the boot moved back, then the logon and server sessions seen again", res.Anomalies)
	}
	after := closedRowsText(t, s)
	// The reboot's interval of SYSTEM closes now; every row closed before is
	// as it was, byte for byte, in the same place.
	var kept int
	for _, line := range strings.Split(before, "\n") {
		if !slices.Contains(strings.Split(after, "\n"), line) {
			t.Errorf("closed row changed:\n  before: %s\nafter:\n%s", line, after)
		}
		kept++
	}
	if kept != 3 {
		t.Errorf("%d closed rows before, want 3", kept)
	}
	assertRows(t, "logon sessions", logonRows(t, s), []row{
		{Key: bootKey(boot1, "999"), Start: boot1.Add(time.Second), LastSeen: at(0), EndBefore: boot5, Account: `NT AUTHORITY\SYSTEM`},
		{Key: bootKey(boot1, "1001"), Start: at(-time.Hour), LastSeen: at(0), EndBefore: boot5, Account: `CONTOSO\alice`},
		{Key: bootKey(boot5, "999"), Start: boot5.Add(time.Second), LastSeen: at(10 * time.Minute), EndBefore: at(11 * time.Minute), Account: `NT AUTHORITY\SYSTEM`},
		{Key: bootKey(boot1, "999"), Start: at(11 * time.Minute), Account: `NT AUTHORITY\SYSTEM`},
		{Key: bootKey(boot1, "1001"), Start: at(11 * time.Minute), Account: `CONTOSO\alice`},
	})
	assertRows(t, "server sessions", serverRows(t, s), []row{
		{Key: "PC7/bob", Start: at(-time.Minute), LastSeen: at(0), EndBefore: boot5},
		{Key: "PC7/bob", Start: at(-time.Minute)},
	})
	var notes int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM ingest_note WHERE sequence = 3 AND field = 'Host.LastBootTime'`).Scan(&notes); err != nil {
		t.Fatal(err)
	}
	if notes != 1 {
		t.Errorf("%d notes of the boot moved back stored, want 1", notes)
	}

	// A later call of the same stay: alice ends and comes back (WMI's stale
	// rows): her new interval reopens; the old one still does not change.
	mustIngest(t, s, "agent-1", full(4, at(12*time.Minute), boot1, []LogonSession{sys}, nil))
	mustIngest(t, s, "agent-1", full(5, at(13*time.Minute), boot1, []LogonSession{sys, alice}, nil))
	final := closedRowsText(t, s)
	for _, line := range strings.Split(before, "\n") {
		if !slices.Contains(strings.Split(final, "\n"), line) {
			t.Errorf("closed row changed by a later call:\n  before: %s\nafter:\n%s", line, final)
		}
	}
	assertRows(t, "logon sessions", logonRows(t, s), []row{
		{Key: bootKey(boot1, "999"), Start: boot1.Add(time.Second), LastSeen: at(0), EndBefore: boot5, Account: `NT AUTHORITY\SYSTEM`},
		{Key: bootKey(boot1, "1001"), Start: at(-time.Hour), LastSeen: at(0), EndBefore: boot5, Account: `CONTOSO\alice`},
		{Key: bootKey(boot5, "999"), Start: boot5.Add(time.Second), LastSeen: at(10 * time.Minute), EndBefore: at(11 * time.Minute), Account: `NT AUTHORITY\SYSTEM`},
		{Key: bootKey(boot1, "999"), Start: at(11 * time.Minute), Account: `NT AUTHORITY\SYSTEM`},
		{Key: bootKey(boot1, "1001"), Start: at(11 * time.Minute), Account: `CONTOSO\alice`},
	})
}
