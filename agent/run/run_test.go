package run

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/source"
	"github.com/sessionaudit/sessionaudit/agent/spool"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// driver runs Run with a poll timer the test fires, and collects the
// spooled reports.
type driver struct {
	t       *testing.T
	clk     *clock.Manual
	ticks   chan time.Time
	waits   chan time.Duration // the poll interval of each wait
	reports chan *pb.Report
	reload  chan time.Time
	cancel  context.CancelFunc
	done    chan error
}

func startDriver(t *testing.T, src source.Source, w *config.Watcher, stateDir string, clk *clock.Manual, adjust func(*Options)) *driver {
	t.Helper()
	d := &driver{t: t, clk: clk, ticks: make(chan time.Time), waits: make(chan time.Duration, 100),
		reports: make(chan *pb.Report, 100), reload: make(chan time.Time), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	opts := Options{
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
	go func() { d.done <- Run(ctx, opts) }()
	t.Cleanup(func() { d.stop() })
	return d
}

// next waits for the next spooled report.
func (d *driver) next() *pb.Report {
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
func (d *driver) wait() time.Duration {
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
func (d *driver) poll(step time.Duration) *pb.Report {
	d.t.Helper()
	d.clk.Advance(step)
	d.ticks <- time.Time{}
	return d.next()
}

func (d *driver) stop() {
	if d.cancel == nil {
		return
	}
	d.cancel()
	if err := <-d.done; err != nil {
		d.t.Errorf("Run: %v", err)
	}
	d.cancel = nil
}

func kindOf(r *pb.Report) string { return r.ContentName() }

// TestRestartContinuesSequence: without a collector, reports are spooled;
// after a restart on the same state directory, the sequence continues
// with a Snapshot and nothing is numbered twice.
func TestRestartContinuesSequence(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewManual(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	src := NewUnchangedSource(clk, 5, 2)
	w := config.NewWatcher()
	d := startDriver(t, src, w, dir, clk, nil)
	var seqs []uint64
	r := d.next()
	if kindOf(r) != "snapshot" || r.GetSequence() != 1 {
		t.Fatalf("first report %s #%d; want snapshot #1", kindOf(r), r.GetSequence())
	}
	seqs = append(seqs, r.GetSequence())
	if got := d.wait(); got != time.Minute {
		t.Errorf("poll interval %s; want the default 1m", got)
	}
	for range 3 {
		r := d.poll(time.Minute)
		d.wait()
		if kindOf(r) != "heartbeat" {
			t.Errorf("report #%d is a %s; want heartbeat", r.GetSequence(), kindOf(r))
		}
		seqs = append(seqs, r.GetSequence())
	}
	d.stop()

	d = startDriver(t, src, config.NewWatcher(), dir, clk, nil)
	r = d.next()
	if kindOf(r) != "snapshot" || r.GetSequence() != 5 {
		t.Fatalf("first report after restart %s #%d; want snapshot #5", kindOf(r), r.GetSequence())
	}
	d.wait()
	d.stop()

	sp, err := spool.Open(dir+"/"+SpoolDir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	got, err := sp.Peek(100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// A run of heartbeats comes out of the spool as its last one.
	var gotSeqs []uint64
	for _, r := range got {
		gotSeqs = append(gotSeqs, r.GetSequence())
	}
	if want := []uint64{1, 4, 5}; !slices.Equal(gotSeqs, want) {
		t.Errorf("spool gives sequences %v; want %v", gotSeqs, want)
	}
	if want := []uint64{1, 2, 3, 4}; !slices.Equal(seqs, want) {
		t.Errorf("first run spooled %v; want %v", seqs, want)
	}
}

// TestLiveSettings: a policy change of the poll interval and of a class
// takes effect without a restart.
func TestLiveSettings(t *testing.T) {
	clk := clock.NewManual(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	src := NewUnchangedSource(clk, 5, 2)
	policy := &mutableLayer{name: "Group Policy", values: map[string]string{config.PollIntervalSeconds: "30"}}
	flags := config.MapLayer{LayerName: "flags", Values: map[string]string{config.PollIntervalSeconds: "20"}}
	w := config.NewWatcher(policy, flags)
	d := startDriver(t, src, w, t.TempDir(), clk, nil)
	d.next()
	if got := d.wait(); got != 30*time.Second {
		t.Fatalf("poll interval %s; want 30s from the policy", got)
	}
	policy.set(map[string]string{config.PollIntervalSeconds: "45", config.CollectServerSessions: "0"})
	d.reload <- time.Time{}
	if got := d.wait(); got != 45*time.Second {
		t.Fatalf("poll interval after the policy change %s; want 45s", got)
	}
	r := d.poll(45 * time.Second)
	delta := r.GetDelta()
	if delta == nil {
		t.Fatalf("report after turning server sessions off is a %s; want a delta with the DISABLED error", kindOf(r))
	}
	found := false
	for _, e := range delta.GetErrors() {
		if e.GetWmiClass() == source.ClassServerSession && e.GetKind() == pb.CollectionErrorKind_COLLECTION_ERROR_KIND_DISABLED {
			found = true
		}
	}
	if !found || len(delta.GetServerSessionsEnded()) != 0 {
		t.Errorf("delta errors %v, ended %v; want Win32_ServerSession DISABLED and nothing ended", delta.GetErrors(), delta.GetServerSessionsEnded())
	}
	d.wait()
	policy.set(nil) // back to the flags
	d.reload <- time.Time{}
	if got := d.wait(); got != 20*time.Second {
		t.Fatalf("poll interval without the policy %s; want 20s from the flags", got)
	}
}

// mutableLayer is a layer whose values the test changes.
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
