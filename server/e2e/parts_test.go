package e2e

// A file server with 50,000 SMB sessions (issue "3/7 Real fleets", item 5):
// the agent's tracker splits the snapshot in parts, its real spool and
// uplink deliver them, the real collector takes them over mTLS and the
// store assembles them.

import (
	"context"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/change"
	"github.com/sessionaudit/sessionaudit/agent/spool"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/servertest"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
)

// fileServerSnapshot is a snapshot of a file server with n SMB sessions
// (and one interactive logon), taken at takenAt.
func fileServerSnapshot(n int, takenAt time.Time, boot time.Time) *pb.Snapshot {
	raw := uint32(2)
	snap := &pb.Snapshot{
		Host:          &pb.Host{MachineGuid: testGUID, Hostname: "fs-test", Domain: "CORP", LastBootTime: timestamppb.New(boot)},
		TakenAt:       timestamppb.New(takenAt),
		LogonSessions: []*pb.LogonSession{e2eLogon("0x1")},
	}
	for i := range n {
		active := uint32(takenAt.Sub(boot)/time.Second) - 60
		snap.ServerSessions = append(snap.ServerSessions, &pb.ServerSession{
			ComputerName: fmt.Sprintf("10.%d.%d.%d", 1+i>>16, (i>>8)&255, i&255), UserName: fmt.Sprintf("CORP\\user%05d", i),
			ActiveTime: &active, IdleTime: ptr(uint32(30)), ResourcesOpened: ptr(uint32(2)),
			SessionTypeRaw: &raw, SessionType: pb.ServerSessionTypeFromWMI(raw), ClientType: "Windows 10 Enterprise", TransportName: "\\Device\\NetbiosSmb",
		})
	}
	return snap
}

func ptr[T any](v T) *T { return &v }

func TestFileServer50000SessionsInParts(t *testing.T) {
	if testing.Short() {
		t.Skip("50,000 sessions end to end")
	}
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
	trust, err := pki.NewTrust([]*x509.Certificate{agentCA.Certificate()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := st.CreateEnrollmentSecret(ctx, "parts e2e", 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	c := servertest.Start(t, st, agentCA, trust, "127.0.0.1:0", e2eCollectorOptions(t))
	pool := x509.NewCertPool()
	pool.AddCert(agentCA.Certificate())
	client, err := uplink.New(uplink.Options{
		Address: c.Addr, ServerName: "localhost", CAPool: pool, CAPins: []string{uplink.SPKIPin(agentCA.Certificate())},
		EnrollmentSecret: secret, Host: testHost, StateDir: t.TempDir(), Logger: testLogger(t),
		Backoff: uplink.BackoffConfig{Base: 20 * time.Millisecond, Max: 300 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sp, err := spool.Open(t.TempDir(), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	tr, err := change.NewTracker(change.Options{FirstSequence: 1})
	if err != nil {
		t.Fatal(err)
	}
	boot := now.Add(-24 * time.Hour).Truncate(time.Second).UTC()
	t1 := now.Add(-10 * time.Minute).Truncate(time.Second).UTC()
	snap := fileServerSnapshot(50000, t1, boot)

	// Before: the snapshot as one report is refused by the collector.
	whole := &pb.Report{Sequence: 1, Content: &pb.Report_Snapshot{Snapshot: snap}}
	t.Logf("the snapshot as one report: %d sessions, %d bytes", len(snap.GetServerSessions())+1, proto.Size(whole))

	start := time.Now()
	reps, err := tr.NextReports(snap)
	if err != nil {
		t.Fatal(err)
	}
	split := time.Since(start)
	for _, r := range reps {
		if err := sp.Append(r); err != nil {
			t.Fatal(err)
		}
		t.Logf("part %d/%d: sequence %d, %d sessions, %d bytes", r.GetSnapshot().GetPart(), r.GetSnapshot().GetPartsTotal(),
			r.GetSequence(), len(r.GetSnapshot().GetLogonSessions())+len(r.GetSnapshot().GetServerSessions()), proto.Size(r))
	}
	spooled := time.Since(start)
	last := reps[len(reps)-1].GetSequence()
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- uplink.NewPump(client, sp, uplink.PumpOptions{PollInterval: 20 * time.Millisecond}).Run(pctx)
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(2 * time.Minute)
	for sp.Stats().Acknowledged < last {
		if time.Now().After(deadline) {
			t.Fatalf("acknowledged %d of %d", sp.Stats().Acknowledged, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	delivered := time.Since(start)
	count := func(q string) int {
		var n int
		if err := st.Pool().QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM server_session WHERE end_before = 'infinity'`); n != 50000 {
		t.Fatalf("%d open server sessions stored, want 50000", n)
	}
	if n := count(`SELECT count(*) FROM snapshot_part`); n != 0 {
		t.Errorf("%d parts still held", n)
	}
	t.Logf("50,000 SMB sessions: %d parts; split %v, spooled %v, delivered and stored %v (from the tracker's report to the last acknowledgement)",
		len(reps), split.Round(time.Millisecond), spooled.Round(time.Millisecond), delivered.Round(time.Millisecond))

	// The next full snapshot, in parts, without 10,000 of them: those end,
	// and only when every part has arrived.
	tr.RequestResync()
	t2 := t1.Add(time.Minute)
	snap2 := fileServerSnapshot(50000, t2, boot)
	snap2.ServerSessions = snap2.ServerSessions[:40000]
	start = time.Now()
	reps, err = tr.NextReports(snap2)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if err := sp.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	last = reps[len(reps)-1].GetSequence()
	for sp.Stats().Acknowledged < last {
		if time.Now().After(deadline.Add(time.Minute)) {
			t.Fatalf("acknowledged %d of %d", sp.Stats().Acknowledged, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("second snapshot, 40,000 sessions in %d parts: delivered and stored in %v", len(reps), time.Since(start).Round(time.Millisecond))
	if n := count(`SELECT count(*) FROM server_session WHERE end_before = 'infinity'`); n != 40000 {
		t.Errorf("%d open server sessions, want 40000", n)
	}
	if n := count(`SELECT count(*) FROM server_session WHERE end_before < 'infinity'`); n != 10000 {
		t.Errorf("%d ended server sessions, want 10000", n)
	}

	// The whole snapshot in one report, as every agent before this change
	// sent it, is refused (before the refused batch would have blocked the
	// spool behind it).
	whole.Sequence = last + 1
	if _, err := client.SendBatch(ctx, &pb.Batch{Reports: []*pb.Report{whole}}); err == nil {
		t.Error("the snapshot in one report was accepted, want refused")
	} else {
		t.Logf("the snapshot in one report: %v", err)
	}
}
