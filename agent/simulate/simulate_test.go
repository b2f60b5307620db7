package simulate

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/source"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// monday is a Monday at midnight UTC.
var monday = time.Date(2025, 1, 6, 0, 0, 0, 0, time.UTC)

func newSim(t *testing.T, cfg Config) (*Source, *clock.Manual) {
	t.Helper()
	c := clock.NewManual(monday)
	cfg.Clock = c
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

var _ source.Source = (*Source)(nil)

func TestProfilesProduceTheirLogonTypes(t *testing.T) {
	for _, p := range Profiles {
		t.Run(p.String(), func(t *testing.T) {
			s, c := newSim(t, Config{Seed: 1, Profile: p, RebootsPerWeek: -1})
			seen := map[uint32]int{}
			packages := map[string]bool{}
			servers := 0
			for range 7 * 24 * 60 {
				c.Advance(time.Minute)
				col, err := s.Collect(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range col.LogonSessions {
					seen[*l.LogonType]++
					packages[l.AuthenticationPackage] = true
				}
				servers += len(col.ServerSessions)
			}
			var types []uint32
			for typ := range seen {
				types = append(types, typ)
			}
			slices.Sort(types)
			if !slices.Equal(types, p.LogonTypes()) {
				t.Errorf("logon types seen %v (counts %v), profile claims %v", types, seen, p.LogonTypes())
			}
			for _, pkg := range []string{"Kerberos", "Negotiate", "NTLM"} {
				if !packages[pkg] {
					t.Errorf("package %s never seen (%v)", pkg, packages)
				}
			}
			if servers == 0 {
				t.Errorf("no server session in a week")
			}
			t.Logf("%s: types %v, server-session observations %d", p, seen, servers)
		})
	}
}

func TestSnapshotIsClean(t *testing.T) {
	for _, p := range Profiles {
		s, c := newSim(t, Config{Seed: 7, Profile: p})
		c.Advance(9*time.Hour + 30*time.Minute)
		snap, err := s.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		h := snap.GetHost()
		if h.GetMachineGuid() != s.MachineGUID() || h.GetHostname() != s.Hostname() || h.GetDomain() == "" || h.GetOsCaption() == "" ||
			!h.GetLastBootTime().AsTime().Equal(s.BootTime().Truncate(time.Microsecond)) || h.GetAgentVersion() != "sim" {
			t.Errorf("%s: host %v", p, h)
		}
		if len(snap.GetErrors()) != 0 {
			t.Errorf("%s: errors %v", p, snap.GetErrors())
		}
		ids := map[string]bool{}
		for _, l := range snap.GetLogonSessions() {
			if l.GetAccount() == nil || l.GetStartTime() == nil || l.LogonTypeRaw == nil {
				t.Errorf("%s: incomplete session %v", p, l)
			}
			if l.GetStartTime().AsTime().After(snap.GetTakenAt().AsTime()) || l.GetStartTime().AsTime().Before(s.BootTime()) {
				t.Errorf("%s: session %s starts at %v, outside boot %v .. %v", p, l.GetLogonId(), l.GetStartTime().AsTime(), s.BootTime(), snap.GetTakenAt().AsTime())
			}
			ids[l.GetLogonId()] = true
		}
		for _, id := range []string{"999", "997", "996"} {
			if !ids[id] {
				t.Errorf("%s: no logon session %s", p, id)
			}
		}
	}
}

func TestChangesOverTime(t *testing.T) {
	s, c := newSim(t, Config{Seed: 3, Profile: FileServer, RebootsPerWeek: -1})
	c.Advance(8 * time.Hour) // some offset puts this in working hours; check a day
	var prev *sessionauditv1.Snapshot
	changes := 0
	for range 24 {
		c.Advance(time.Hour)
		snap, err := s.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil && !sameSessions(prev, snap) {
			changes++
		}
		prev = snap
	}
	if changes < 12 {
		t.Errorf("sessions changed in %d of 23 hours, want most", changes)
	}
}

func sameSessions(a, b *sessionauditv1.Snapshot) bool {
	if len(a.GetLogonSessions()) != len(b.GetLogonSessions()) {
		return false
	}
	for i := range a.GetLogonSessions() {
		if a.GetLogonSessions()[i].GetLogonId() != b.GetLogonSessions()[i].GetLogonId() {
			return false
		}
	}
	return true
}

func TestDeterministic(t *testing.T) {
	run := func(seed uint64, polls []time.Duration) []*sessionauditv1.Snapshot {
		s, c := newSim(t, Config{Seed: seed, Profile: Workstation, RebootsPerWeek: 20, FaultRate: 0.1})
		var out []*sessionauditv1.Snapshot
		for _, d := range polls {
			c.Advance(d)
			snap, err := s.Snapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, snap)
		}
		return out
	}
	var polls []time.Duration
	for i := range 300 {
		polls = append(polls, time.Duration(1+i%7)*time.Minute)
	}
	a, b := run(42, polls), run(42, polls)
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			t.Fatalf("snapshot %d differs between two runs of seed 42", i)
		}
	}
	other := run(43, polls)
	if proto.Equal(a[len(a)-1].GetHost(), other[len(other)-1].GetHost()) {
		t.Errorf("seeds 42 and 43 give the same host")
	}
}

func TestReboots(t *testing.T) {
	s, c := newSim(t, Config{Seed: 5, Profile: Server, RebootsPerWeek: 7 * 24})
	boots := map[time.Time]bool{}
	var maxID uint64
	for range 48 * 6 {
		c.Advance(10 * time.Minute)
		snap, err := s.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		boots[snap.GetHost().GetLastBootTime().AsTime()] = true
		has999 := false
		for _, l := range snap.GetLogonSessions() {
			has999 = has999 || l.GetLogonId() == "999"
			if l.GetStartTime().AsTime().Before(snap.GetHost().GetLastBootTime().AsTime()) {
				t.Fatalf("session %s started before the boot", l.GetLogonId())
			}
		}
		if !has999 {
			t.Fatal("no SYSTEM session (999) after a boot")
		}
		maxID = max(maxID, s.nextID)
	}
	if len(boots) < 10 {
		t.Errorf("%d boots in two days at one per hour", len(boots))
	}
}

func TestLUIDsPast32Bits(t *testing.T) {
	for seed := uint64(0); seed < 10; seed++ {
		s, c := newSim(t, Config{Seed: seed, Profile: FileServer, RebootsPerWeek: -1})
		c.Advance(24 * time.Hour)
		snap, err := s.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range snap.GetLogonSessions() {
			if len(l.GetLogonId()) > 10 || (len(l.GetLogonId()) == 10 && l.GetLogonId() > "4294967295") {
				return // seen a LUID whose HighPart is not zero
			}
		}
	}
	t.Error("no file server seed gives LUIDs past 2^32")
}

func TestFaults(t *testing.T) {
	s, c := newSim(t, Config{Seed: 9, Profile: Server, FaultRate: 0.5})
	failed := map[string]int{}
	for range 50 {
		c.Advance(time.Minute)
		snap, err := s.Snapshot(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for class := range source.IncompleteClasses(snap.GetErrors()) {
			failed[class]++
		}
		if source.IncompleteClasses(snap.GetErrors())[source.ClassLogonSession] && len(snap.GetLogonSessions()) != 0 {
			t.Fatal("a failed Win32_LogonSession still lists sessions")
		}
	}
	for _, class := range source.Classes {
		if failed[class] == 0 {
			t.Errorf("%s never failed at rate 0.5", class)
		}
	}
}

func TestConfigAndClose(t *testing.T) {
	if _, err := New(Config{Profile: Server}); err == nil {
		t.Error("New without a clock: no error")
	}
	if _, err := New(Config{Clock: clock.NewManual(monday)}); err == nil {
		t.Error("New without a profile: no error")
	}
	if _, err := New(Config{Clock: clock.NewManual(monday), Profile: Server, FaultRate: 2}); err == nil {
		t.Error("New with FaultRate 2: no error")
	}
	for _, p := range Profiles {
		if got, err := ParseProfile(p.String()); err != nil || got != p {
			t.Errorf("ParseProfile(%q) = %v, %v", p.String(), got, err)
		}
	}
	if _, err := ParseProfile("mainframe"); err == nil {
		t.Error(`ParseProfile("mainframe"): no error`)
	}
	s, _ := newSim(t, Config{Seed: 1, Profile: Workstation})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Snapshot(ctx); err == nil {
		t.Error("Snapshot with a cancelled context: no error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshot(context.Background()); err == nil {
		t.Error("Snapshot after Close: no error")
	}
}
