package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// openSessions returns the logon ids of the host's open logon sessions,
// sorted.
func openSessions(t *testing.T, s *Store) []string {
	t.Helper()
	var ids []string
	for _, r := range logonRows(t, s) {
		if r.EndBefore.IsZero() {
			ids = append(ids, strings.SplitN(r.Key, "/", 2)[1])
		}
	}
	slices.Sort(ids)
	return ids
}

func agentChain(t *testing.T, s *Store, agent string) (hwm, state int64, incarnation *int64) {
	t.Helper()
	err := s.pool.QueryRow(context.Background(), `SELECT applied_sequence, state_sequence, incarnation FROM agent WHERE agent_id = $1`, agent).
		Scan(&hwm, &state, &incarnation)
	if err != nil {
		t.Fatal(err)
	}
	return hwm, state, incarnation
}

// TestSpoolDeletedStartsNewChain: an agent's spool is deleted after 50
// acknowledged reports; the new spool (a new incarnation) numbers from 1
// again. Its reports are applied, not taken for duplicates of the old
// spool's 1..50, and the store notes the new incarnation.
func TestSpoolDeletedStartsNewChain(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	const agent, oldInc, newInc = "agent-1", uint64(0xfeedface00000001), uint64(0x8000000000000002)
	alice := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	bob := logon("1002", at(30*time.Minute), "CONTOSO", "bob")
	reports := []Report{full(1, at(0), boot1, []LogonSession{alice}, nil)}
	for seq := uint64(2); seq <= 50; seq++ {
		reports = append(reports, Report{Sequence: seq, Kind: KindHeartbeat, BaseSequence: 1, TakenAt: at(time.Duration(seq) * time.Minute)})
	}
	res, err := s.IngestIncarnation(ctx, agent, guid, oldInc, reports)
	if err != nil || res.Acknowledged != 50 || res.Restart != nil {
		t.Fatalf("first spool: %+v, %v", res, err)
	}

	// The spool is deleted: the new one's first report is a Snapshot
	// numbered 1, in which alice logged off and bob on; then a Delta.
	res, err = s.IngestIncarnation(ctx, agent, guid, newInc, []Report{
		full(1, at(60*time.Minute), boot1, []LogonSession{bob}, nil),
		{Sequence: 2, Kind: KindDelta, BaseSequence: 1, TakenAt: at(61 * time.Minute),
			LogonSessions: []LogonSession{logon("1003", at(61*time.Minute), "CONTOSO", "carol")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Applied, []uint64{1, 2}) || len(res.Duplicates) > 0 || res.Acknowledged != 2 {
		t.Errorf("new spool: applied %v, duplicates %v, acknowledged %d; want [1 2] applied, acknowledged 2",
			res.Applied, res.Duplicates, res.Acknowledged)
	}
	if r := res.Restart; r == nil || r.Incarnation != newInc || r.Previous != oldInc || r.PreviousMark != 50 {
		t.Errorf("restart = %+v; want new %x after %x at 50", r, newInc, oldInc)
	}
	if got := openSessions(t, s); !slices.Equal(got, []string{"1002", "1003"}) {
		t.Errorf("open sessions %v; want bob's and carol's (1002, 1003)", got)
	}
	if h := hostState(t, s); !h.LastSeen.Equal(at(61 * time.Minute)) {
		t.Errorf("host last seen %v; want the new spool's last report, +61m", h.LastSeen)
	}
	hwm, state, inc := agentChain(t, s, agent)
	if hwm != 2 || state != 2 || inc == nil || uint64(*inc) != newInc {
		t.Errorf("agent chain: hwm %d state %d incarnation %v; want 2, 2, %x", hwm, state, inc, newInc)
	}
	var note string
	if err := s.pool.QueryRow(ctx, `SELECT note FROM ingest_note WHERE agent_id = $1 AND field = 'Batch.incarnation'`, agent).Scan(&note); err != nil {
		t.Fatalf("no note of the new incarnation: %v", err)
	}
	if !strings.Contains(note, "8000000000000002") || !strings.Contains(note, "up to 50") {
		t.Errorf("note %q", note)
	}

	// The chain goes on in the new incarnation; a retry is a duplicate.
	res, err = s.IngestIncarnation(ctx, agent, guid, newInc, []Report{
		{Sequence: 2, Kind: KindDelta, BaseSequence: 1, TakenAt: at(61 * time.Minute),
			LogonSessions: []LogonSession{logon("1003", at(61*time.Minute), "CONTOSO", "carol")}},
		{Sequence: 3, Kind: KindHeartbeat, BaseSequence: 2, TakenAt: at(62 * time.Minute)},
	})
	if err != nil || !slices.Equal(res.Duplicates, []uint64{2}) || !slices.Equal(res.Applied, []uint64{3}) || res.Restart != nil {
		t.Errorf("after the new incarnation: %+v, %v", res, err)
	}
	// A batch without an incarnation (an older agent) starts nothing.
	res, err = s.Ingest(ctx, agent, guid, []Report{{Sequence: 4, Kind: KindHeartbeat, BaseSequence: 2, TakenAt: at(63 * time.Minute)}})
	if err != nil || res.Acknowledged != 4 || res.Restart != nil {
		t.Errorf("incarnation 0: %+v, %v", res, err)
	}
	if _, _, inc := agentChain(t, s, agent); inc == nil || uint64(*inc) != newInc {
		t.Errorf("incarnation after a batch without one: %v", inc)
	}
}

// TestNewIncarnationNeedsSnapshot: a new incarnation whose first report is
// not a Snapshot asks for a resync (its base is of a chain the store never
// had), and acknowledges nothing of it; the first incarnation an agent sends
// is recorded without starting a new chain.
func TestNewIncarnationNeedsSnapshot(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	alice := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, []LogonSession{alice}, nil),
		Report{Sequence: 2, Kind: KindHeartbeat, BaseSequence: 1, TakenAt: at(time.Minute)})
	// An upgraded agent sends its first incarnation: the same chain.
	res, err := s.IngestIncarnation(ctx, "agent-1", guid, 7, []Report{{Sequence: 3, Kind: KindHeartbeat, BaseSequence: 1, TakenAt: at(2 * time.Minute)}})
	if err != nil || res.Acknowledged != 3 || res.Restart != nil {
		t.Fatalf("first incarnation: %+v, %v", res, err)
	}
	res, err = s.IngestIncarnation(ctx, "agent-1", guid, 8, []Report{{Sequence: 4, Kind: KindHeartbeat, BaseSequence: 3, TakenAt: at(3 * time.Minute)}})
	if !errors.Is(err, ErrResyncRequired) || res.Acknowledged != 0 || res.Restart == nil {
		t.Fatalf("new incarnation without a snapshot: %+v, %v; want a resync acknowledging 0", res, err)
	}
	res, err = s.IngestIncarnation(ctx, "agent-1", guid, 8, []Report{full(5, at(4*time.Minute), boot1, []LogonSession{alice}, nil)})
	if err != nil || res.Acknowledged != 5 || res.Restart != nil {
		t.Fatalf("its snapshot: %+v, %v", res, err)
	}
}

// TestRestoredSpoolDivergesAtMark: a VM is restored from a snapshot taken
// when its spool had reached report 8 (alice on). The store holds 9 and 10
// of the old timeline (Deltas: bob, then dave logged on); the restored agent
// numbers new reports 9', 10', 11' (a Delta adding carol, a Delta ending
// alice, a Heartbeat). 9' cannot be told from a retry of 9, but 10' is
// numbered at the store's mark and was not taken when 10 was: the store asks
// for a resync instead of taking it for a duplicate and then applying 11'
// to the old timeline's state (whose last Delta is 10, 11's base). The
// Snapshot the agent sends next sets the store right.
func TestRestoredSpoolDivergesAtMark(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	alice := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	bob := logon("1002", at(9*time.Minute), "CONTOSO", "bob")
	carol := logon("1003", at(20*time.Minute), "CONTOSO", "carol")
	dave := logon("1004", at(10*time.Minute), "CONTOSO", "dave")
	var old []Report
	for seq := uint64(1); seq <= 8; seq++ {
		old = append(old, full(seq, at(time.Duration(seq)*time.Minute), boot1, []LogonSession{alice}, nil))
	}
	old = append(old,
		Report{Sequence: 9, Kind: KindDelta, BaseSequence: 8, TakenAt: at(9 * time.Minute), LogonSessions: []LogonSession{bob}},
		Report{Sequence: 10, Kind: KindDelta, BaseSequence: 9, TakenAt: at(10 * time.Minute), LogonSessions: []LogonSession{dave}})
	const inc = 42
	if _, err := s.IngestIncarnation(ctx, "agent-1", guid, inc, old[:8]); err != nil {
		t.Fatal(err)
	}
	// The old timeline's last batch; its response is lost, so it is sent
	// again: a retry of the report at the mark is a duplicate.
	for range 2 {
		res, err := s.IngestIncarnation(ctx, "agent-1", guid, inc, old[8:])
		if err != nil || res.Acknowledged != 10 {
			t.Fatalf("old timeline 9..10: %+v, %v", res, err)
		}
	}

	// Restored at 8, twenty minutes later.
	restored := []Report{
		{Sequence: 9, Kind: KindDelta, BaseSequence: 8, TakenAt: at(21 * time.Minute), LogonSessions: []LogonSession{carol}},
		{Sequence: 10, Kind: KindDelta, BaseSequence: 9, TakenAt: at(22 * time.Minute), EndedLogonIDs: []string{"1001"}},
		{Sequence: 11, Kind: KindHeartbeat, BaseSequence: 10, TakenAt: at(23 * time.Minute)},
	}
	res, err := s.IngestIncarnation(ctx, "agent-1", guid, inc, restored)
	var d *DivergedError
	if !errors.Is(err, ErrResyncRequired) || !errors.As(err, &d) || d.Sequence != 10 {
		t.Fatalf("restored timeline: %+v, %v; want a resync at report 10", res, err)
	}
	if res.Acknowledged != 10 || len(res.Applied) != 0 || !slices.Equal(res.Duplicates, []uint64{9}) {
		t.Errorf("restored timeline: applied %v, duplicates %v, acknowledged %d; want nothing applied, 9 a duplicate, 10 acknowledged",
			res.Applied, res.Duplicates, res.Acknowledged)
	}
	var note string
	if err := s.pool.QueryRow(ctx, `SELECT note FROM ingest_note WHERE sequence = 10 AND field = 'Sequence'`).Scan(&note); err != nil ||
		!strings.Contains(note, "older copy") {
		t.Errorf("note of the restored spool: %q, %v", note, err)
	}
	// The agent continues above 10 with a Snapshot: carol alone is on.
	mustIngest(t, s, "agent-1", full(12, at(24*time.Minute), boot1, []LogonSession{carol}, nil))
	if got := openSessions(t, s); !slices.Equal(got, []string{"1003"}) {
		t.Errorf("open sessions %v; want carol's alone", got)
	}
}

// TestReinstallNewIdentity: a host reinstalled without its state directory
// enrolls again as a new agent, whose reports number from 1 in a chain of
// its own: they are applied at once, whatever the old agent's mark.
func TestReinstallNewIdentity(t *testing.T) {
	s, _ := newTestStore(t)
	alice := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	bob := logon("1002", at(time.Hour), "CONTOSO", "bob")
	reports := []Report{full(1, at(0), boot1, []LogonSession{alice}, nil)}
	for seq := uint64(2); seq <= 30; seq++ {
		reports = append(reports, Report{Sequence: seq, Kind: KindHeartbeat, BaseSequence: 1, TakenAt: at(time.Duration(seq) * time.Minute)})
	}
	mustIngest(t, s, "agent-old", reports...)
	res := mustIngest(t, s, "agent-new", full(1, at(time.Hour), boot1, []LogonSession{bob}, nil))
	if !slices.Equal(res.Applied, []uint64{1}) {
		t.Errorf("new agent's first report: %+v; want applied", res)
	}
	if got := openSessions(t, s); !slices.Equal(got, []string{"1002"}) {
		t.Errorf("open sessions %v; want bob's", got)
	}
}

// TestHostFreshnessFollowsStoredReports: a host whose reports are received
// but not stored (taken for duplicates) goes stale; the hosts list says how
// far its stored history reaches, never later than the last receipt.
func TestHostFreshnessFollowsStoredReports(t *testing.T) {
	url := storetestNewDatabase(t)
	ctx := context.Background()
	var clock atomic.Int64
	setClock := func(tm time.Time) { clock.Store(tm.UnixNano()) }
	setClock(at(0))
	s, err := Open(ctx, url, WithClock(func() time.Time { return time.Unix(0, clock.Load()).UTC() }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.EnsurePartitionsBetween(ctx, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	status := func() HostStatus {
		t.Helper()
		p, err := s.Hosts(ctx, HostsQuery{})
		if err != nil || len(p.Items) != 1 {
			t.Fatalf("Hosts = %+v, %v", p, err)
		}
		return p.Items[0]
	}
	stale := func(after time.Duration) bool {
		t.Helper()
		p, err := s.Hosts(ctx, HostsQuery{StaleAfter: after})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Items) == 1
	}
	alice := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	reports := []Report{full(1, at(0), boot1, []LogonSession{alice}, nil)}
	for seq := uint64(2); seq <= 60; seq++ {
		reports = append(reports, Report{Sequence: seq, Kind: KindHeartbeat, BaseSequence: 1, TakenAt: at(time.Duration(seq-1) * time.Minute)})
	}
	setClock(at(59*time.Minute + 2*time.Second))
	mustIngest(t, s, "agent-1", reports...)
	if h := status(); !h.StoredUpTo.Equal(at(59 * time.Minute)) {
		t.Errorf("stored up to %v; want the newest report's taken_at, +59m", h.StoredUpTo)
	}
	// For an hour, the agent (its spool restarted at 1 without an
	// incarnation) sends reports the store takes for duplicates: received,
	// not stored. (60, at the mark, would be found out: another taken_at.)
	for seq := uint64(1); seq <= 59; seq++ {
		setClock(at(time.Duration(59+seq)*time.Minute + 2*time.Second))
		r := Report{Sequence: seq, Kind: KindHeartbeat, BaseSequence: 1, TakenAt: at(time.Duration(59+seq) * time.Minute)}
		if seq == 1 {
			r = full(1, r.TakenAt, boot1, []LogonSession{alice}, nil)
		}
		res := mustIngest(t, s, "agent-1", r)
		if len(res.Applied) > 0 {
			t.Fatalf("report %d applied: %+v", seq, res)
		}
	}
	h := status()
	if !h.StoredUpTo.Equal(at(59*time.Minute)) || !h.LastReceived.Equal(at(118*time.Minute+2*time.Second)) {
		t.Errorf("stored up to %v, last received %v; want +59m, +1h58m2s", h.StoredUpTo, h.LastReceived)
	}
	if !stale(30*time.Minute) || stale(90*time.Minute) {
		t.Errorf("stale after 30m: %v, after 90m: %v; want true, false (history stored up to an hour ago)", stale(30*time.Minute), stale(90*time.Minute))
	}

	// A clock running ahead cannot make the host look fresher than its
	// last receipt.
	setClock(at(121 * time.Minute))
	mustIngest(t, s, "agent-1", full(61, at(150*time.Minute), boot1, []LogonSession{alice}, nil))
	if h := status(); !h.StoredUpTo.Equal(at(121*time.Minute)) || !h.LastSeen.Equal(at(150*time.Minute)) {
		t.Errorf("stored up to %v, last seen %v; want the receipt (+121m), the report (+150m)", h.StoredUpTo, h.LastSeen)
	}
	setClock(at(150 * time.Minute))
	if !stale(20*time.Minute) || stale(40*time.Minute) {
		t.Errorf("stale after 20m: %v, after 40m: %v; want true, false", stale(20*time.Minute), stale(40*time.Minute))
	}

	// A host enrolled that never stored a report: its enrollment time.
	if _, err := s.pool.Exec(ctx, `INSERT INTO host (machine_guid, first_received, last_received) VALUES ($1, $2, $3)`,
		guid2, at(100*time.Minute), at(140*time.Minute)); err != nil {
		t.Fatal(err)
	}
	p, err := s.Hosts(ctx, HostsQuery{})
	if err != nil || len(p.Items) != 2 || p.Items[0].Host.MachineGUID != guid2 {
		t.Fatal(p, err)
	}
	if got := p.Items[0].StoredUpTo; !got.Equal(at(100 * time.Minute)) {
		t.Errorf("host without reports: stored up to %v; want its first receipt, +100m", got)
	}
}
