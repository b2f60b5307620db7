package e2e

// Spool damage end to end: the agent's real spool, damaged on disk between
// two runs (a zeroed segment in the middle, or bytes flipped here and
// there), delivered by the agent's uplink to the real collector over a
// real PostgreSQL. The history held in the intact reports after each loss
// reaches the store, and each loss is recorded as a coverage gap of the
// host, which the next Snapshot settles.

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/spool"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/servertest"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
)

// damageReports is how many reports the damaged spool held: a Snapshot,
// then Deltas that each add one logon session.
const damageReports = 2000

// damageT0 puts the reports, one a minute, in the past of the collector's
// clock.
var damageT0 = time.Now().Add(-40 * time.Hour).Truncate(time.Second).UTC()

func damageAt(seq uint64) *timestamppb.Timestamp {
	return timestamppb.New(damageT0.Add(time.Duration(seq) * time.Minute))
}

func damageLogon(seq uint64) *pb.LogonSession {
	raw := uint32(3)
	return &pb.LogonSession{LogonId: fmt.Sprintf("0x%x", seq), LogonType: pb.LogonType_LOGON_TYPE_NETWORK, LogonTypeRaw: &raw,
		AuthenticationPackage: "Kerberos", StartTime: damageAt(seq), Account: &pb.Account{Domain: "CORP", Name: fmt.Sprintf("u%d", seq)}}
}

// damageReport is report seq of the scenario: a Snapshot for 1 and for
// damageReports+1 (the one after the restart, with every session), a Delta
// adding session seq otherwise.
func damageReport(seq uint64) *pb.Report {
	if seq == 1 || seq > damageReports {
		var all []*pb.LogonSession
		for s := uint64(1); s <= min(seq, damageReports); s++ {
			all = append(all, damageLogon(s))
		}
		return &pb.Report{Sequence: seq, Content: &pb.Report_Snapshot{Snapshot: &pb.Snapshot{
			Host: testHost(), TakenAt: damageAt(seq), LogonSessions: all}}}
	}
	return &pb.Report{Sequence: seq, Content: &pb.Report_Delta{Delta: &pb.Delta{
		BaseSequence: seq - 1, TakenAt: damageAt(seq), LogonSessionsUpserted: []*pb.LogonSession{damageLogon(seq)}}}}
}

// TestSpoolDamageZeroedSegment: a segment in the middle of the spool is all
// zeros. Every report after it is stored; the hole is one coverage gap.
func TestSpoolDamageZeroedSegment(t *testing.T) {
	testSpoolDamage(t, func(t *testing.T, segs []string) {
		p := segs[len(segs)/2]
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, len(b)), 0o600); err != nil {
			t.Fatal(err)
		}
	})
}

// TestSpoolDamageFlippedBytes: 30 bytes flipped at random in the spool
// (none in its newest 200 bytes: that would be taken for a torn write).
// Every intact report is stored; each run of damaged ones is a gap.
func TestSpoolDamageFlippedBytes(t *testing.T) {
	testSpoolDamage(t, func(t *testing.T, segs []string) {
		rng := rand.New(rand.NewPCG(30, 30))
		files := make([][]byte, len(segs))
		for i, p := range segs {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			files[i] = b
		}
		for range 30 {
			f := rng.IntN(len(files))
			n := len(files[f])
			if f == len(files)-1 {
				n -= 200
			}
			files[f][rng.IntN(n)] ^= byte(1 + rng.IntN(255))
		}
		for i, p := range segs {
			if err := os.WriteFile(p, files[i], 0o600); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// testSpoolDamage writes the scenario's reports to a spool, damages it,
// reopens it and delivers it, then appends the Snapshot an agent sends
// after a restart.
func testSpoolDamage(t *testing.T, damage func(t *testing.T, segs []string)) {
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t, store.Migrate)
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	now := time.Now()
	agentCA, err := pki.NewCA("spool damage agent CA", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	analystCA, err := pki.NewCA("spool damage analyst CA", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := pki.NewTrust([]*x509.Certificate{agentCA.Certificate()}, []*x509.Certificate{analystCA.Certificate()})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := st.CreateEnrollmentSecret(ctx, "spool damage", 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	col := servertest.Start(t, st, agentCA, trust, "127.0.0.1:0", e2eCollectorOptions(t))

	// The spool as the agent left it, then damaged while it was stopped.
	dir := t.TempDir()
	opts := spool.Options{SegmentBytes: 64 << 10}
	sp, err := spool.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= damageReports; seq++ {
		if err := sp.Append(damageReport(seq)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(segs) < 3 {
		t.Fatalf("segments %v %v: the scenario needs several", segs, err)
	}
	slices.Sort(segs)
	damage(t, segs)

	sp, err = spool.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	lost := sp.Stats().Lost
	intact, err := sp.Peek(1<<30, 0)
	if err != nil {
		t.Fatal(err)
	}
	var intactSeqs []uint64
	for _, r := range intact {
		intactSeqs = append(intactSeqs, r.GetSequence())
	}
	var lostCount uint64
	for _, l := range lost {
		lostCount += l.Reports()
	}
	t.Logf("damage: %d reports intact, %d lost in %d runs", len(intact), lostCount, len(lost))
	if len(lost) == 0 || uint64(len(intact))+lostCount != damageReports || intactSeqs[len(intactSeqs)-1] != damageReports {
		t.Fatalf("the damage: %d intact (newest %d), lost %+v", len(intact), intactSeqs[len(intactSeqs)-1], lost)
	}

	// Delivery.
	pool := x509.NewCertPool()
	pool.AddCert(agentCA.Certificate())
	client, err := uplink.New(uplink.Options{
		Address: col.Addr, ServerName: "localhost", CAPool: pool, CAPins: []string{uplink.SPKIPin(agentCA.Certificate())},
		EnrollmentSecret: secret, Host: testHost, StateDir: t.TempDir(), Logger: testLogger(t),
		Backoff: uplink.BackoffConfig{Base: 20 * time.Millisecond, Max: 300 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	resyncs := make(chan struct{}, 100)
	notify := make(chan struct{}, 1)
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- uplink.NewPump(client, sp, uplink.PumpOptions{PollInterval: 50 * time.Millisecond, Notify: notify,
			OnResync: func() { resyncs <- struct{}{} }}).Run(pctx)
	}()
	defer func() { cancel(); <-done }()
	eventually(t, "the damaged spool delivered", func() bool { return sp.Stats().Acknowledged == damageReports })

	// Every intact report's session is stored, and no other.
	var want []string
	for _, seq := range intactSeqs {
		want = append(want, fmt.Sprintf("0x%x open", seq))
	}
	slices.Sort(want)
	got := logonRows(t, st)
	if !slices.Equal(got, want) {
		t.Fatalf("stored %d sessions; want the %d of the intact reports", len(got), len(want))
	}
	if n := len(resyncs); n != 0 {
		t.Errorf("the collector asked for %d resyncs", n)
	}

	// Each loss is a gap of the host, from the report before it to the
	// one after it, not yet settled.
	gaps, err := st.CoverageGaps(ctx, store.CoverageGapsQuery{Host: testGUID})
	if err != nil {
		t.Fatal(err)
	}
	if lost[0].FirstSequence == 1 {
		// Nothing was stored before: no coverage to have a gap in.
		lost = lost[1:]
	}
	if len(gaps.Items) != len(lost) {
		t.Fatalf("%d gaps recorded, want %d: %+v", len(gaps.Items), len(lost), gaps.Items)
	}
	for i, g := range gaps.Items {
		l := lost[i]
		if g.Reason != store.GapSpoolDamage || g.FirstSequence != l.FirstSequence || g.LastSequence != l.LastSequence ||
			!g.StartTime.Equal(damageAt(l.FirstSequence-1).AsTime()) || !g.EndTime.Equal(damageAt(l.NextSequence).AsTime()) ||
			!g.SettledAt.IsZero() || g.AgentID != client.Identity().AgentID {
			t.Errorf("gap %d: %+v; want reports %d..%d lost between %s and %s", i, g, l.FirstSequence, l.LastSequence,
				damageAt(l.FirstSequence-1).AsTime(), damageAt(l.NextSequence).AsTime())
		}
	}
	hosts, err := st.Hosts(ctx, store.HostsQuery{})
	if err != nil || len(hosts.Items) != 1 || hosts.Items[0].CoverageGaps != len(lost) {
		t.Fatalf("Hosts: %+v %v", hosts, err)
	}

	// The Snapshot after the restart settles the gaps and brings back the
	// sessions only the lost reports had.
	if err := sp.Append(damageReport(damageReports + 1)); err != nil {
		t.Fatal(err)
	}
	notify <- struct{}{}
	eventually(t, "the snapshot delivered", func() bool { return sp.Stats().Acknowledged == damageReports+1 })
	if got := logonRows(t, st); len(got) != damageReports {
		t.Fatalf("after the snapshot: %d sessions stored, want %d", len(got), damageReports)
	}
	gaps, err = st.CoverageGaps(ctx, store.CoverageGapsQuery{Host: testGUID})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gaps.Items {
		if !g.SettledAt.Equal(damageAt(damageReports + 1).AsTime()) {
			t.Errorf("gap %+v not settled by the snapshot", g)
		}
	}
	if st := sp.Stats(); len(st.Lost) != 0 {
		t.Errorf("the spool still holds losses after their delivery: %+v", st.Lost)
	}
}
