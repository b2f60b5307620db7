package change

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/source"
	"github.com/sessionaudit/sessionaudit/proto/limits"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

var t0 = time.Date(2025, 1, 6, 9, 0, 0, 0, time.UTC)

func u32(v uint32) *uint32 { return &v }

// scenario drives a Tracker with a manual clock and checks every report
// against a collector-side State.
type scenario struct {
	t         *testing.T
	clock     *clock.Manual
	tracker   *Tracker
	collector *State
	boot      time.Time
}

func newScenario(t *testing.T, opts Options) *scenario {
	t.Helper()
	c := clock.NewManual(t0)
	opts.Clock = c
	if opts.FirstSequence == 0 {
		opts.FirstSequence = 41
	}
	tr, err := NewTracker(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &scenario{t: t, clock: c, tracker: tr, collector: NewState(), boot: t0.Add(-time.Hour)}
}

// snap builds a snapshot taken now.
func (s *scenario) snap(logon []*sessionauditv1.LogonSession, server []*sessionauditv1.ServerSession, errs ...*sessionauditv1.CollectionError) *sessionauditv1.Snapshot {
	return &sessionauditv1.Snapshot{
		Host: &sessionauditv1.Host{
			MachineGuid: "guid", Hostname: "WS01", OsVersion: "10.0.22631",
			LastBootTime: timestamppb.New(s.boot),
		},
		TakenAt:        timestamppb.New(s.clock.Now()),
		LogonSessions:  logon,
		ServerSessions: server,
		Errors:         errs,
	}
}

// next feeds snap to the tracker, applies the report to the collector, and
// returns the report.
func (s *scenario) next(snap *sessionauditv1.Snapshot) *sessionauditv1.Report {
	s.t.Helper()
	before := proto.Clone(snap)
	r, err := s.tracker.Next(snap)
	if err != nil {
		s.t.Fatalf("Next: %v", err)
	}
	if !proto.Equal(before, snap) {
		s.t.Fatal("Next modified its input")
	}
	if err := s.collector.Apply(r); err != nil {
		s.t.Fatalf("collector Apply(%v): %v", r, err)
	}
	if r.GetSequence()+1 != s.tracker.NextSequence() {
		s.t.Fatalf("report %d, NextSequence %d", r.GetSequence(), s.tracker.NextSequence())
	}
	if !proto.Equal(s.collector.Snapshot(), s.tracker.state.Snapshot()) {
		s.t.Fatalf("collector and tracker disagree:\ncollector %v\ntracker %v", prototext.Format(s.collector.Snapshot()), prototext.Format(s.tracker.state.Snapshot()))
	}
	return r
}

func kind(r *sessionauditv1.Report) string {
	switch r.GetContent().(type) {
	case *sessionauditv1.Report_Snapshot:
		return "snapshot"
	case *sessionauditv1.Report_Delta:
		return "delta"
	case *sessionauditv1.Report_Heartbeat:
		return "heartbeat"
	}
	return "none"
}

func (s *scenario) want(r *sessionauditv1.Report, k string) {
	s.t.Helper()
	if kind(r) != k {
		s.t.Fatalf("report %d is a %s, want a %s: %v", r.GetSequence(), kind(r), k, prototext.Format(r))
	}
}

func logon(id string, typ uint32, name string) *sessionauditv1.LogonSession {
	return &sessionauditv1.LogonSession{
		LogonId: id, LogonTypeRaw: u32(typ), LogonType: sessionauditv1.LogonTypeFromWMI(typ),
		AuthenticationPackage: "Kerberos", StartTime: timestamppb.New(t0.Add(-time.Minute)),
		Account: &sessionauditv1.Account{Domain: "CONTOSO", Name: name},
	}
}

func server(computer, user string, active, idle, resources uint32) *sessionauditv1.ServerSession {
	return &sessionauditv1.ServerSession{
		ComputerName: computer, UserName: user, ActiveTime: u32(active), IdleTime: u32(idle),
		ResourcesOpened: u32(resources), SessionTypeRaw: u32(2), SessionType: sessionauditv1.ServerSessionTypeFromWMI(2),
	}
}

func classError(class string, k sessionauditv1.CollectionErrorKind) *sessionauditv1.CollectionError {
	return &sessionauditv1.CollectionError{Kind: k, WmiClass: class, Message: "failed at " + time.Now().String()}
}

const (
	queryFailed = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_QUERY_FAILED
	timeout     = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_TIMEOUT
	disabled    = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_DISABLED
	invalid     = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_INVALID_VALUE
)

func TestTrackerSequenceAndHeartbeat(t *testing.T) {
	s := newScenario(t, Options{FirstSequence: 41})
	ls := []*sessionauditv1.LogonSession{logon("999", 0, "WS01$"), logon("123456", 2, "alice")}
	r := s.next(s.snap(ls, nil))
	s.want(r, "snapshot")
	if r.GetSequence() != 41 {
		t.Fatalf("first sequence %d, want 41", r.GetSequence())
	}
	for i := range 3 {
		s.clock.Advance(time.Minute)
		r = s.next(s.snap(ls, nil))
		s.want(r, "heartbeat")
		// A heartbeat names the last state-changing report, not the
		// previous heartbeat, so heartbeats can be coalesced.
		if hb := r.GetHeartbeat(); hb.GetBaseSequence() != 41 || r.GetSequence() != 42+uint64(i) || !hb.GetTakenAt().AsTime().Equal(s.clock.Now()) {
			t.Fatalf("heartbeat %d: %v", r.GetSequence(), hb)
		}
	}
	if s.tracker.NextSequence() != 45 {
		t.Fatalf("NextSequence = %d, want 45", s.tracker.NextSequence())
	}
	s.clock.Advance(time.Minute)
	r = s.next(s.snap(ls[:1], nil))
	s.want(r, "delta")
	if d := r.GetDelta(); d.GetBaseSequence() != 41 || r.GetSequence() != 45 {
		t.Fatalf("delta %d after heartbeats has base %d, want 41", r.GetSequence(), d.GetBaseSequence())
	}
	s.clock.Advance(time.Minute)
	r = s.next(s.snap(ls[:1], nil))
	s.want(r, "heartbeat")
	if hb := r.GetHeartbeat(); hb.GetBaseSequence() != 45 {
		t.Fatalf("heartbeat after delta 45 has base %d", hb.GetBaseSequence())
	}
}

func TestTrackerLogonChanges(t *testing.T) {
	s := newScenario(t, Options{})
	s.want(s.next(s.snap([]*sessionauditv1.LogonSession{logon("999", 0, "WS01$"), logon("123456", 2, "alice")}, nil)), "snapshot")

	s.clock.Advance(time.Minute)
	changed := logon("123456", 2, "alice")
	changed.Status = "Degraded"
	r := s.next(s.snap([]*sessionauditv1.LogonSession{logon("999", 0, "WS01$"), changed, logon("4294967297", 10, "bob")}, nil))
	s.want(r, "delta")
	d := r.GetDelta()
	if d.GetBaseSequence() != r.GetSequence()-1 || len(d.GetLogonSessionsUpserted()) != 2 || len(d.GetLogonSessionsEnded()) != 0 || d.GetHost() != nil {
		t.Fatalf("delta %v", prototext.Format(d))
	}

	s.clock.Advance(time.Minute)
	r = s.next(s.snap([]*sessionauditv1.LogonSession{logon("999", 0, "WS01$"), changed}, nil))
	s.want(r, "delta")
	if ended := r.GetDelta().GetLogonSessionsEnded(); len(ended) != 1 || ended[0].GetLogonId() != "4294967297" || len(r.GetDelta().GetLogonSessionsUpserted()) != 0 {
		t.Fatalf("delta %v", prototext.Format(r.GetDelta()))
	}
}

func TestTrackerServerSessionVolatile(t *testing.T) {
	s := newScenario(t, Options{StartTolerance: 10 * time.Second})
	s.want(s.next(s.snap(nil, []*sessionauditv1.ServerSession{server("WS0123", "alice", 100, 0, 1)})), "snapshot")

	// ActiveTime grows with the clock; IdleTime and ResourcesOpened change:
	// not a change.
	s.clock.Advance(5 * time.Minute)
	s.want(s.next(s.snap(nil, []*sessionauditv1.ServerSession{server("WS0123", "alice", 400, 290, 0)})), "heartbeat")
	// The derived start moved by 9s (within the tolerance): not a change.
	s.clock.Advance(time.Minute)
	s.want(s.next(s.snap(nil, []*sessionauditv1.ServerSession{server("WS0123", "alice", 451, 3, 7)})), "heartbeat")
	// A reconnect: ActiveTime starts again.
	s.clock.Advance(time.Minute)
	r := s.next(s.snap(nil, []*sessionauditv1.ServerSession{server("WS0123", "alice", 20, 0, 1)}))
	s.want(r, "delta")
	if up := r.GetDelta().GetServerSessionsUpserted(); len(up) != 1 || up[0].GetActiveTime() != 20 {
		t.Fatalf("delta %v", prototext.Format(r.GetDelta()))
	}
	wantStart := s.clock.Now().Add(-20 * time.Second)
	if got := s.collector.ServerSessionStarts()[source.ServerSessionKey{ComputerName: "WS0123", UserName: "alice"}]; !got.Equal(wantStart) {
		t.Fatalf("collector's start %v, want %v", got, wantStart)
	}
	// A stable property changed.
	s.clock.Advance(time.Minute)
	ss := server("WS0123", "alice", 80, 0, 1)
	ss.TransportName = `\Device\NetbtTcpip_{X}`
	s.want(s.next(s.snap(nil, []*sessionauditv1.ServerSession{ss})), "delta")
	// ActiveTime becomes NULL.
	s.clock.Advance(time.Minute)
	ss = proto.Clone(ss).(*sessionauditv1.ServerSession)
	ss.ActiveTime = nil
	s.want(s.next(s.snap(nil, []*sessionauditv1.ServerSession{ss})), "delta")
	s.clock.Advance(time.Minute)
	s.want(s.next(s.snap(nil, []*sessionauditv1.ServerSession{ss})), "heartbeat")
	// Gone.
	s.clock.Advance(time.Minute)
	r = s.next(s.snap(nil, nil))
	s.want(r, "delta")
	if e := r.GetDelta().GetServerSessionsEnded(); len(e) != 1 || e[0].GetComputerName() != "WS0123" || e[0].GetUserName() != "alice" {
		t.Fatalf("delta %v", prototext.Format(r.GetDelta()))
	}
}

func TestTrackerFailingClass(t *testing.T) {
	for _, k := range []sessionauditv1.CollectionErrorKind{queryFailed, timeout, disabled} {
		t.Run(k.String(), func(t *testing.T) {
			s := newScenario(t, Options{})
			ls := []*sessionauditv1.LogonSession{logon("999", 0, "WS01$"), logon("123456", 2, "alice")}
			sv := []*sessionauditv1.ServerSession{server("WS0123", "alice", 100, 0, 1)}
			s.want(s.next(s.snap(ls, sv)), "snapshot")

			// Win32_LogonSession fails: no ended entries for it, though its
			// list is empty; server sessions still tracked.
			s.clock.Advance(time.Minute)
			r := s.next(s.snap(nil, nil, classError(source.ClassLogonSession, k)))
			s.want(r, "delta")
			d := r.GetDelta()
			if len(d.GetLogonSessionsEnded()) != 0 || len(d.GetLogonSessionsUpserted()) != 0 || len(d.GetServerSessionsEnded()) != 1 || len(d.GetErrors()) != 1 {
				t.Fatalf("delta %v", prototext.Format(d))
			}
			if len(s.collector.LogonSessions()) != 2 {
				t.Fatalf("collector lost the sessions of a failed class")
			}
			// Still failing, same error (other message): heartbeat.
			s.clock.Advance(time.Minute)
			s.want(s.next(s.snap(nil, nil, classError(source.ClassLogonSession, k))), "heartbeat")
			// Back, one session ended meanwhile: a delta with that end only.
			s.clock.Advance(time.Minute)
			r = s.next(s.snap(ls[:1], nil))
			s.want(r, "delta")
			if e := r.GetDelta().GetLogonSessionsEnded(); len(e) != 1 || e[0].GetLogonId() != "123456" || len(r.GetDelta().GetErrors()) != 0 {
				t.Fatalf("delta %v", prototext.Format(r.GetDelta()))
			}
		})
	}
}

func TestTrackerFailingClassInSnapshot(t *testing.T) {
	s := newScenario(t, Options{})
	// The first snapshot has no server sessions: the collector's list is
	// unknown, so the first complete one is sent in full.
	r := s.next(s.snap([]*sessionauditv1.LogonSession{logon("999", 0, "WS01$")}, nil, classError(source.ClassServerSession, timeout)))
	s.want(r, "snapshot")
	s.clock.Advance(time.Minute)
	s.want(s.next(s.snap([]*sessionauditv1.LogonSession{logon("999", 0, "WS01$")}, nil, classError(source.ClassServerSession, timeout))), "heartbeat")
	s.clock.Advance(time.Minute)
	s.want(s.next(s.snap([]*sessionauditv1.LogonSession{logon("999", 0, "WS01$")}, []*sessionauditv1.ServerSession{server("WS0123", "alice", 100, 0, 1)})), "snapshot")
	s.clock.Advance(time.Minute)
	s.want(s.next(s.snap([]*sessionauditv1.LogonSession{logon("999", 0, "WS01$")}, []*sessionauditv1.ServerSession{server("WS0123", "alice", 160, 0, 1)})), "heartbeat")
}

func TestTrackerAccountCarriedOver(t *testing.T) {
	s := newScenario(t, Options{})
	s.want(s.next(s.snap([]*sessionauditv1.LogonSession{logon("123456", 2, "alice")}, nil)), "snapshot")
	s.clock.Advance(time.Minute)
	noAccount := logon("123456", 2, "alice")
	noAccount.Account = nil
	r := s.next(s.snap([]*sessionauditv1.LogonSession{noAccount}, nil, classError(source.ClassLoggedOnUser, queryFailed)))
	s.want(r, "delta") // the error is new; no upsert
	if len(r.GetDelta().GetLogonSessionsUpserted()) != 0 {
		t.Fatalf("a failed Win32_LoggedOnUser upserted sessions: %v", prototext.Format(r.GetDelta()))
	}
	s.clock.Advance(time.Minute)
	s.want(s.next(s.snap([]*sessionauditv1.LogonSession{logon("123456", 2, "alice")}, nil)), "delta") // the error is gone
	s.clock.Advance(time.Minute)
	s.want(s.next(s.snap([]*sessionauditv1.LogonSession{logon("123456", 2, "alice")}, nil)), "heartbeat")
	if got := s.collector.LogonSessions()[0].GetAccount().GetName(); got != "alice" {
		t.Fatalf("account %q", got)
	}
}

func TestTrackerErrorsAndHost(t *testing.T) {
	s := newScenario(t, Options{})
	bad := &sessionauditv1.CollectionError{Kind: invalid, WmiClass: source.ClassLogonSession, Property: "StartTime", InstanceKey: "999", RawValue: "x"}
	s.want(s.next(s.snap(nil, nil)), "snapshot")
	s.clock.Advance(time.Minute)
	s.want(s.next(s.snap(nil, nil, bad)), "delta")
	s.clock.Advance(time.Minute)
	s.want(s.next(s.snap(nil, nil, bad)), "heartbeat")

	s.clock.Advance(time.Minute)
	snap := s.snap(nil, nil, bad)
	snap.Host.OsVersion = "10.0.26100"
	r := s.next(snap)
	s.want(r, "delta")
	if r.GetDelta().GetHost().GetOsVersion() != "10.0.26100" {
		t.Fatalf("delta %v", prototext.Format(r.GetDelta()))
	}
	// Win32_OperatingSystem fails: its facts are carried over, no change.
	s.clock.Advance(time.Minute)
	snap = s.snap(nil, nil, bad, classError(source.ClassOperatingSystem, queryFailed))
	snap.Host.OsVersion, snap.Host.LastBootTime = "", nil
	r = s.next(snap)
	s.want(r, "delta") // new error only
	if r.GetDelta().GetHost() != nil {
		t.Fatalf("a failed Win32_OperatingSystem changed the host: %v", prototext.Format(r.GetDelta()))
	}
}

func TestTrackerResync(t *testing.T) {
	s := newScenario(t, Options{ResyncInterval: time.Hour})
	ls := []*sessionauditv1.LogonSession{logon("999", 0, "WS01$")}
	s.want(s.next(s.snap(ls, nil)), "snapshot")
	s.clock.Advance(59 * time.Minute)
	s.want(s.next(s.snap(ls, nil)), "heartbeat")
	s.clock.Advance(time.Minute)
	s.want(s.next(s.snap(ls, nil)), "snapshot")
	s.clock.Advance(time.Minute)
	s.want(s.next(s.snap(ls, nil)), "heartbeat")
	s.tracker.RequestResync()
	s.want(s.next(s.snap(ls, nil)), "snapshot")
	s.want(s.next(s.snap(ls, nil)), "heartbeat")
	// The clock went back: resync.
	s.clock.Advance(-time.Hour)
	s.want(s.next(s.snap(ls, nil)), "snapshot")

	never := newScenario(t, Options{ResyncInterval: -1})
	never.want(never.next(never.snap(ls, nil)), "snapshot")
	never.clock.Advance(1000 * time.Hour)
	never.want(never.next(never.snap(ls, nil)), "heartbeat")
}

func TestTrackerReboot(t *testing.T) {
	s := newScenario(t, Options{})
	s.want(s.next(s.snap([]*sessionauditv1.LogonSession{logon("999", 0, "WS01$"), logon("123456", 2, "alice")}, nil)), "snapshot")
	s.clock.Advance(10 * time.Minute)
	s.boot = s.clock.Now().Add(-2 * time.Minute)
	// 999 exists again in the new boot: a full snapshot, not a delta.
	noAccount := logon("999", 0, "")
	noAccount.Account = nil
	r := s.next(s.snap([]*sessionauditv1.LogonSession{noAccount}, nil, classError(source.ClassLoggedOnUser, queryFailed)))
	s.want(r, "snapshot")
	if got := s.collector.LogonSessions(); len(got) != 1 || got[0].GetAccount() != nil {
		t.Fatalf("after reboot the collector holds %v (an account carried across boots?)", got)
	}
}

// TestTrackerBootJitter: LastBootUpTime moves with clock adjustments and
// wobbles on virtual machines; a move within limits.BootJitter is the same
// boot, reported with the first value seen (no snapshot, no change), and a
// move beyond it, from that first value, is a reboot.
func TestTrackerBootJitter(t *testing.T) {
	s := newScenario(t, Options{})
	first := s.boot
	ls := []*sessionauditv1.LogonSession{logon("999", 0, "WS01$")}
	s.want(s.next(s.snap(ls, nil)), "snapshot")
	reportedBoot := func(r *sessionauditv1.Report) time.Time {
		t.Helper()
		if r.GetDelta().GetHost() != nil {
			t.Fatalf("report %d: a boot time within the jitter changed the host: %v", r.GetSequence(), prototext.Format(r))
		}
		return s.collector.Host.GetLastBootTime().AsTime()
	}
	for i, moved := range []time.Duration{time.Microsecond, -3 * time.Second, limits.BootJitter, -limits.BootJitter} {
		s.clock.Advance(time.Minute)
		s.boot = first.Add(moved)
		r := s.next(s.snap(ls, nil))
		s.want(r, "heartbeat")
		if got := reportedBoot(r); !got.Equal(first) {
			t.Fatalf("step %d: boot moved by %v: the collector holds %v, want the first value %v", i, moved, got, first)
		}
	}
	// A change with a wobbling boot: a Delta without the host.
	s.clock.Advance(time.Minute)
	s.boot = first.Add(2 * time.Second)
	r := s.next(s.snap(append(ls, logon("123456", 2, "alice")), nil))
	s.want(r, "delta")
	reportedBoot(r)

	// Beyond the jitter from the first value: a reboot, with the new value.
	s.clock.Advance(time.Minute)
	s.boot = first.Add(limits.BootJitter + time.Microsecond)
	r = s.next(s.snap(ls, nil))
	s.want(r, "snapshot")
	if got := r.GetSnapshot().GetHost().GetLastBootTime().AsTime(); !got.Equal(s.boot) {
		t.Fatalf("snapshot after a reboot reports boot %v, want %v", got, s.boot)
	}
	second := s.boot
	s.clock.Advance(time.Minute)
	s.boot = second.Add(-time.Second)
	r = s.next(s.snap(ls, nil))
	s.want(r, "heartbeat")
	if got := s.collector.Host.GetLastBootTime().AsTime(); !got.Equal(second) {
		t.Fatalf("the collector holds boot %v, want %v", got, second)
	}
	// A resync keeps the first value too.
	s.tracker.RequestResync()
	s.clock.Advance(time.Minute)
	s.boot = second.Add(time.Second)
	r = s.next(s.snap(ls, nil))
	s.want(r, "snapshot")
	if got := r.GetSnapshot().GetHost().GetLastBootTime().AsTime(); !got.Equal(second) {
		t.Fatalf("resync snapshot reports boot %v, want the first value %v", got, second)
	}
}

func TestTrackerErrors(t *testing.T) {
	if _, err := NewTracker(Options{}); err == nil {
		t.Error("NewTracker with FirstSequence 0: no error")
	}
	tr, err := NewTracker(Options{FirstSequence: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, snap := range []*sessionauditv1.Snapshot{nil, {}, {Host: &sessionauditv1.Host{}}, {TakenAt: timestamppb.Now()}} {
		if _, err := tr.Next(snap); err == nil {
			t.Errorf("Next(%v): no error", snap)
		}
	}
	if tr.NextSequence() != 1 {
		t.Errorf("a refused snapshot used a sequence number")
	}
}

func TestStateApplyRefuses(t *testing.T) {
	st := NewState()
	snap := &sessionauditv1.Report{Sequence: 5, Content: &sessionauditv1.Report_Snapshot{Snapshot: &sessionauditv1.Snapshot{Host: &sessionauditv1.Host{}, TakenAt: timestamppb.New(t0)}}}
	if err := st.Apply(snap); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*sessionauditv1.Report{
		{Sequence: 5, Content: &sessionauditv1.Report_Heartbeat{Heartbeat: &sessionauditv1.Heartbeat{BaseSequence: 5, TakenAt: timestamppb.New(t0)}}},
		{Sequence: 6, Content: &sessionauditv1.Report_Heartbeat{Heartbeat: &sessionauditv1.Heartbeat{BaseSequence: 4, TakenAt: timestamppb.New(t0)}}},
		{Sequence: 6, Content: &sessionauditv1.Report_Delta{Delta: &sessionauditv1.Delta{BaseSequence: 3, TakenAt: timestamppb.New(t0)}}},
		{Sequence: 6, Content: &sessionauditv1.Report_Delta{Delta: &sessionauditv1.Delta{BaseSequence: 5}}},
		{Sequence: 6},
	} {
		if err := st.Apply(r); err == nil {
			t.Errorf("Apply(%v): no error", r)
		}
	}
	if st.Sequence != 5 {
		t.Errorf("refused reports moved the state to %d", st.Sequence)
	}
}

// TestTrackerSmbSessionVolatile: the MSFT_SmbSession mirror's counters are
// as volatile as the fields filled from them, and server_session_build rides
// on every Delta without making one.
func TestTrackerSmbSessionVolatile(t *testing.T) {
	s := newScenario(t, Options{StartTolerance: 10 * time.Second})
	smb := func(active, idle uint32, opens uint64, dialect string) *sessionauditv1.ServerSession {
		ss := server("fe80::1", `CONTOSO\alice`, active, idle, uint32(opens))
		ss.Smb = &sessionauditv1.SmbSession{SessionId: 7, ClientComputerName: "fe80::1", ClientUserName: `CONTOSO\alice`,
			SecondsExists: u32(active), SecondsIdle: u32(idle), NumOpens: &opens, Dialect: dialect}
		return ss
	}
	build := func(dup uint32) *sessionauditv1.ServerSessionBuild {
		return &sessionauditv1.ServerSessionBuild{Source: "MSFT_SmbSession", Rows: 1 + dup, DroppedDuplicateKey: dup}
	}
	snap := func(ss *sessionauditv1.ServerSession, b *sessionauditv1.ServerSessionBuild) *sessionauditv1.Snapshot {
		sn := s.snap(nil, []*sessionauditv1.ServerSession{ss})
		sn.ServerSessionBuild = b
		return sn
	}
	r := s.next(snap(smb(100, 0, 1, "3.1.1"), build(0)))
	s.want(r, "snapshot")
	if !proto.Equal(r.GetSnapshot().GetServerSessionBuild(), build(0)) {
		t.Fatalf("snapshot build %v", r.GetSnapshot().GetServerSessionBuild())
	}
	s.clock.Advance(5 * time.Minute)
	// Counters moved, and a duplicate appeared: no change on its own.
	s.want(s.next(snap(smb(400, 290, 9, "3.1.1"), build(1))), "heartbeat")
	s.clock.Advance(time.Minute)
	r = s.next(snap(smb(460, 0, 2, "3.0"), build(2)))
	s.want(r, "delta")
	if !proto.Equal(r.GetDelta().GetServerSessionBuild(), build(2)) {
		t.Fatalf("delta build %v", r.GetDelta().GetServerSessionBuild())
	}
}
