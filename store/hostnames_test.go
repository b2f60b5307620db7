package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// clockStore returns a store on the database at url whose clock reads
// *now (guarded by mu).
func clockStore(t *testing.T, url string, mu *sync.Mutex, now *time.Time) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, WithClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return *now }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func named(seq uint64, obs time.Time, hostname, domain string) Report {
	r := full(seq, obs, boot1, nil, nil)
	r.Host.Hostname, r.Host.Domain = hostname, domain
	return r
}

// A host that reports a new name: the Ingest call says so, and the host's
// name history keeps every name with the collector's times.
func TestHostRenameRecordedInHistory(t *testing.T) {
	_, url := newTestStore(t)
	ctx := context.Background()
	var mu sync.Mutex
	now := t0
	s := clockStore(t, url, &mu, &now)
	tick := func(d time.Duration) time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(d); return now }

	// Enrolled as MHOST.
	_, secret, err := s.CreateEnrollmentSecret(ctx, "site", 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	enrolledAt := tick(time.Minute)
	if err := s.EnrollAgent(ctx, NewEnrollment{Secret: secret, AgentID: "agent-m", CertSerial: "01", CertNotAfter: t0.Add(7 * 24 * time.Hour),
		Host: Host{MachineGUID: guid, Hostname: "MHOST", Domain: "contoso.local"}}); err != nil {
		t.Fatal(err)
	}
	tick(time.Minute)
	res := mustIngest(t, s, "agent-m", named(1, at(2*time.Minute), "MHOST", "contoso.local"))
	if res.Renamed != nil {
		t.Errorf("first report with the enrolled name: Renamed = %+v, want nil", res.Renamed)
	}
	renamedAt := tick(time.Minute)
	res = mustIngest(t, s, "agent-m", named(2, at(3*time.Minute), "DC37", "contoso.local"))
	want := &HostRename{From: HostName{"MHOST", "contoso.local"}, To: HostName{"DC37", "contoso.local"}}
	if res.Renamed == nil || *res.Renamed != *want {
		t.Errorf("Renamed = %+v, want %+v", res.Renamed, want)
	}
	tick(time.Minute)
	if res := mustIngest(t, s, "agent-m", named(3, at(4*time.Minute), "DC37", "contoso.local")); res.Renamed != nil {
		t.Errorf("same name again: Renamed = %+v", res.Renamed)
	}
	backAt := tick(time.Minute)
	// Renamed and back within one call: no rename.
	res = mustIngest(t, s, "agent-m", named(4, at(5*time.Minute), "MHOST", "contoso.local"),
		named(5, at(6*time.Minute), "MHOST", "CONTOSO"), named(6, at(7*time.Minute), "MHOST", "contoso.local"))
	if want := (&HostRename{From: HostName{"DC37", "contoso.local"}, To: HostName{"MHOST", "contoso.local"}}); res.Renamed == nil || *res.Renamed != *want {
		t.Errorf("Renamed = %+v, want %+v", res.Renamed, want)
	}

	hist, err := s.HostNameHistory(ctx, strings.ToUpper(guid))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range hist {
		got = append(got, fmt.Sprintf("%s.%s %s..%s", n.Hostname, n.Domain, n.Since.Format(time.RFC3339), n.Until.Format(time.RFC3339)))
	}
	f := func(t time.Time) string { return t.Format(time.RFC3339) }
	wantHist := []string{
		"MHOST.contoso.local " + f(enrolledAt) + ".." + f(renamedAt),
		"DC37.contoso.local " + f(renamedAt) + ".." + f(backAt),
		// Within one call the host's row changes once: one span.
		"MHOST.contoso.local " + f(backAt) + ".." + f(time.Time{}),
	}
	if !slices.Equal(got, wantHist) {
		t.Errorf("name history:\n got  %q\n want %q", got, wantHist)
	}
	if hist, err := s.HostNameHistory(ctx, "11111111-2222-3333-4444-555555555555"); err != nil || len(hist) != 0 {
		t.Errorf("history of an unknown host = %v, %v", hist, err)
	}
	others, err := s.HostsNamed(ctx, "mhost", "11111111-2222-3333-4444-555555555555")
	if err != nil || len(others) != 1 || others[0].MachineGUID != guid {
		t.Errorf("HostsNamed(mhost) = %+v, %v", others, err)
	}
	if others, err := s.HostsNamed(ctx, "mhost", guid); err != nil || len(others) != 0 {
		t.Errorf("HostsNamed(mhost) without the host itself = %+v, %v", others, err)
	}
}

// A host selector that names several hosts (a name two machines report)
// answers with the sessions of all of them and lists the hosts, never
// merging them silently; a machine GUID or a name one host holds is not
// ambiguous.
func TestHostSelectorAmbiguous(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	const fake = "11111111-2222-3333-4444-555555555555"
	alice := logon("1001", at(-time.Hour), "CONTOSO", "alice")
	mallory := logon("2001", at(-time.Hour), "CONTOSO", "mallory")
	mustIngest(t, s, "agent-dc", named(1, at(0), "DC37", "contoso.local"))
	r := named(2, at(time.Minute), "DC37", "contoso.local")
	r.LogonSessions, r.ServerSessions = []LogonSession{alice}, []ServerSession{server("PC7", "bob", 60)}
	mustIngest(t, s, "agent-dc", r)
	r = named(1, at(time.Minute), "dc37", "EVIL")
	r.Host.MachineGUID = fake
	r.LogonSessions, r.ServerSessions = []LogonSession{mallory}, []ServerSession{server("PC7", "bob", 60)}
	if res, err := s.Ingest(ctx, "agent-fake", fake, []Report{r}); err != nil || len(res.Rejected) > 0 {
		t.Fatal(err, res.Rejected)
	}
	both := fmt.Sprint([]HostRef{{MachineGUID: fake, Hostname: "dc37", Domain: "EVIL"}, {MachineGUID: guid, Hostname: "DC37", Domain: "contoso.local"}})
	span := func(q LogonSessionsQuery) LogonSessionsQuery {
		q.StartTime, q.EndTime = at(-2*time.Hour), at(time.Hour)
		return q
	}
	for _, c := range []struct {
		sel       string
		ambiguous string
		sessions  int
	}{
		{"DC37", both, 2},
		{"dc37", both, 2},
		{guid, "[]", 1},
		{strings.ToUpper(fake), "[]", 1},
		{"dc37.contoso.local", "[]", 1}, // host name and domain: only the real one
		{"nohost", "[]", 0},
	} {
		p, err := s.WhoWasOn(ctx, WhoWasOnQuery{Host: c.sel, At: at(2 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(p.AmbiguousHosts); got != c.ambiguous || len(p.Logon) != c.sessions || len(p.Server) != c.sessions {
			t.Errorf("WhoWasOn(%q): ambiguous %s, %d logon and %d server sessions; want %s, %d", c.sel, got,
				len(p.Logon), len(p.Server), c.ambiguous, c.sessions)
		}
		lp, err := s.LogonSessions(ctx, span(LogonSessionsQuery{Host: c.sel}))
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(lp.AmbiguousHosts); got != c.ambiguous || len(lp.Items) != c.sessions {
			t.Errorf("LogonSessions(%q): ambiguous %s, %d sessions; want %s, %d", c.sel, got, len(lp.Items), c.ambiguous, c.sessions)
		}
		op, err := s.OpenSessions(ctx, OpenSessionsQuery{Host: c.sel})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(op.AmbiguousHosts); got != c.ambiguous || len(op.Items) != c.sessions {
			t.Errorf("OpenSessions(%q): ambiguous %s, %d sessions; want %s, %d", c.sel, got, len(op.Items), c.ambiguous, c.sessions)
		}
		sp, err := s.ServerSessions(ctx, ServerSessionQuery{ToHost: c.sel, StartTime: at(-2 * time.Hour), EndTime: at(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(sp.AmbiguousHosts); got != c.ambiguous || len(sp.Items) != c.sessions {
			t.Errorf("ServerSessions(to %q): ambiguous %s, %d sessions; want %s, %d", c.sel, got, len(sp.Items), c.ambiguous, c.sessions)
		}
	}
	// The ambiguity is said even when another filter leaves nothing.
	lp, err := s.LogonSessions(ctx, span(LogonSessionsQuery{Host: "DC37", Account: `CONTOSO\nobody`}))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(lp.AmbiguousHosts); got != both || len(lp.Items) != 0 {
		t.Errorf("LogonSessions(DC37, unknown account): ambiguous %s, %d sessions", got, len(lp.Items))
	}
}
