package e2e

// The fleet simulator (agent/fleet) against the real collector (server.New)
// on loopback with real TLS and a real PostgreSQL, then the store compared
// with the ground truth interval by interval.

import (
	"context"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/fleet"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/proto/limits"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/servertest"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
)

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
	f, err := fleet.New(fleet.Config{
		Address: c1.Addr, ServerName: "localhost", CAPool: pool, EnrollmentSecret: secret, StateDir: t.TempDir(),
		Profiles: []simulate.Profile{simulate.FileServer, simulate.DomainController, simulate.Server,
			simulate.Workstation, simulate.Workstation},
		Seed: 7, Start: start, MaxReports: 50, Logger: quietLogger(),
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

	cmp, err := fleet.Compare(ctx, storeReader{st}, f.Truths())
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

// storeReader is a fleet.Reader that reads the store directly, without
// the collector's QueryService (fleetsim run and the demo compare through
// it, with fleet.QueryReader).
type storeReader struct{ st *store.Store }

func (r storeReader) WhoWasOn(ctx context.Context, host string, t time.Time) ([]fleet.Observed, error) {
	var out []fleet.Observed
	cursor := ""
	for {
		p, err := r.st.WhoWasOn(ctx, store.WhoWasOnQuery{Host: host, At: t, PageSize: limits.MaxPageSize, Cursor: cursor})
		if err != nil {
			return nil, fmt.Errorf("store WhoWasOn %s at %s: %w", host, t.Format(time.RFC3339), err)
		}
		for _, l := range p.Logon {
			s := l.Session
			o := fleet.Observed{Kind: fleet.Logon, Key: s.LogonID, Start: s.StartTime, Open: l.End.Open, LastSeen: l.End.LastSeen,
				EndBefore: l.End.EndBefore, Package: s.AuthenticationPackage, LogonTypeRaw: s.LogonType}
			if s.Account != nil {
				o.Account = s.Account.Domain + `\` + s.Account.Name
			}
			out = append(out, o)
		}
		for _, si := range p.Server {
			out = append(out, fleet.Observed{Kind: fleet.Server, Key: si.Session.ComputerName + `\` + si.Session.UserName, Start: si.StartTime,
				Open: si.End.Open, LastSeen: si.End.LastSeen, EndBefore: si.End.EndBefore})
		}
		if cursor = p.NextCursor; cursor == "" {
			return out, nil
		}
	}
}
