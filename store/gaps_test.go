package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// Coverage gaps (gaps.go): reports after lost ones are applied, the gap is
// recorded, and until the next complete Snapshot no report vouches for the
// sessions the store had open before the gap.

const gapAgent = "agent-gap"

// The scenario: a Snapshot and a Delta, reports 3..5 lost in the agent's
// spool, then Deltas and a Heartbeat after the gap, a Snapshot, a Delta.
//
//	A  open before the gap, ended by Delta 6 after it
//	B  open before the gap, ended within it (Snapshot 9 lacks it)
//	C  started by Delta 2, ended by Delta 8
//	D  started after the gap (Delta 6), ended by Delta 8
//	E  started within the gap and lasting: first seen by Snapshot 9
//	S  an SMB session open before the gap, ended within it
var (
	gapA = logon("2001", at(-time.Hour), "CONTOSO", "alice")
	gapB = logon("2002", at(-30*time.Minute), "CONTOSO", "bob")
	gapC = logon("2003", at(30*time.Second), "CONTOSO", "carol")
	gapD = logon("2004", at(5*time.Minute+30*time.Second), "CONTOSO", "dave")
	gapE = logon("2005", at(4*time.Minute), "CONTOSO", "erin")
	gapS = server(`\\PC7`, "mallory", 600)
)

func gapReports() [][]Report {
	boot := at(-48 * time.Hour)
	lost := &LostReports{FirstSequence: 3, LastSequence: 5, Reason: GapSpoolDamage}
	d2 := Report{Sequence: 2, Kind: KindDelta, BaseSequence: 1, TakenAt: at(time.Minute), LogonSessions: []LogonSession{gapC}}
	d6 := Report{Sequence: 6, Kind: KindDelta, BaseSequence: 5, TakenAt: at(6 * time.Minute), LostBefore: lost,
		LogonSessions: []LogonSession{gapD}, EndedLogonIDs: []string{gapA.LogonID}}
	h7 := Report{Sequence: 7, Kind: KindHeartbeat, BaseSequence: 6, TakenAt: at(7 * time.Minute)}
	d8 := Report{Sequence: 8, Kind: KindDelta, BaseSequence: 6, TakenAt: at(8 * time.Minute),
		EndedLogonIDs: []string{gapC.LogonID, gapD.LogonID}}
	s9 := full(9, at(9*time.Minute), boot, []LogonSession{gapE}, nil)
	d10 := Report{Sequence: 10, Kind: KindDelta, BaseSequence: 9, TakenAt: at(10 * time.Minute), EndedLogonIDs: []string{gapE.LogonID}}
	// Each inner list is one Ingest call in the database test.
	return [][]Report{
		{full(1, at(0), boot, []LogonSession{gapA, gapB}, []ServerSession{gapS}), d2},
		{d6},
		{h7},
		{d8},
		{s9, d10},
	}
}

// gapWant are the intervals the scenario must leave: every bound true. The
// sessions open before the gap are last seen at its start (1m), never at a
// report after it; D, which started after it, is last seen at its start.
func gapWant() (logons, servers []row) {
	boot := at(-48 * time.Hour)
	l := func(s LogonSession, last, end time.Duration) row {
		return row{Key: bootKey(boot, s.LogonID), Start: s.StartTime, LastSeen: at(last), EndBefore: at(end),
			Account: s.Account.Domain + `\` + s.Account.Name}
	}
	return []row{
			l(gapA, time.Minute, 6*time.Minute),
			l(gapB, time.Minute, 9*time.Minute),
			l(gapC, time.Minute, 8*time.Minute),
			l(gapD, 5*time.Minute+30*time.Second, 8*time.Minute),
			l(gapE, 9*time.Minute, 10*time.Minute),
		}, []row{
			{Key: gapS.ComputerName + "/" + gapS.UserName, Start: at(-10 * time.Minute), LastSeen: at(time.Minute), EndBefore: at(9 * time.Minute)},
		}
}

// TestIntervalCoverageGap applies the scenario in memory, in one call: the
// Delta after the lost reports is applied, the gap is recorded and settled
// by the Snapshot, and no interval claims to have been seen after the gap
// began unless a report after it showed it.
func TestIntervalCoverageGap(t *testing.T) {
	var reports []Report
	for _, call := range gapReports() {
		reports = append(reports, call...)
	}
	d := newIVDict(reports)
	st := &ingestState{hostIntervals: newHostIntervals()}
	st.ids, st.boot = d.ids, unknownBoot
	var res IngestResult
	applied, err := st.applyReports(gapAgent, guid, reports, nil, &res)
	if err != nil {
		t.Fatalf("applyReports: %v", err)
	}
	if want := []uint64{1, 2, 6, 7, 8, 9, 10}; !slices.Equal(applied, want) {
		t.Fatalf("applied %v, want %v", applied, want)
	}
	want := CoverageGap{Host: HostRef{MachineGUID: guid, Hostname: "ws01", Domain: "contoso.local"}, AgentID: gapAgent,
		Reason: GapSpoolDamage, StartTime: at(time.Minute), EndTime: at(6 * time.Minute), SettledAt: at(9 * time.Minute),
		FirstSequence: 3, LastSequence: 5}
	if len(st.gaps) != 1 || st.gaps[0] != want {
		t.Fatalf("gaps %+v,\nwant %+v", st.gaps, want)
	}
	wantLogon, _ := gapWant()
	got := map[string]*logonRow{}
	for _, r := range st.logonRows {
		got[r.sess.LogonID] = r
	}
	for i, s := range []LogonSession{gapA, gapB, gapC, gapD, gapE} {
		r, w := got[s.LogonID], wantLogon[i]
		if r == nil || !r.lastSeen.Equal(w.LastSeen) || !r.endBefore.Equal(w.EndBefore) || !r.sess.StartTime.Equal(w.Start) {
			t.Errorf("%s: %+v, want start %s last %s end %s", s.LogonID, r, w.Start, w.LastSeen, w.EndBefore)
		}
	}
	if st.unsettled() || len(st.incomplete) != 0 || !st.logonSeenAt.Equal(at(10*time.Minute)) {
		t.Errorf("after the settling Snapshot: incomplete %v, logon seen at %s", st.incomplete, st.logonSeenAt)
	}
}

// TestIntervalCoverageGapRules: when lost reports make no gap, and when
// they cannot excuse a broken chain.
func TestIntervalCoverageGapRules(t *testing.T) {
	boot := at(-48 * time.Hour)
	snap := full(1, at(0), boot, []LogonSession{gapA}, nil)
	tests := []struct {
		name     string
		reports  []Report
		hwm      uint64 // what the store already has (before snap)
		resync   bool
		gaps     int
		unsettle bool
	}{
		{
			name: "only Heartbeats lost: the chain is whole, no gap",
			reports: []Report{snap, {Sequence: 4, Kind: KindHeartbeat, BaseSequence: 1, TakenAt: at(4 * time.Minute),
				LostBefore: &LostReports{FirstSequence: 2, LastSequence: 3, Reason: GapSpoolDamage}}},
		},
		{
			name: "a base that the lost reports do not explain asks for a resync",
			reports: []Report{snap, {Sequence: 4, Kind: KindDelta, BaseSequence: 3, TakenAt: at(4 * time.Minute),
				LostBefore: &LostReports{FirstSequence: 2, LastSequence: 2, Reason: GapSpoolDamage}}},
			resync: true,
		},
		{
			name: "a Snapshot after lost reports: a gap, settled at once",
			reports: []Report{snap, func() Report {
				r := full(5, at(5*time.Minute), boot, []LogonSession{gapA}, nil)
				r.LostBefore = &LostReports{FirstSequence: 2, LastSequence: 4}
				return r
			}()},
			gaps: 1,
		},
		{
			name: "a Snapshot with a failed class keeps the state unsettled",
			reports: []Report{snap,
				{Sequence: 5, Kind: KindDelta, BaseSequence: 4, TakenAt: at(5 * time.Minute),
					LostBefore: &LostReports{FirstSequence: 2, LastSequence: 4}},
				ivFailed(full(6, at(6*time.Minute), boot, []LogonSession{gapA}, nil), ClassServerSession)},
			gaps: 1, unsettle: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newIVDict(tt.reports)
			st := &ingestState{hostIntervals: newHostIntervals()}
			st.ids, st.boot = d.ids, unknownBoot
			var res IngestResult
			_, err := st.applyReports(gapAgent, guid, tt.reports, nil, &res)
			if resync := errors.Is(err, ErrResyncRequired); resync != tt.resync {
				t.Fatalf("err %v, want resync %v", err, tt.resync)
			}
			if len(st.gaps) != tt.gaps || st.unsettled() != tt.unsettle {
				t.Fatalf("gaps %+v, unsettled %v; want %d gaps, unsettled %v", st.gaps, st.unsettled(), tt.gaps, tt.unsettle)
			}
			for _, g := range st.gaps {
				if g.SettledAt.IsZero() != tt.unsettle {
					t.Errorf("gap %+v: settled %v, want %v", g, !g.SettledAt.IsZero(), !tt.unsettle)
				}
				if g.Reason == "" {
					t.Errorf("gap %+v without a reason", g)
				}
			}
		})
	}
}

// TestCoverageGapStored runs the scenario through PostgreSQL, one Ingest
// call per step and the Heartbeat through IngestHeartbeats: the state
// after the gap stays unsettled across calls, the stored gap is settled by
// the Snapshot of a later call, and the store answers it
// (CoverageGaps, Hosts).
func TestCoverageGapStored(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	calls := gapReports()
	mustIngest(t, s, gapAgent, calls[0]...)
	res := mustIngest(t, s, gapAgent, calls[1]...)
	if !slices.Equal(res.Applied, []uint64{6}) || len(res.Gaps) != 1 {
		t.Fatalf("the Delta after the lost reports: applied %v, gaps %+v", res.Applied, res.Gaps)
	}
	if g := res.Gaps[0]; g.Reason != GapSpoolDamage || g.FirstSequence != 3 || g.LastSequence != 5 || g.LostReports() != 3 ||
		!g.StartTime.Equal(at(time.Minute)) || !g.EndTime.Equal(at(6*time.Minute)) || !g.SettledAt.IsZero() {
		t.Fatalf("gap recorded: %+v", g)
	}
	hb := calls[2][0]
	applied, err := s.IngestHeartbeats(ctx, []Heartbeat{{AgentID: gapAgent, MachineGUID: guid, Sequence: hb.Sequence,
		BaseSequence: hb.BaseSequence, TakenAt: hb.TakenAt}})
	if err != nil || !applied[0] {
		t.Fatalf("IngestHeartbeats: %v %v", applied, err)
	}
	if h := hostState(t, s); !h.LastSeen.Equal(at(7*time.Minute)) || !h.LogonSeen.Equal(at(time.Minute)) || !h.ServerSeen.Equal(at(time.Minute)) {
		t.Fatalf("after the Heartbeat following the gap: %+v; want last seen 7m, sessions last vouched for at 1m", h)
	}
	mustIngest(t, s, gapAgent, calls[3]...)
	page, err := s.CoverageGaps(ctx, CoverageGapsQuery{Host: "ws01"})
	if err != nil || len(page.Items) != 1 || !page.Items[0].SettledAt.IsZero() {
		t.Fatalf("before the Snapshot: %+v %v", page, err)
	}
	res = mustIngest(t, s, gapAgent, calls[4]...)
	if len(res.Gaps) != 0 {
		t.Fatalf("the Snapshot recorded gaps %+v", res.Gaps)
	}

	wantLogon, wantServer := gapWant()
	assertRows(t, "logon sessions", logonRows(t, s), wantLogon)
	assertRows(t, "server sessions", serverRows(t, s), wantServer)
	if h := hostState(t, s); !h.LogonSeen.Equal(at(10 * time.Minute)) {
		t.Errorf("after the settling Snapshot and a Delta: %+v", h)
	}

	// The store's answers.
	for _, q := range []CoverageGapsQuery{
		{Host: guid},
		{Host: "WS01.contoso.local", StartTime: at(5 * time.Minute), EndTime: at(time.Hour)},
		{StartTime: at(-time.Hour), EndTime: at(2 * time.Minute)},
		{},
	} {
		page, err := s.CoverageGaps(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		if len(page.Items) != 1 {
			t.Fatalf("%+v: %+v", q, page)
		}
		g := page.Items[0]
		if g.ID == 0 || g.Host.MachineGUID != guid || g.Host.Hostname != "ws01" || g.AgentID != gapAgent ||
			g.Reason != GapSpoolDamage || g.FirstSequence != 3 || g.LastSequence != 5 ||
			!g.StartTime.Equal(at(time.Minute)) || !g.EndTime.Equal(at(6*time.Minute)) || !g.SettledAt.Equal(at(9*time.Minute)) ||
			!g.RecordedAt.Equal(t0.Add(30*24*time.Hour)) {
			t.Errorf("%+v: gap %+v", q, g)
		}
	}
	for _, q := range []CoverageGapsQuery{
		{Host: "no-such-host"},
		{Host: guid, StartTime: at(7 * time.Minute), EndTime: at(time.Hour)},
	} {
		if page, err := s.CoverageGaps(ctx, q); err != nil || len(page.Items) != 0 {
			t.Errorf("%+v: %+v %v", q, page, err)
		}
	}
	if _, err := s.CoverageGaps(ctx, CoverageGapsQuery{StartTime: at(0)}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("a range without its end: %v", err)
	}
	hosts, err := s.Hosts(ctx, HostsQuery{})
	if err != nil || len(hosts.Items) != 1 || hosts.Items[0].CoverageGaps != 1 {
		t.Fatalf("Hosts: %+v %v", hosts, err)
	}

	// Paging, with a second gap.
	lost := &LostReports{FirstSequence: 11, LastSequence: 11, Reason: GapSpoolDamage}
	mustIngest(t, s, gapAgent, Report{Sequence: 12, Kind: KindHeartbeat, BaseSequence: 11, TakenAt: at(12 * time.Minute), LostBefore: lost})
	var ids []int64
	cursor := ""
	for {
		page, err := s.CoverageGaps(ctx, CoverageGapsQuery{PageSize: 1, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range page.Items {
			ids = append(ids, g.ID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Fatalf("paged gap ids %v", ids)
	}

	// Retention deletes a gap with the history it is about: the first
	// (settled at 9m), not the second (ended at 12m).
	if _, err := s.DropPartitionsBefore(ctx, at(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if page, err := s.CoverageGaps(ctx, CoverageGapsQuery{}); err != nil || len(page.Items) != 1 || page.Items[0].ID != ids[1] {
		t.Fatalf("after retention at 10m: %+v %v", page, err)
	}
}

// TestCoverageGapInvalid: a LostBefore that names no reports before its
// report is refused, naming the field.
func TestCoverageGapInvalid(t *testing.T) {
	s, _ := newTestStore(t)
	boot := at(-48 * time.Hour)
	for _, tt := range []struct {
		lost  LostReports
		field string
	}{
		{LostReports{FirstSequence: 0, LastSequence: 1}, "LostBefore.FirstSequence"},
		{LostReports{FirstSequence: 3, LastSequence: 2}, "LostBefore.LastSequence"},
		{LostReports{FirstSequence: 2, LastSequence: 5}, "LostBefore.LastSequence"},
		{LostReports{FirstSequence: 2, LastSequence: 3, Reason: "Spool Damage"}, "LostBefore.Reason"},
	} {
		r := full(5, at(0), boot, nil, nil)
		lost := tt.lost
		r.LostBefore = &lost
		res, err := s.Ingest(context.Background(), gapAgent, guid, []Report{r})
		if err != nil {
			t.Fatal(err)
		}
		var fe *FieldError
		if len(res.Rejected) != 1 || !errors.As(res.Rejected[0].Err, &fe) || fe.Field != tt.field {
			t.Errorf("%+v: rejected %v, want field %s", tt.lost, res.Rejected, tt.field)
		}
	}
}
