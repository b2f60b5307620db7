package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

var boot1 = t0.Add(-24 * time.Hour)

// A logon session opens at StartTime, stays open while seen, and ends
// between the last snapshot that had it and the first that did not.
func TestLogonSessionEndsBetweenLastSeenAndFirstMissing(t *testing.T) {
	s, _ := newTestStore(t)
	a := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	b := logon("1002", at(-30*time.Minute), "CONTOSO", "bob")
	mustIngest(t, s, "agent-1",
		full(1, at(0), boot1, []LogonSession{a, b}, nil),
		full(2, at(time.Minute), boot1, []LogonSession{a, b}, nil))
	mustIngest(t, s, "agent-1", full(3, at(2*time.Minute), boot1, []LogonSession{a}, nil))
	assertRows(t, "logon sessions", logonRows(t, s), []row{
		{Key: bootKey(boot1, "1001"), Start: at(-time.Hour), Account: `CONTOSO\alice`},
		{Key: bootKey(boot1, "1002"), Start: at(-30 * time.Minute), LastSeen: at(time.Minute), EndBefore: at(2 * time.Minute), Account: `CONTOSO\bob`},
	})
	if h := hostState(t, s); !h.LogonSeen.Equal(at(2 * time.Minute)) {
		t.Errorf("open sessions' last seen (host logon_seen_at) = %v, want %v", h.LogonSeen, at(2*time.Minute))
	}
	// The query API reports the same bounds.
	p, err := s.WhoWasOn(context.Background(), WhoWasOnQuery{Host: guid, At: at(90 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Logon) != 2 {
		t.Fatalf("WhoWasOn at the uncertain end: %d sessions, want 2", len(p.Logon))
	}
	for _, li := range p.Logon {
		switch li.Session.LogonID {
		case "1001":
			if !li.End.Open || !li.End.LastSeen.Equal(at(2*time.Minute)) {
				t.Errorf("open session end = %+v", li.End)
			}
		case "1002":
			if li.End.Open || !li.End.LastSeen.Equal(at(time.Minute)) || !li.End.EndBefore.Equal(at(2*time.Minute)) {
				t.Errorf("closed session end = %+v", li.End)
			}
		}
	}
}

// An unchanged snapshot writes no session row; the host's last seen advances.
func TestUnchangedSnapshotWritesNoSessionRows(t *testing.T) {
	s, _ := newTestStore(t)
	ls := []LogonSession{logon("1001", at(-time.Hour), "CONTOSO", "alice")}
	ss := []ServerSession{server("10.0.0.5", "alice", 600)}
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, ls, ss))
	before := physical(t, s)
	for i := 2; i <= 5; i++ {
		obs := at(time.Duration(i) * time.Minute)
		ss := []ServerSession{server("10.0.0.5", "alice", 600+uint32(i*60))}
		mustIngest(t, s, "agent-1", full(uint64(i), obs, boot1, ls, ss))
	}
	mustIngest(t, s, "agent-1", Report{Sequence: 6, Kind: KindHeartbeat, BaseSequence: 5, TakenAt: at(6 * time.Minute)})
	if after := physical(t, s); after != before {
		t.Errorf("session rows were rewritten:\nbefore %s\nafter  %s", before, after)
	}
	h := hostState(t, s)
	if !h.LastSeen.Equal(at(6*time.Minute)) || !h.LogonSeen.Equal(at(6*time.Minute)) || !h.ServerSeen.Equal(at(6*time.Minute)) {
		t.Errorf("host times = %+v, want all at +6m", h)
	}
}

// LogonIds are reused after a reboot: a new boot ends every open session of
// the previous one, before the new boot time when that is the tighter bound.
func TestRebootEndsSessionsOfPreviousBoot(t *testing.T) {
	tests := []struct {
		name    string
		newBoot time.Time
		wantEnd time.Time
	}{
		{"boot between last seen and observation", at(5 * time.Minute), at(5 * time.Minute)},
		{"boot before last seen (clock oddity)", at(-2 * time.Minute), at(10 * time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore(t)
			sys := logon("999", boot1.Add(time.Second), "NT AUTHORITY", "SYSTEM")
			mustIngest(t, s, "agent-1", full(1, at(0), boot1,
				[]LogonSession{sys, logon("1001", at(-time.Hour), "CONTOSO", "alice")},
				[]ServerSession{server("10.0.0.5", "alice", 60)}))
			sys2 := logon("999", tt.newBoot.Add(time.Second), "NT AUTHORITY", "SYSTEM")
			mustIngest(t, s, "agent-1", full(2, at(10*time.Minute), tt.newBoot, []LogonSession{sys2}, nil))
			assertRows(t, "logon sessions", logonRows(t, s), []row{
				{Key: bootKey(boot1, "999"), Start: boot1.Add(time.Second), LastSeen: at(0), EndBefore: tt.wantEnd, Account: `NT AUTHORITY\SYSTEM`},
				{Key: bootKey(boot1, "1001"), Start: at(-time.Hour), LastSeen: at(0), EndBefore: tt.wantEnd, Account: `CONTOSO\alice`},
				{Key: bootKey(tt.newBoot, "999"), Start: tt.newBoot.Add(time.Second), Account: `NT AUTHORITY\SYSTEM`},
			})
			assertRows(t, "server sessions", serverRows(t, s), []row{
				{Key: "10.0.0.5/alice", Start: at(-time.Minute), LastSeen: at(0), EndBefore: tt.wantEnd},
			})
		})
	}
}

// A boot time that wobbles within BootJitter is the same boot.
func TestBootJitterIsSameBoot(t *testing.T) {
	s, _ := newTestStore(t)
	ls := []LogonSession{logon("1001", at(-time.Hour), "CONTOSO", "alice")}
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, ls, nil))
	before := physical(t, s)
	mustIngest(t, s, "agent-1", full(2, at(time.Minute), boot1.Add(BootJitter-time.Second), ls, nil))
	if physical(t, s) != before {
		t.Error("a boot time within BootJitter split the sessions")
	}
}

// A server session is (host, ComputerName, UserName, start = observed −
// ActiveTime), tolerant of jitter; a reconnect is a new interval.
func TestServerSessionStartJitterAndReconnect(t *testing.T) {
	tests := []struct {
		name     string
		drift    time.Duration // how far the second computed start moves
		wantRows int
	}{
		{"same start", 0, 1},
		{"jitter within tolerance", ServerStartJitter, 1},
		{"jitter backwards within tolerance", -ServerStartJitter, 1},
		{"moved beyond tolerance: reconnect", ServerStartJitter + time.Second, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore(t)
			mustIngest(t, s, "agent-1", full(1, at(0), boot1, nil, []ServerSession{server("PC7", "bob", 100)}))
			// 60 s later ActiveTime should be 160; a moved start changes it.
			active := uint32(160 - tt.drift/time.Second)
			mustIngest(t, s, "agent-1", full(2, at(time.Minute), boot1, nil, []ServerSession{server("PC7", "bob", active)}))
			got := serverRows(t, s)
			if len(got) != tt.wantRows {
				t.Fatalf("got %d intervals, want %d:\n%s", len(got), tt.wantRows, rowsText(got))
			}
			if tt.wantRows == 2 {
				assertRows(t, "server sessions", got, []row{
					{Key: "PC7/bob", Start: at(-100 * time.Second), LastSeen: at(0), EndBefore: at(time.Minute)},
					{Key: "PC7/bob", Start: at(time.Minute - time.Duration(active)*time.Second)},
				})
			}
		})
	}
}

// A failing class's absence from a full snapshot ends nothing.
func TestCollectionErrorKeepsSessionsOpen(t *testing.T) {
	s, _ := newTestStore(t)
	ls := []LogonSession{logon("1001", at(-time.Hour), "CONTOSO", "alice")}
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, ls, []ServerSession{server("PC7", "bob", 100)}))
	r := full(2, at(time.Minute), boot1, nil, nil)
	r.CollectionErrors = []CollectionError{{Class: ClassServerSession, Message: "0x80041033"}, {Class: ClassLogonSession, Message: "timeout"}}
	mustIngest(t, s, "agent-1", r)
	for _, x := range append(logonRows(t, s), serverRows(t, s)...) {
		if !x.EndBefore.IsZero() {
			t.Errorf("session closed by an incomplete snapshot: %s", x)
		}
	}
	if h := hostState(t, s); !h.LogonSeen.Equal(at(0)) || !h.ServerSeen.Equal(at(0)) || !h.LastSeen.Equal(at(time.Minute)) {
		t.Errorf("host times = %+v: an incomplete class must not advance its last seen", h)
	}
	// A heartbeat confirms that state, its errors included: the incomplete
	// classes' last seen still does not advance.
	mustIngest(t, s, "agent-1", Report{Sequence: 3, Kind: KindHeartbeat, BaseSequence: 2, TakenAt: at(90 * time.Second)})
	if h := hostState(t, s); !h.LogonSeen.Equal(at(0)) || !h.ServerSeen.Equal(at(0)) || !h.LastSeen.Equal(at(90*time.Second)) {
		t.Errorf("host times after heartbeat = %+v", h)
	}
	// A value-only error leaves the list complete.
	r = full(4, at(2*time.Minute), boot1, ls, nil)
	r.CollectionErrors = []CollectionError{{Class: ClassServerSession, Message: "bad InstallDate", ValueOnly: true}}
	mustIngest(t, s, "agent-1", r)
	assertRows(t, "server sessions", serverRows(t, s), []row{
		{Key: "PC7/bob", Start: at(-100 * time.Second), LastSeen: at(0), EndBefore: at(2 * time.Minute)},
	})
}

// Deltas and heartbeats apply to the agent's last stored report; a gap asks
// for a resync and the reports before it stay stored.
func TestDeltaHeartbeatAndResync(t *testing.T) {
	s, _ := newTestStore(t)
	a := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	b := logon("1002", at(30*time.Second), "CONTOSO", "bob")
	res, err := s.Ingest(context.Background(), "agent-1", guid, []Report{
		full(1, at(0), boot1, []LogonSession{a}, []ServerSession{server("PC7", "bob", 100)}),
		{Sequence: 2, Kind: KindDelta, BaseSequence: 1, TakenAt: at(time.Minute),
			LogonSessions: []LogonSession{b}, EndedServerSessions: []ServerSessionKey{{ComputerName: "PC7", UserName: "bob"}}},
		{Sequence: 3, Kind: KindHeartbeat, BaseSequence: 2, TakenAt: at(2 * time.Minute)},
		// Heartbeats do not count as a base (they may be coalesced): the
		// next delta names report 2.
		{Sequence: 4, Kind: KindDelta, BaseSequence: 2, TakenAt: at(3 * time.Minute), EndedLogonIDs: []string{"1001"}},
		{Sequence: 6, Kind: KindDelta, BaseSequence: 5, TakenAt: at(4 * time.Minute), EndedLogonIDs: []string{"1002"}},
		{Sequence: 7, Kind: KindHeartbeat, BaseSequence: 6, TakenAt: at(5 * time.Minute)},
	})
	var re *ResyncError
	if !errors.Is(err, ErrResyncRequired) || !errors.As(err, &re) || re.Sequence != 6 || re.Stored != 4 {
		t.Fatalf("err = %v, want a ResyncError for report 6 with 4 stored", err)
	}
	if fmt.Sprint(res.Applied) != "[1 2 3 4]" || res.Acknowledged != 4 {
		t.Fatalf("Applied = %v, Acknowledged = %d; want [1 2 3 4], 4", res.Applied, res.Acknowledged)
	}
	// A heartbeat naming a heartbeat is refused.
	_, err = s.Ingest(context.Background(), "agent-1", guid, []Report{{Sequence: 5, Kind: KindHeartbeat, BaseSequence: 3, TakenAt: at(4 * time.Minute)}})
	if !errors.Is(err, ErrResyncRequired) {
		t.Fatalf("heartbeat based on a heartbeat: err = %v, want ErrResyncRequired", err)
	}
	assertRows(t, "logon sessions", logonRows(t, s), []row{
		{Key: bootKey(boot1, "1001"), Start: at(-time.Hour), LastSeen: at(2 * time.Minute), EndBefore: at(3 * time.Minute), Account: `CONTOSO\alice`},
		{Key: bootKey(boot1, "1002"), Start: at(30 * time.Second), Account: `CONTOSO\bob`},
	})
	assertRows(t, "server sessions", serverRows(t, s), []row{
		{Key: "PC7/bob", Start: at(-100 * time.Second), LastSeen: at(0), EndBefore: at(time.Minute)},
	})
	// A delta for a brand-new agent has nothing to apply to.
	_, err = s.Ingest(context.Background(), "agent-new", guid, []Report{{Sequence: 2, Kind: KindDelta, BaseSequence: 1, TakenAt: at(6 * time.Minute)}})
	if !errors.Is(err, ErrResyncRequired) {
		t.Fatalf("delta of an unknown agent: err = %v, want ErrResyncRequired", err)
	}
	// The full snapshot after the resync request is applied.
	res = mustIngest(t, s, "agent-1", full(8, at(6*time.Minute), boot1, nil, nil))
	if res.Acknowledged != 8 {
		t.Fatalf("Acknowledged = %d after the resync snapshot, want 8", res.Acknowledged)
	}
}

// A reconnect sent in a Delta ends the old interval and opens a new one.
func TestDeltaServerReconnect(t *testing.T) {
	s, _ := newTestStore(t)
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, nil, []ServerSession{server("PC7", "bob", 100)}),
		Report{Sequence: 2, Kind: KindDelta, BaseSequence: 1, TakenAt: at(time.Minute), ServerSessions: []ServerSession{server("PC7", "bob", 10)}})
	assertRows(t, "server sessions", serverRows(t, s), []row{
		{Key: "PC7/bob", Start: at(-100 * time.Second), LastSeen: at(0), EndBefore: at(time.Minute)},
		{Key: "PC7/bob", Start: at(50 * time.Second)},
	})
}

// A batch delivered twice changes nothing the second time.
func TestDuplicateBatchChangesNothing(t *testing.T) {
	s, _ := newTestStore(t)
	batch := []Report{
		full(1, at(0), boot1, []LogonSession{logon("1001", at(-time.Hour), "CONTOSO", "alice")}, []ServerSession{server("PC7", "bob", 100)}),
		full(2, at(time.Minute), boot1, []LogonSession{logon("1002", at(30*time.Second), "CONTOSO", "bob")}, nil),
		{Sequence: 3, Kind: KindHeartbeat, BaseSequence: 2, TakenAt: at(2 * time.Minute)},
	}
	mustIngest(t, s, "agent-1", batch...)
	before, host := physical(t, s), hostState(t, s)
	res := mustIngest(t, s, "agent-1", batch...)
	if len(res.Applied) != 0 || fmt.Sprint(res.Duplicates) != "[1 2 3]" || res.Acknowledged != 3 {
		t.Fatalf("second delivery: %+v", res)
	}
	if physical(t, s) != before || hostState(t, s) != host {
		t.Error("the second delivery changed the stored state")
	}
}

// Two collectors writing the same host's batches at the same time produce
// neither duplicates nor deadlocks.
func TestConcurrentCollectorsSameHost(t *testing.T) {
	s1, url := newTestStore(t)
	pool2, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	s2 := New(pool2, WithClock(s1.now))
	t.Cleanup(s2.Close)

	// Agent A's snapshots, each delivered to both collectors (a retry
	// through another collector), and agent B (a second identity of the
	// same host) reporting the same sessions.
	const rounds = 40
	snap := func(seq uint64, i int) Report {
		var ls []LogonSession
		for k := i; k < i+5; k++ {
			ls = append(ls, logon(fmt.Sprint(2000+k), at(time.Duration(k-5)*time.Minute), "CONTOSO", fmt.Sprintf("user%d", k%7)))
		}
		ss := []ServerSession{server(fmt.Sprintf("PC%d", i/4), "svc", uint32(30+(i%4)*60))}
		return full(seq, at(time.Duration(i)*time.Minute+time.Second*time.Duration(seq%2)), boot1, ls, ss)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*rounds)
	for w, st := range []*Store{s1, s2, s1, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agent := "agent-A"
			if w >= 2 {
				agent = "agent-B"
			}
			for i := 0; i < rounds; i++ {
				if _, err := st.Ingest(context.Background(), agent, guid, []Report{snap(uint64(i+1), i)}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent ingest: %v", err)
	}
	var dups int
	if err := s1.pool.QueryRow(context.Background(), `SELECT count(*) FROM (
		SELECT boot_time, logon_id FROM logon_session GROUP BY 1, 2 HAVING count(*) > 1) d`).Scan(&dups); err != nil {
		t.Fatal(err)
	}
	if dups != 0 {
		t.Errorf("%d logon sessions stored twice:\n%s", dups, rowsText(logonRows(t, s1)))
	}
	var open, total int
	if err := s1.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE end_before = 'infinity'), count(*) FROM logon_session`).Scan(&open, &total); err != nil {
		t.Fatal(err)
	}
	if open != 5 || total != rounds+4 {
		t.Errorf("open = %d, total = %d; want 5 open of %d", open, total, rounds+4)
	}
	if err := s1.pool.QueryRow(context.Background(), `SELECT count(*) FROM (
		SELECT computer_label, user_label, start_time FROM server_session GROUP BY 1, 2, 3 HAVING count(*) > 1) d`).Scan(&dups); err != nil {
		t.Fatal(err)
	}
	if dups != 0 {
		t.Errorf("%d server sessions stored twice:\n%s", dups, rowsText(serverRows(t, s1)))
	}
	if got := serverRows(t, s1); len(got) != rounds/4 {
		t.Errorf("%d server intervals, want %d:\n%s", len(got), rounds/4, rowsText(got))
	}
}

// A late report (older than the host's newest observation) does not move
// last seen back, close or reopen newer intervals; it adds what was unknown
// as closed intervals and tightens known ends.
func TestLateReportDoesNotCorruptIntervals(t *testing.T) {
	s, _ := newTestStore(t)
	a := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	b := logon("1002", at(2*time.Minute), "CONTOSO", "bob")
	c := logon("1003", at(time.Minute), "CONTOSO", "carol")
	mustIngest(t, s, "agent-A",
		full(1, at(0), boot1, []LogonSession{a}, nil),
		full(2, at(4*time.Minute), boot1, []LogonSession{b}, nil))
	// Agent B (another identity of the host, or an old spool) saw the host at
	// +3m: alice still there, carol briefly there, bob there.
	res := mustIngest(t, s, "agent-B", full(1, at(3*time.Minute), boot1, []LogonSession{a, b, c}, []ServerSession{server("PC7", "bob", 30)}))
	if fmt.Sprint(res.Late) != "[1]" {
		t.Fatalf("Late = %v, want [1]", res.Late)
	}
	assertRows(t, "logon sessions", logonRows(t, s), []row{
		{Key: bootKey(boot1, "1001"), Start: at(-time.Hour), LastSeen: at(3 * time.Minute), EndBefore: at(4 * time.Minute), Account: `CONTOSO\alice`},
		{Key: bootKey(boot1, "1002"), Start: at(2 * time.Minute), Account: `CONTOSO\bob`},
		{Key: bootKey(boot1, "1003"), Start: at(time.Minute), LastSeen: at(3 * time.Minute), EndBefore: at(4 * time.Minute), Account: `CONTOSO\carol`},
	})
	assertRows(t, "server sessions", serverRows(t, s), []row{
		{Key: "PC7/bob", Start: at(150 * time.Second), LastSeen: at(3 * time.Minute), EndBefore: at(4 * time.Minute)},
	})
	if h := hostState(t, s); !h.LastSeen.Equal(at(4 * time.Minute)) {
		t.Errorf("host last seen moved to %v", h.LastSeen)
	}
	// The same agent with its clock stepped back: a full snapshot without bob
	// must not close bob, and a delta removing carol tightens only history.
	mustIngest(t, s, "agent-A",
		full(3, at(3*time.Minute+30*time.Second), boot1, nil, nil),
		Report{Sequence: 4, Kind: KindDelta, BaseSequence: 3, TakenAt: at(3*time.Minute + 40*time.Second), EndedLogonIDs: []string{"1003", "1002"}})
	got := logonRows(t, s)
	for _, r := range got {
		if strings.HasSuffix(r.Key, "/1002") && !r.EndBefore.IsZero() {
			t.Errorf("a late report closed a newer open session: %s", r)
		}
		if strings.HasSuffix(r.Key, "/1003") && !r.EndBefore.Equal(at(3*time.Minute+40*time.Second)) {
			t.Errorf("late removal did not tighten the end: %s", r)
		}
	}
	if h := hostState(t, s); !h.LastSeen.Equal(at(4 * time.Minute)) {
		t.Errorf("host last seen moved to %v", h.LastSeen)
	}
}

// A session seen again after it was taken as ended (WMI's flickering rows)
// reopens the same interval instead of storing it twice.
func TestReappearingSessionReopens(t *testing.T) {
	s, _ := newTestStore(t)
	a := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, []LogonSession{a}, []ServerSession{server("PC7", "bob", 100)}))
	mustIngest(t, s, "agent-1", full(2, at(time.Minute), boot1, nil, nil))
	mustIngest(t, s, "agent-1", full(3, at(2*time.Minute), boot1, []LogonSession{a}, []ServerSession{server("PC7", "bob", 220)}))
	assertRows(t, "logon sessions", logonRows(t, s), []row{{Key: bootKey(boot1, "1001"), Start: at(-time.Hour), Account: `CONTOSO\alice`}})
	assertRows(t, "server sessions", serverRows(t, s), []row{{Key: "PC7/bob", Start: at(-100 * time.Second)}})
}

// Accounts match DOMAIN\name without regard to case; a session without
// account is stored; an account learned later is filled in.
func TestAccounts(t *testing.T) {
	s, _ := newTestStore(t)
	noAcct := logon("1003", at(-time.Minute), "", "")
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, []LogonSession{
		logon("1001", at(-time.Hour), "CONTOSO", "Alice"), logon("1002", at(-time.Hour), "contoso", "ALICE"), noAcct}, nil))
	noAcct.Account = &Account{Domain: "CONTOSO", Name: "svc", SID: "S-1-5-21-1-2-3-1105"}
	mustIngest(t, s, "agent-1", full(2, at(time.Minute), boot1, []LogonSession{
		logon("1001", at(-time.Hour), "CONTOSO", "Alice"), logon("1002", at(-time.Hour), "contoso", "ALICE"), noAcct}, nil))
	assertRows(t, "logon sessions", logonRows(t, s), []row{
		{Key: bootKey(boot1, "1001"), Start: at(-time.Hour), Account: `CONTOSO\Alice`},
		{Key: bootKey(boot1, "1002"), Start: at(-time.Hour), Account: `CONTOSO\Alice`},
		{Key: bootKey(boot1, "1003"), Start: at(-time.Minute), Account: `CONTOSO\svc`},
	})
	var n int
	var sid string
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*), max(sid) FROM account`).Scan(&n, &sid); err != nil {
		t.Fatal(err)
	}
	if n != 2 || sid != "S-1-5-21-1-2-3-1105" {
		t.Errorf("accounts = %d (sid %q), want 2 with the SID recorded", n, sid)
	}
	// Unknown logon types are kept as numbers.
	odd := logon("1004", at(0), "CONTOSO", "x")
	odd.LogonType = u32(4242)
	mustIngest(t, s, "agent-1", full(3, at(2*time.Minute), boot1, []LogonSession{odd}, nil))
	p, err := s.OpenSessions(context.Background(), OpenSessionsQuery{LogonTypes: []uint32{4242}})
	if err != nil || len(p.Items) != 1 || *p.Items[0].Session.LogonType != 4242 {
		t.Fatalf("OpenSessions(LogonTypes 4242) = %+v, %v", p.Items, err)
	}
}
