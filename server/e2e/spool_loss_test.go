package e2e

// The agent's run loop against the real collector when its spool is lost
// (deleted) or goes back to an older copy (a VM snapshot restored): its
// reports must reach the store at once, not be taken for duplicates of
// reports it numbered before.

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/run"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
	"github.com/sessionaudit/sessionaudit/proto/identity"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/servertest"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
)

// spoolLossRig is a collector over a fresh database, and a simulated file
// server whose agent reports to it from stateDir.
type spoolLossRig struct {
	t        *testing.T
	st       *store.Store
	src      *recordingSource
	sim      *simulate.Source
	clk      *clock.Manual
	flags    *mutableLayer
	stateDir string
	tune     func(*run.Options)
	last     uint64 // the sequence of the newest report spooled
}

func newSpoolLossRig(t *testing.T) *spoolLossRig {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, storetest.NewDatabase(t, store.Migrate))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	realNow := time.Now()
	certTime := realNow.Add(-3 * time.Hour)
	ca, err := pki.NewCA("spool loss agent CA", 365*24*time.Hour, certTime)
	if err != nil {
		t.Fatal(err)
	}
	analysts, err := pki.NewCA("spool loss analyst CA", 365*24*time.Hour, certTime)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := pki.NewTrust([]*x509.Certificate{ca.Certificate()}, []*x509.Certificate{analysts.Certificate()})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := st.CreateEnrollmentSecret(ctx, "spool loss", 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	col := servertest.Start(t, st, ca, trust, "127.0.0.1:0", servertest.Options{CertTime: certTime})
	caFile := filepath.Join(t.TempDir(), "collector-ca.pem")
	if err := os.WriteFile(caFile, identity.EncodeCertificatesPEM(ca.Certificate().Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	// The agent's clock: two hours behind, one minute per poll.
	clk := clock.NewManual(realNow.Add(-2 * time.Hour).Truncate(time.Second))
	sim, err := simulate.New(simulate.Config{Seed: 11, Profile: simulate.FileServer, Clock: clk, RebootsPerWeek: -1, AlwaysWorking: true})
	if err != nil {
		t.Fatal(err)
	}
	return &spoolLossRig{
		t: t, st: st, src: &recordingSource{Source: sim}, sim: sim, clk: clk, stateDir: t.TempDir(),
		flags: &mutableLayer{name: "flags", values: map[string]string{
			config.CollectorAddress: col.Addr, config.CACertificate: caFile, config.EnrollmentSecret: secret,
			config.PollIntervalSeconds: "60",
		}},
		tune: func(o *run.Options) {
			o.Uplink = func(u *uplink.Options) {
				u.ServerName = "localhost"
				u.Backoff = uplink.BackoffConfig{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}
			}
		},
	}
}

// start starts the agent on the rig's state directory and returns its
// driver and first report (a Snapshot), once the loop waits again.
func (g *spoolLossRig) start() (*runDriver, *pb.Report) {
	g.t.Helper()
	d := startRunDriver(g.t, g.src, config.NewWatcher(g.flags), g.stateDir, g.clk, g.tune)
	r := d.next()
	d.wait()
	if r.GetSnapshot() == nil {
		g.t.Fatalf("first report after a start: #%d %s; want a snapshot", r.GetSequence(), r.ContentName())
	}
	g.last = r.GetSequence()
	return d, r
}

// polls polls n times, a minute apart; each report follows the last.
func (g *spoolLossRig) polls(d *runDriver, n int) {
	g.t.Helper()
	for range n {
		r := d.poll(time.Minute)
		d.wait()
		if r.GetSequence() != g.last+1 {
			g.t.Fatalf("report #%d follows #%d", r.GetSequence(), g.last)
		}
		g.last = r.GetSequence()
	}
}

// lastSeen is the host's last_seen in the store: the taken_at of the newest
// report stored.
func (g *spoolLossRig) lastSeen() time.Time {
	g.t.Helper()
	var ts pgtype.Timestamptz
	err := g.st.Pool().QueryRow(context.Background(), `SELECT last_seen FROM host WHERE machine_guid = $1`, g.sim.MachineGUID()).Scan(&ts)
	if err != nil {
		return time.Time{}
	}
	return ts.Time
}

// waitStored waits until the store's history of the host reaches the
// newest snapshot the source took: the report of that poll is stored.
func (g *spoolLossRig) waitStored(what string) {
	g.t.Helper()
	want := g.src.snaps[len(g.src.snaps)-1].GetTakenAt().AsTime()
	deadline := time.Now().Add(20 * time.Second)
	for !g.lastSeen().Equal(want) {
		if time.Now().After(deadline) {
			g.t.Fatalf("%s: the store's history of the host reaches %v, not the newest poll, %v: reports were not stored",
				what, g.lastSeen().UTC(), want.UTC())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkHistory checks that, at every poll's instant from the first'th on,
// the store says exactly who the source said was on.
func (g *spoolLossRig) checkHistory(first int) {
	g.t.Helper()
	for i, snap := range g.src.snaps[first:] {
		at := snap.GetTakenAt().AsTime()
		p, err := g.st.WhoWasOn(context.Background(), store.WhoWasOnQuery{Host: g.sim.MachineGUID(), At: at, PageSize: 1000})
		if err != nil {
			g.t.Fatal(err)
		}
		var want, got []string
		for _, l := range snap.GetLogonSessions() {
			want = append(want, l.GetLogonId())
		}
		for _, s := range snap.GetServerSessions() {
			want = append(want, s.GetComputerName()+`\`+s.GetUserName())
		}
		for _, l := range p.Logon {
			got = append(got, l.Session.LogonID)
		}
		for _, s := range p.Server {
			got = append(got, s.Session.ComputerName+`\`+s.Session.UserName)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(want, got) {
			g.t.Errorf("poll %d (%s): the store has %v; the source saw %v", first+i, at.Format(time.TimeOnly), got, want)
		}
	}
}

// TestSpoolDeletedEndToEnd: an agent's spool is deleted after 11
// acknowledged reports, while it is stopped; it starts again at sequence 1,
// in a new incarnation. Its reports are stored at once and the host's
// sessions follow them, instead of being acknowledged as duplicates of the
// old spool's 1..11 while the host looks fresh; the collector notes the new
// incarnation.
func TestSpoolDeletedEndToEnd(t *testing.T) {
	g := newSpoolLossRig(t)
	d, _ := g.start()
	g.polls(d, 10)
	g.waitStored("before the loss")
	d.stop()

	if err := os.RemoveAll(filepath.Join(g.stateDir, run.SpoolDir)); err != nil {
		t.Fatal(err)
	}
	g.clk.Advance(time.Minute)
	first := len(g.src.snaps)
	d, r := g.start()
	if r.GetSequence() != 1 {
		t.Fatalf("first report of the new spool: #%d; want #1", r.GetSequence())
	}
	g.waitStored("the new spool's snapshot")
	g.polls(d, 10)
	g.waitStored("the new spool's reports")
	d.stop()
	g.checkHistory(first)

	var note string
	err := g.st.Pool().QueryRow(context.Background(), `SELECT note FROM ingest_note WHERE field = 'Batch.incarnation'`).Scan(&note)
	if err != nil {
		t.Errorf("no note of the new incarnation: %v", err)
	}
	var applied int64
	if err := g.st.Pool().QueryRow(context.Background(), `SELECT applied_sequence FROM agent`).Scan(&applied); err != nil || applied != 11 {
		t.Errorf("agent's high-water mark %d, %v; want 11, the new spool's", applied, err)
	}
}

// TestRestoredSnapshotEndToEnd: a VM snapshot is taken when the agent's
// spool had delivered report 6; the agent goes on to report 17; then the
// snapshot is restored. The restored spool numbers its next report 7 again:
// the collector acknowledges 17, above anything the spool numbered, and the
// agent at once sends a Snapshot numbered 18. History resumes from the
// restored host's first poll; nothing it observed is taken for a duplicate.
func TestRestoredSnapshotEndToEnd(t *testing.T) {
	g := newSpoolLossRig(t)
	d, _ := g.start()
	g.polls(d, 5)
	g.waitStored("before the VM snapshot")
	d.stop()
	vmSnapshot := filepath.Join(t.TempDir(), "spool-copy")
	if err := os.CopyFS(vmSnapshot, os.DirFS(filepath.Join(g.stateDir, run.SpoolDir))); err != nil {
		t.Fatal(err)
	}

	g.clk.Advance(time.Minute)
	d, _ = g.start()
	g.polls(d, 10)
	if g.last != 17 {
		t.Fatalf("newest report #%d; want #17", g.last)
	}
	g.waitStored("before the restore")
	d.stop()

	// Restore the VM snapshot's spool; time has passed meanwhile (the
	// host's clock is set right on restore).
	spoolDir := filepath.Join(g.stateDir, run.SpoolDir)
	if err := os.RemoveAll(spoolDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(spoolDir, os.DirFS(vmSnapshot)); err != nil {
		t.Fatal(err)
	}
	g.clk.Advance(time.Minute)
	first := len(g.src.snaps)
	d, r := g.start()
	if r.GetSequence() != 7 {
		t.Fatalf("first report of the restored spool: #%d; want #7", r.GetSequence())
	}
	// The collector's acknowledgement of 17 makes the agent poll at once
	// and number the Snapshot above it.
	r = d.next()
	d.wait()
	if r.GetSnapshot() == nil || r.GetSequence() != 18 {
		t.Fatalf("report after the collector's acknowledgement: #%d %s; want snapshot #18", r.GetSequence(), r.ContentName())
	}
	g.last = r.GetSequence()
	g.waitStored("the restored host's first poll")
	g.polls(d, 5)
	g.waitStored("the restored host's reports")
	d.stop()
	g.checkHistory(first)
}
