package fleet

// End-to-end: simulated agents against the real collector (server.New) on
// loopback with real TLS and a real PostgreSQL (store/storetest;
// TEST_DATABASE_URL or a container), then the store compared with the
// ground truth interval by interval.

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/servertest"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// TestFleetDayMatchesStore: five agents (file server, DC, server, two
// workstations), each enrolled with the secret, report a simulated day;
// the collector is stopped hard in the middle and started again on the
// same address; afterwards every interval of every host is in the store
// with its start, and its end within the bounds the reports imply.
func TestFleetDayMatchesStore(t *testing.T) {
	if testing.Short() {
		t.Skip("a simulated day against PostgreSQL")
	}
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t, store.Migrate)
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	now := time.Now()
	ca, err := pki.NewCA("fleet test CA", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := pki.NewTrust([]*x509.Certificate{ca.Certificate()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := st.CreateEnrollmentSecret(ctx, "fleet test", 5, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	end := now.UTC().Truncate(time.Minute).Add(-time.Minute)
	start := end.Add(-24 * time.Hour)
	if err := st.EnsurePartitionsBetween(ctx, start.AddDate(0, -1, 0), end.AddDate(0, 3, 0)); err != nil {
		t.Fatal(err)
	}
	c1 := servertest.Start(t, st, ca, trust, "127.0.0.1:0", servertest.Options{})

	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	f, err := New(Config{
		Address: c1.Addr, ServerName: "localhost", CAPool: pool, EnrollmentSecret: secret, StateDir: t.TempDir(),
		Profiles: []simulate.Profile{simulate.FileServer, simulate.DomainController, simulate.Server,
			simulate.Workstation, simulate.Workstation},
		Seed: 7, Start: start, MaxReports: 50, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, a := range f.Agents {
		id := a.Client.Identity()
		if id == nil || ids[id.AgentID] {
			t.Fatalf("%s: identity %v (each agent needs its own)", a.Name, id)
		}
		ids[id.AgentID] = true
	}
	f.Start(ctx)
	defer f.Stop()

	// Half a day, delivered; the collector stopped hard while the second
	// half's backlog is being delivered; a new collector on the same port.
	if err := f.Advance(ctx, start.Add(12*time.Hour)); err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := f.Delivered(wait); err != nil {
		t.Fatal(err)
	}
	if err := f.Advance(ctx, start.Add(18*time.Hour)); err != nil {
		t.Fatal(err)
	}
	c1.Stop(t, 0)
	if err := f.Advance(ctx, end); err != nil { // a backlog while it is down
		t.Fatal(err)
	}
	pending := 0
	for _, a := range f.Agents {
		pending += a.Queue.Pending()
	}
	if pending == 0 {
		t.Fatal("no backlog while the collector was down")
	}
	servertest.Start(t, st, ca, trust, c1.Addr, servertest.Options{})
	t.Logf("%d reports waited for the restarted collector", pending)
	if err := f.Delivered(wait); err != nil {
		t.Fatal(err)
	}
	c := f.Counts()
	t.Logf("%d reports (%d snapshots, %d deltas, %d heartbeats)", c.Reports, c.Snapshots, c.Deltas, c.Heartbeats)

	cmp, err := Compare(ctx, StoreReader{Store: st}, f.Truths())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d hosts, %d intervals, %d queries, %d mismatches", cmp.Hosts, cmp.Intervals, cmp.Queries, len(cmp.Mismatches))
	if cmp.Intervals < 50 {
		t.Errorf("only %d intervals in a simulated day of 5 hosts: the simulation is not exercising much", cmp.Intervals)
	}
	for i, m := range cmp.Mismatches {
		if i == 30 {
			t.Errorf("... and %d more", len(cmp.Mismatches)-i)
			break
		}
		t.Error(m)
	}
}

// fakeReader answers WhoWasOn from a fixed list.
type fakeReader []Observed

func (r fakeReader) WhoWasOn(_ context.Context, _ string, t time.Time) ([]Observed, error) {
	var out []Observed
	for _, o := range r {
		if !o.Start.After(t) && (o.Open || o.EndBefore.After(t)) {
			out = append(out, o)
		}
	}
	return out, nil
}

// TestCompareFindsEachKindOfMismatch: Compare reports a missing interval,
// an extra one, a moved start and an end outside the bounds, and nothing
// for a correct store.
func TestCompareFindsEachKindOfMismatch(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	h := &HostTruth{Hostname: "FS01", MachineGUID: "g", Intervals: []*Interval{
		{Kind: Logon, Key: "0x1", Start: at(-5), FirstSeen: at(0), LastPresent: at(10), FirstAbsent: at(11)},
		{Kind: Server, Key: `WS1lice`, Start: at(1), FirstSeen: at(2), LastPresent: at(20)},
	}}
	good := fakeReader{
		{Kind: Logon, Key: "0x1", Start: at(-5), LastSeen: at(10), EndBefore: at(11)},
		{Kind: Server, Key: `WS1lice`, Start: at(1), Open: true, LastSeen: at(20)},
	}
	for _, tc := range []struct {
		name   string
		r      fakeReader
		nWrong int
	}{
		{"correct", good, 0},
		{"missing", good[1:], 2}, // present at both moments asked
		{"extra", append(good[:2:2], Observed{Kind: Logon, Key: "0x9", Start: at(-1), Open: true}), 2},
		{"start moved", fakeReader{good[0], {Kind: Server, Key: `WS1\alice`, Start: at(0), Open: true}}, 3},
		{"end late", fakeReader{{Kind: Logon, Key: "0x1", Start: at(-5), LastSeen: at(10), EndBefore: at(12)}, good[1]}, 1},
		{"still open", fakeReader{{Kind: Logon, Key: "0x1", Start: at(-5), Open: true}, good[1]}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Compare(context.Background(), tc.r, []*HostTruth{h})
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Mismatches) != tc.nWrong {
				t.Errorf("%d mismatches, want %d: %v", len(c.Mismatches), tc.nWrong, c.Mismatches)
			}
		})
	}
}
