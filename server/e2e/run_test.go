package e2e

// The agent's run loop (agent/run.Run: source, tracker, spool, uplink)
// against the real collector (server.New) on loopback with TLS from
// server/pki and a real PostgreSQL.

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/run"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/agent/source"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
	"github.com/sessionaudit/sessionaudit/proto/identity"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/servertest"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
)

// recordingSource keeps a copy of every snapshot, the ground truth.
type recordingSource struct {
	*simulate.Source
	snaps []*pb.Snapshot
}

func (r *recordingSource) Snapshot(ctx context.Context) (*pb.Snapshot, error) {
	s, err := r.Source.Snapshot(ctx)
	if err == nil {
		r.snaps = append(r.snaps, proto.CloneOf(s))
	}
	return s, err
}

// TestRunEndToEnd: a simulated file server polled every (manual) minute
// enrolls and reports; the collector goes away for ten polls (the agent
// keeps spooling), the agent restarts on its state directory meanwhile,
// and the collector comes back on another address, set by a live settings
// change. Everything is delivered once: the
// store's intervals say, at every poll's instant, exactly who the source
// said was on.
func TestRunEndToEnd(t *testing.T) {
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t, store.Migrate)
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	realNow := time.Now()
	certTime := realNow.Add(-3 * time.Hour) // the agent's clock runs behind
	ca, err := pki.NewCA("run e2e agent CA", 365*24*time.Hour, certTime)
	if err != nil {
		t.Fatal(err)
	}
	analysts, err := pki.NewCA("run e2e analyst CA", 365*24*time.Hour, certTime)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := pki.NewTrust([]*x509.Certificate{ca.Certificate()}, []*x509.Certificate{analysts.Certificate()})
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := st.CreateEnrollmentSecret(ctx, "run e2e", 1, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	col := servertest.Start(t, st, ca, trust, "127.0.0.1:0", servertest.Options{CertTime: certTime})
	caFile := filepath.Join(t.TempDir(), "collector-ca.pem")
	if err := os.WriteFile(caFile, identity.EncodeCertificatesPEM(ca.Certificate().Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	flagValues := func(addr string) map[string]string {
		return map[string]string{
			config.CollectorAddress: addr, config.CACertificate: caFile, config.EnrollmentSecret: secret,
			config.PollIntervalSeconds: "60",
		}
	}
	flags := &mutableLayer{name: "flags", values: flagValues(col.Addr)}

	// The agent's clock: 90 minutes behind, one minute per poll.
	clk := clock.NewManual(realNow.Add(-90 * time.Minute).Truncate(time.Second))
	// Working hours whatever the hour the test runs at: a file server at
	// night or on a weekend opens almost no SMB sessions in 37 minutes.
	sim, err := simulate.New(simulate.Config{Seed: 7, Profile: simulate.FileServer, Clock: clk, RebootsPerWeek: -1, AlwaysWorking: true})
	if err != nil {
		t.Fatal(err)
	}
	src := &recordingSource{Source: sim}
	stateDir := t.TempDir()
	tune := func(o *run.Options) {
		o.Uplink = func(u *uplink.Options) {
			u.ServerName = "localhost"
			u.Backoff = uplink.BackoffConfig{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}
		}
	}
	var last uint64
	polls := func(d *runDriver, n int) {
		for range n {
			r := d.poll(time.Minute)
			d.wait()
			if r.GetSequence() != last+1 {
				t.Fatalf("report #%d follows #%d", r.GetSequence(), last)
			}
			last = r.GetSequence()
		}
	}

	d := startRunDriver(t, src, config.NewWatcher(flags), stateDir, clk, tune)
	last = d.next().GetSequence()
	d.wait()
	polls(d, 10)
	waitApplied(t, st, last)

	col.Stop(t, 5*time.Second) // the collector goes away; the agent keeps spooling
	polls(d, 10)
	d.stop() // and the agent restarts on its state directory
	d = startRunDriver(t, src, config.NewWatcher(flags), stateDir, clk, tune)
	r := d.next()
	if r.GetSnapshot() == nil || r.GetSequence() != last+1 {
		t.Fatalf("first report after the restart: #%d %s; want snapshot #%d", r.GetSequence(), r.ContentName(), last+1)
	}
	last = r.GetSequence()
	d.wait()
	polls(d, 5)
	// The collector comes back on another address, which the agent
	// learns from a settings reload: the uplink is made again.
	col = servertest.Start(t, st, ca, trust, "127.0.0.1:0", servertest.Options{CertTime: certTime})
	flags.set(flagValues(col.Addr))
	d.reload <- time.Time{}
	polls(d, 10)
	waitApplied(t, st, last)
	d.stop()

	// Who was on, at every poll's instant, is what the source saw.
	guid := sim.MachineGUID()
	var logons, servers int
	for i, snap := range src.snaps {
		logons += len(snap.GetLogonSessions())
		servers += len(snap.GetServerSessions())
		at := snap.GetTakenAt().AsTime()
		p, err := st.WhoWasOn(ctx, store.WhoWasOnQuery{Host: guid, At: at, PageSize: 1000})
		if err != nil {
			t.Fatal(err)
		}
		var wantLogon, gotLogon, wantServer, gotServer []string
		for _, l := range snap.GetLogonSessions() {
			wantLogon = append(wantLogon, l.GetLogonId())
		}
		for _, l := range p.Logon {
			gotLogon = append(gotLogon, l.Session.LogonID)
		}
		for _, s := range snap.GetServerSessions() {
			wantServer = append(wantServer, s.GetComputerName()+`\`+s.GetUserName())
		}
		for _, s := range p.Server {
			gotServer = append(gotServer, s.Session.ComputerName+`\`+s.Session.UserName)
		}
		for _, l := range [][]string{wantLogon, gotLogon, wantServer, gotServer} {
			slices.Sort(l)
		}
		if !slices.Equal(wantLogon, gotLogon) {
			t.Errorf("poll %d (%s): store has logon sessions %v; the source saw %v", i, at.Format(time.TimeOnly), gotLogon, wantLogon)
		}
		if !slices.Equal(wantServer, gotServer) {
			t.Errorf("poll %d (%s): store has server sessions %v; the source saw %v", i, at.Format(time.TimeOnly), gotServer, wantServer)
		}
	}
	t.Logf("%d polls, %d reports; %d logon and %d server sessions seen in all", len(src.snaps), last, logons, servers)
	if len(src.snaps) < 30 || logons == 0 || servers == 0 {
		t.Fatalf("%d snapshots, %d logon and %d server sessions in all: the scenario tests nothing", len(src.snaps), logons, servers)
	}

	// No interval stored twice.
	rows, err := st.Pool().Query(ctx, `SELECT l.logon_id, count(*) FROM logon_session l JOIN host h USING (host_id)
		WHERE h.machine_guid = $1 GROUP BY l.logon_id, l.boot_time HAVING count(*) > 1`, guid)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		t.Errorf("logon session %s stored %d times", id, n)
	}
	rows.Close()
}

// waitApplied waits until the collector stored every report up to seq.
func waitApplied(t *testing.T, st *store.Store, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var applied uint64
	for time.Now().Before(deadline) {
		err := st.Pool().QueryRow(context.Background(), `SELECT coalesce(max(applied_sequence), 0) FROM agent`).Scan(&applied)
		if err != nil {
			t.Fatal(err)
		}
		if applied >= seq {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal(fmt.Sprintf("collector applied up to #%d within 30 s; want #%d", applied, seq))
}

// runDriver runs run.Run with a poll timer the test fires, and collects the
// spooled reports (as agent/run's own tests do).
type runDriver struct {
	t       *testing.T
	clk     *clock.Manual
	ticks   chan time.Time
	waits   chan time.Duration // the poll interval of each wait
	reports chan *pb.Report
	reload  chan time.Time
	cancel  context.CancelFunc
	done    chan error
}

func startRunDriver(t *testing.T, src source.Source, w *config.Watcher, stateDir string, clk *clock.Manual, adjust func(*run.Options)) *runDriver {
	t.Helper()
	d := &runDriver{t: t, clk: clk, ticks: make(chan time.Time), waits: make(chan time.Duration, 100),
		reports: make(chan *pb.Report, 100), reload: make(chan time.Time), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	opts := run.Options{
		Source: src, Watcher: w, StateDir: stateDir, Clock: clk, Logger: quietLogger(), ReloadTicks: d.reload,
		After: func(dur time.Duration) <-chan time.Time {
			d.waits <- dur
			return d.ticks
		},
		OnReport: func(r *pb.Report) { d.reports <- r },
	}
	if adjust != nil {
		adjust(&opts)
	}
	go func() { d.done <- run.Run(ctx, opts) }()
	t.Cleanup(func() { d.stop() })
	return d
}

// next waits for the next spooled report.
func (d *runDriver) next() *pb.Report {
	d.t.Helper()
	select {
	case r := <-d.reports:
		return r
	case <-time.After(20 * time.Second):
		d.t.Fatal("no report within 20 s")
		return nil
	}
}

// wait returns the interval of the loop's next wait.
func (d *runDriver) wait() time.Duration {
	d.t.Helper()
	select {
	case w := <-d.waits:
		return w
	case <-time.After(20 * time.Second):
		d.t.Fatal("the loop did not wait within 20 s")
		return 0
	}
}

// poll advances the clock by step and fires the poll timer.
func (d *runDriver) poll(step time.Duration) *pb.Report {
	d.t.Helper()
	d.clk.Advance(step)
	d.ticks <- time.Time{}
	return d.next()
}

func (d *runDriver) stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	if err := <-d.done; err != nil {
		d.t.Errorf("Run: %v", err)
	}
	d.cancel = nil
}

// mutableLayer is a settings layer whose values the test changes.
type mutableLayer struct {
	name   string
	mu     sync.Mutex
	values map[string]string
}

func (m *mutableLayer) Name() string { return m.name }

func (m *mutableLayer) Read() (map[string]config.Value, []config.Warning) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return config.MapLayer{LayerName: m.name, Values: m.values}.Read()
}

func (m *mutableLayer) set(v map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.values = v
}
