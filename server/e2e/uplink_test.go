package e2e

// The agent's uplink (agent/uplink), delivering from the agent's real spool,
// against the real collector (server.New) on loopback with real TLS from
// server/pki and a real PostgreSQL.

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/spool"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/servertest"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
)

// The uplink test's host.
const testGUID = "0a1b2c3d-0000-4000-8000-0000000000aa"

func testHost() *pb.Host { return &pb.Host{MachineGuid: testGUID, Hostname: "ws-test", Domain: "CORP"} }

// offsetClock is the system clock plus an offset the test moves: the
// agent's view of time, while the collector keeps the real one.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) Now() time.Time      { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *offsetClock) Set(d time.Duration) { c.offset.Store(int64(d)) }

// e2eCollectorOptions: agent certificates as short-lived as allowed, so
// that renewal comes quickly; the collector logs into the test's log.
func e2eCollectorOptions(t *testing.T) servertest.Options {
	return servertest.Options{Adjust: func(cfg *server.Config) {
		cfg.AgentCertValidity = pki.MinValidity
		cfg.RetryDelay = 200 * time.Millisecond
		cfg.Logger = testLogger(t)
	}}
}

var e2eT0 = time.Now().Add(-2 * time.Hour).Truncate(time.Second).UTC()

func e2eAt(min int) *timestamppb.Timestamp {
	return timestamppb.New(e2eT0.Add(time.Duration(min) * time.Minute))
}

func e2eLogon(id string) *pb.LogonSession {
	raw := uint32(10)
	return &pb.LogonSession{LogonId: id, LogonType: pb.LogonType_LOGON_TYPE_REMOTE_INTERACTIVE, LogonTypeRaw: &raw,
		AuthenticationPackage: "Kerberos", StartTime: e2eAt(0), Account: &pb.Account{Domain: "CORP", Name: "u" + id}}
}

func e2eSnapshot(seq uint64, sessions ...*pb.LogonSession) *pb.Report {
	return &pb.Report{Sequence: seq, Content: &pb.Report_Snapshot{Snapshot: &pb.Snapshot{
		Host: testHost(), TakenAt: e2eAt(int(seq)), LogonSessions: sessions,
	}}}
}

func e2eDelta(seq uint64, upserted ...*pb.LogonSession) *pb.Report {
	return &pb.Report{Sequence: seq, Content: &pb.Report_Delta{Delta: &pb.Delta{
		BaseSequence: seq - 1, TakenAt: e2eAt(int(seq)), LogonSessionsUpserted: upserted,
	}}}
}

// logonRows returns every stored logon interval of the host as
// "logon_id open|closed", sorted, one per row: duplicates would show.
func logonRows(t *testing.T, st *store.Store) []string {
	t.Helper()
	rows, err := st.Pool().Query(context.Background(), `SELECT l.logon_id || ' ' ||
		CASE WHEN l.end_before = 'infinity' THEN 'open' ELSE 'closed' END
		FROM logon_session l JOIN host h USING (host_id) WHERE h.machine_guid = $1`, testGUID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestUplinkEndToEnd: with the agent's real spool, enroll with a secret, deliver a snapshot, renew and
// deliver with the new certificate, lose the collector (hard stop) in the
// middle of a backlog and get it back on the same address, renew by proof
// after expiry; every report is stored exactly once, and the store records
// the certificate the agent uses.
func TestUplinkEndToEnd(t *testing.T) {
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t, store.Migrate)
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	now := time.Now()
	agentCA, err := pki.NewCA("e2e agent CA", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	analystCA, err := pki.NewCA("e2e analyst CA", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := pki.NewTrust([]*x509.Certificate{agentCA.Certificate()}, []*x509.Certificate{analystCA.Certificate()})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := st.CreateEnrollmentSecret(ctx, "uplink e2e", 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	c1 := servertest.Start(t, st, agentCA, trust, "127.0.0.1:0", e2eCollectorOptions(t))

	pool := x509.NewCertPool()
	pool.AddCert(agentCA.Certificate())
	clk := &offsetClock{}
	client, err := uplink.New(uplink.Options{
		Address: c1.Addr, ServerName: "localhost", CAPool: pool, CAPins: []string{uplink.SPKIPin(agentCA.Certificate())},
		EnrollmentSecret: secret, Host: testHost, StateDir: t.TempDir(), Clock: clk, Logger: testLogger(t),
		Backoff: uplink.BackoffConfig{Base: 20 * time.Millisecond, Max: 300 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// The agent's real spool.
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	notify := make(chan struct{}, 1)
	q := struct {
		Append func(...*pb.Report)
		Acked  func() uint64
	}{
		Append: func(rs ...*pb.Report) {
			for _, r := range rs {
				if err := sp.Append(r); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case notify <- struct{}{}:
			default:
			}
		},
		Acked: func() uint64 { return sp.Stats().Acknowledged },
	}
	// pump runs a Pump until the returned stop is called.
	pump := func() (stop func()) {
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- uplink.NewPump(client, sp, uplink.PumpOptions{MaxReports: 3, PollInterval: 50 * time.Millisecond, Notify: notify}).Run(pctx)
		}()
		return func() { cancel(); <-done }
	}
	serialStored := func() string {
		a, err := st.Agent(ctx, client.Identity().AgentID)
		if err != nil {
			t.Fatal(err)
		}
		return a.CertSerial
	}

	// 1. Enrollment with the secret (its only use) and a snapshot.
	stop := pump()
	q.Append(e2eSnapshot(1, e2eLogon("0x1")))
	eventually(t, "the snapshot acknowledged", func() bool { return q.Acked() == 1 })
	first := client.Identity()
	if got := logonRows(t, st); !slices.Equal(got, []string{"0x1 open"}) {
		t.Fatalf("stored %v after the snapshot", got)
	}
	if serialStored() != first.Serial() {
		t.Fatalf("store records serial %s, agent uses %s", serialStored(), first.Serial())
	}

	// 2. Renewal once renew_after has passed (the agent's clock moves; the
	// pump is stopped meanwhile so that it renews exactly once), then a
	// delivery with the new certificate.
	stop()
	clk.Set(first.RenewAfter.Sub(time.Now()) + time.Second)
	if renewed, err := client.MaybeRenew(ctx); !renewed || err != nil {
		t.Fatalf("MaybeRenew: %v, %v", renewed, err)
	}
	clk.Set(0)
	second := client.Identity()
	if second.AgentID != first.AgentID || second.Serial() == first.Serial() {
		t.Fatalf("renewed: %s/%s, was %s/%s", second.AgentID, second.Serial(), first.AgentID, first.Serial())
	}
	stop = pump()
	q.Append(e2eDelta(2, e2eLogon("0x2")))
	eventually(t, "the delta after renewal acknowledged", func() bool { return q.Acked() == 2 })
	if serialStored() != second.Serial() {
		t.Fatalf("store records serial %s, want the renewed %s", serialStored(), second.Serial())
	}

	// 3. A backlog, and the collector stopped hard in the middle of it
	// (calls in flight cut off), restarted on the same address.
	for seq := uint64(3); seq <= 40; seq++ {
		q.Append(e2eDelta(seq, e2eLogon(fmt.Sprintf("0x%d", seq))))
	}
	eventually(t, "part of the backlog acknowledged", func() bool { return q.Acked() >= 8 })
	c1.Stop(t, 0)
	ackedAtStop := q.Acked()
	time.Sleep(300 * time.Millisecond) // the agent retries against nothing
	c2 := servertest.Start(t, st, agentCA, trust, c1.Addr, e2eCollectorOptions(t))
	eventually(t, "the backlog acknowledged by the new collector", func() bool { return q.Acked() == 40 })
	t.Logf("acknowledged before the stop: %d of 40", ackedAtStop)

	// 4. The certificate expires while the host is off: renewal by proof,
	// same agent id, no secret (its one use is spent).
	stop()
	clk.Set(second.NotAfter.Sub(time.Now()) + time.Minute)
	if err := client.EnsureIdentity(ctx); err != nil {
		t.Fatalf("EnsureIdentity after expiry: %v", err)
	}
	clk.Set(0)
	third := client.Identity()
	if third.AgentID != first.AgentID || third.Serial() == second.Serial() {
		t.Fatalf("after proof: %s/%s, was %s/%s", third.AgentID, third.Serial(), second.AgentID, second.Serial())
	}
	stop = pump()
	defer stop()
	q.Append(e2eDelta(41, e2eLogon("0x41")))
	eventually(t, "the delta after renewal by proof acknowledged", func() bool { return q.Acked() == 41 })
	if serialStored() != third.Serial() {
		t.Fatalf("store records serial %s, want %s", serialStored(), third.Serial())
	}

	var want []string
	for seq := 1; seq <= 41; seq++ {
		want = append(want, fmt.Sprintf("0x%d open", seq))
	}
	slices.Sort(want)
	if got := logonRows(t, st); !slices.Equal(got, want) {
		t.Fatalf("stored %d rows %v,\nwant each of 0x1..0x41 once", len(got), got)
	}
	_ = c2
}
