package store

import (
	"context"
	"slices"
	"testing"
	"time"
)

// A replaced spool (a new incarnation, incarnation.go) loses what the old
// spool held beyond the store's high-water mark, and nobody can say how
// much: the store records a coverage gap (GapSpoolReplaced, no sequences)
// from the host's last observation to the new spool's first report, with
// the rule of gaps.go (the state unsettled until a complete Snapshot).

// TestSpoolReplacedRecordsGap: the old spool delivered up to report 10 (10
// minutes), then held reports it never delivered and was deleted; the new
// spool's first report, a Snapshot at 60 minutes, lacks alice (who left
// within the gap) and shows carol (who came within it). The gap runs from
// 10 to 60 minutes, names no sequences (NULL in the table), and the
// Snapshot settles it at once; alice's end is bounded by the gap. (Before:
// the chain started again with no gap, and the store said nothing of the
// 50 minutes it knew nothing about.)
func TestSpoolReplacedRecordsGap(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	const agent, oldInc, newInc = "agent-1", uint64(0x1111), uint64(0x2222)
	alice := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	bob := logon("1002", at(-time.Hour), "CONTOSO", "bob")
	carol := logon("1003", at(30*time.Minute), "CONTOSO", "carol")
	old := []Report{full(1, at(0), boot1, []LogonSession{alice, bob}, nil)}
	for seq := uint64(2); seq <= 10; seq++ {
		old = append(old, Report{Sequence: seq, Kind: KindHeartbeat, BaseSequence: 1, TakenAt: at(time.Duration(seq) * time.Minute)})
	}
	if res, err := s.IngestIncarnation(ctx, agent, guid, oldInc, old); err != nil || len(res.Gaps) != 0 {
		t.Fatalf("old spool: %+v, %v", res, err)
	}

	res, err := s.IngestIncarnation(ctx, agent, guid, newInc, []Report{
		full(1, at(60*time.Minute), boot1, []LogonSession{bob, carol}, nil),
		{Sequence: 2, Kind: KindHeartbeat, BaseSequence: 1, TakenAt: at(61 * time.Minute)},
	})
	if err != nil || !slices.Equal(res.Applied, []uint64{1, 2}) || res.Restart == nil || res.Restart.PreviousMark != 10 {
		t.Fatalf("new spool: %+v, %v", res, err)
	}
	want := CoverageGap{Host: HostRef{MachineGUID: guid, Hostname: "ws01", Domain: "contoso.local"}, AgentID: agent,
		Reason: GapSpoolReplaced, StartTime: at(10 * time.Minute), EndTime: at(60 * time.Minute), SettledAt: at(60 * time.Minute)}
	if len(res.Gaps) != 1 {
		t.Fatalf("gaps %+v; want one", res.Gaps)
	}
	got := res.Gaps[0]
	got.RecordedAt = time.Time{}
	if got != want || got.LostReports() != 0 {
		t.Errorf("gap %+v,\nwant %+v", got, want)
	}
	page, err := s.CoverageGaps(ctx, CoverageGapsQuery{Host: guid})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("CoverageGaps: %+v, %v", page, err)
	}
	if g := page.Items[0]; g.Reason != GapSpoolReplaced || !g.StartTime.Equal(want.StartTime) || !g.EndTime.Equal(want.EndTime) ||
		!g.SettledAt.Equal(want.SettledAt) || g.FirstSequence != 0 || g.LastSequence != 0 {
		t.Errorf("stored gap %+v", g)
	}
	var nullRange bool
	if err := s.pool.QueryRow(ctx, `SELECT first_sequence IS NULL AND last_sequence IS NULL FROM coverage_gap`).Scan(&nullRange); err != nil || !nullRange {
		t.Errorf("the lost sequences are not known: want NULL first_sequence and last_sequence, got %v, %v", nullRange, err)
	}

	boot := boot1.Format("20060102150405")
	wantRows := []row{
		{Key: boot + "/1001", Start: alice.StartTime, LastSeen: at(10 * time.Minute), EndBefore: at(60 * time.Minute), Account: `CONTOSO\alice`},
		{Key: boot + "/1002", Start: bob.StartTime, Account: `CONTOSO\bob`},
		{Key: boot + "/1003", Start: carol.StartTime, Account: `CONTOSO\carol`},
	}
	if got := logonRows(t, s); !slices.Equal(got, wantRows) {
		t.Errorf("logon intervals\n%v\nwant\n%v", got, wantRows)
	}
	if h := hostState(t, s); !h.LogonSeen.Equal(at(61 * time.Minute)) {
		t.Errorf("logon seen at %v after the settling Snapshot and a Heartbeat; want +61m", h.LogonSeen)
	}
}

// TestSpoolReplacedGapUnsettled: the new spool's first Snapshot has a class
// that failed, so it cannot settle the gap: until a complete Snapshot no
// report vouches for the sessions open before (logon_seen_at stays at the
// gap's start), and the complete Snapshot settles it. A batch of the new
// incarnation after the first records no second gap.
func TestSpoolReplacedGapUnsettled(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	const agent = "agent-1"
	alice := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	if _, err := s.IngestIncarnation(ctx, agent, guid, 7, []Report{full(1, at(0), boot1, []LogonSession{alice}, nil)}); err != nil {
		t.Fatal(err)
	}
	failed := full(1, at(30*time.Minute), boot1, nil, nil)
	failed.CollectionErrors = []CollectionError{{Class: ClassLogonSession, Message: "timeout"}}
	res, err := s.IngestIncarnation(ctx, agent, guid, 8, []Report{failed,
		{Sequence: 2, Kind: KindHeartbeat, BaseSequence: 1, TakenAt: at(31 * time.Minute)}})
	if err != nil || len(res.Gaps) != 1 || !res.Gaps[0].SettledAt.IsZero() || !res.Gaps[0].EndTime.Equal(at(30*time.Minute)) {
		t.Fatalf("new spool, logon class failed: %+v, %v; want one unsettled gap ending at +30m", res.Gaps, err)
	}
	if h := hostState(t, s); !h.LogonSeen.Equal(at(0)) {
		t.Errorf("logon seen at %v while the gap is unsettled; want the gap's start", h.LogonSeen)
	}
	res, err = s.IngestIncarnation(ctx, agent, guid, 8, []Report{full(3, at(40*time.Minute), boot1, nil, nil)})
	if err != nil || len(res.Gaps) != 0 || res.Restart != nil {
		t.Fatalf("complete Snapshot: %+v, %v", res, err)
	}
	page, err := s.CoverageGaps(ctx, CoverageGapsQuery{Host: guid})
	if err != nil || len(page.Items) != 1 || !page.Items[0].SettledAt.Equal(at(40*time.Minute)) {
		t.Fatalf("CoverageGaps: %+v, %v; want one gap settled at +40m", page.Items, err)
	}
	boot := boot1.Format("20060102150405")
	want := []row{{Key: boot + "/1001", Start: alice.StartTime, LastSeen: at(0), EndBefore: at(40 * time.Minute), Account: `CONTOSO\alice`}}
	if got := logonRows(t, s); !slices.Equal(got, want) {
		t.Errorf("logon intervals %v, want %v", got, want)
	}
}
