package store

import (
	"testing"
	"time"
)

// part is full numbered as part k of n.
func part(r Report, k, n uint32) Report {
	r.Part, r.PartsTotal = k, n
	return r
}

// A snapshot in parts delivered over several calls is applied when its last
// part arrives, as one full snapshot: the sessions of every part stay open,
// and the ones none of them has end.
func TestSnapshotInPartsAcrossCalls(t *testing.T) {
	s, _ := newTestStore(t)
	a := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	b := logon("1002", at(-time.Hour), "CONTOSO", "bob")
	c := logon("1003", at(-time.Hour), "CONTOSO", "carol")
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, []LogonSession{a, b, c}, nil))
	// Part 1 (alice) alone: held, acknowledged, nothing ends.
	res := mustIngest(t, s, "agent-1", part(full(2, at(time.Minute), boot1, []LogonSession{a}, nil), 1, 3))
	if res.Acknowledged != 2 {
		t.Fatalf("acknowledged %d, want 2", res.Acknowledged)
	}
	for _, r := range logonRows(t, s) {
		if !r.EndBefore.IsZero() {
			t.Fatalf("a held part ended %+v", r)
		}
	}
	// Parts 2 (bob) and 3 (none): carol ends.
	mustIngest(t, s, "agent-1",
		part(full(3, at(time.Minute), boot1, []LogonSession{b}, nil), 2, 3),
		part(full(4, at(time.Minute), boot1, nil, nil), 3, 3))
	assertRows(t, "logon sessions", logonRows(t, s), []row{
		{Key: bootKey(boot1, "1001"), Start: at(-time.Hour), Account: `CONTOSO\alice`},
		{Key: bootKey(boot1, "1002"), Start: at(-time.Hour), Account: `CONTOSO\bob`},
		{Key: bootKey(boot1, "1003"), Start: at(-time.Hour), LastSeen: at(0), EndBefore: at(time.Minute), Account: `CONTOSO\carol`},
	})
	var n int
	if err := s.pool.QueryRow(t.Context(), `SELECT count(*) FROM snapshot_part`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d parts still held after the set completed", n)
	}
	// A Delta on the last part applies.
	mustIngest(t, s, "agent-1", Report{Sequence: 5, Kind: KindHeartbeat, BaseSequence: 4, TakenAt: at(2 * time.Minute)})
}

// The "gone = ended" rule is not applied to an incomplete set of parts: a
// last part whose set misses a part ends nothing; its sessions are open.
func TestSnapshotInPartsIncompleteEndsNothing(t *testing.T) {
	s, _ := newTestStore(t)
	a := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	b := logon("1002", at(-time.Hour), "CONTOSO", "bob")
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, []LogonSession{a, b}, nil))
	// Part 1 of 2 (sequence 2) is lost; part 2 (sequence 3) arrives with
	// only bob, after a gap.
	p := part(full(3, at(time.Minute), boot1, []LogonSession{b}, nil), 2, 2)
	p.LostBefore = &LostReports{FirstSequence: 2, LastSequence: 2}
	mustIngest(t, s, "agent-1", p)
	for _, r := range logonRows(t, s) {
		if !r.EndBefore.IsZero() {
			t.Errorf("an incomplete set of parts ended %+v", r)
		}
	}
}
