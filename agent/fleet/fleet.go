package fleet

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/change"
	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// Config configures a Fleet.
type Config struct {
	// Address is the collector's host:port; ServerName the name its
	// certificate carries (default the host of Address).
	Address    string
	ServerName string
	// CAPool holds the CA the collector's certificate chains to.
	CAPool *x509.CertPool
	// EnrollmentSecret enrolls each agent; it must allow len(Profiles)
	// uses (or be unlimited).
	EnrollmentSecret string
	// StateDir holds one directory per agent (its key and certificate).
	StateDir string
	// Profiles gives the hosts, one agent each.
	Profiles []simulate.Profile
	// Seed makes the hosts: the same seed and start give the same history.
	Seed uint64
	// Start is where the simulated history begins.
	Start time.Time
	// Poll is the simulated poll interval; default one minute.
	Poll time.Duration
	// MaxReports bounds a batch; default uplink.DefaultMaxReports.
	MaxReports int
	// Backoff is the uplink's; the default retries from 50 ms to 1 s, to
	// keep tests and the demo quick.
	Backoff uplink.BackoffConfig
	// DialOptions are added to each agent's connection.
	DialOptions []grpc.DialOption
	// Logger receives the uplink's logs; default slog.Default().
	Logger *slog.Logger
}

// Agent is one simulated agent: a simulated host, its change tracker, its
// queue, and an uplink with its own identity.
type Agent struct {
	Name    string
	Profile simulate.Profile
	Source  *simulate.Source
	Queue   *Queue
	Client  *uplink.Client
	Truth   *HostTruth

	clk     *clock.Manual
	tracker *change.Tracker
	resync  atomic.Bool
	counts  Counts
}

// Counts are the reports an agent made, by kind.
type Counts struct{ Reports, Snapshots, Deltas, Heartbeats int }

func (c *Counts) add(o Counts) {
	c.Reports += o.Reports
	c.Snapshots += o.Snapshots
	c.Deltas += o.Deltas
	c.Heartbeats += o.Heartbeats
}

// Counts returns the reports the agent made so far.
func (a *Agent) Counts() Counts { return a.counts }

// Fleet is a set of simulated agents. Advance and the methods reading
// truth must not run concurrently; delivery runs in the background between
// Start and Stop.
type Fleet struct {
	cfg    Config
	Agents []*Agent

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New makes the agents (it neither enrolls nor connects: see Enroll).
func New(cfg Config) (*Fleet, error) {
	if cfg.Poll <= 0 {
		cfg.Poll = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Backoff == (uplink.BackoffConfig{}) {
		cfg.Backoff = uplink.BackoffConfig{Base: 50 * time.Millisecond, Max: time.Second}
	}
	if cfg.Start.IsZero() {
		return nil, errors.New("fleet: Config.Start is required (the start of the simulated history)")
	}
	f := &Fleet{cfg: cfg}
	for i, p := range cfg.Profiles {
		clk := clock.NewManual(cfg.Start)
		src, err := simulate.New(simulate.Config{Seed: cfg.Seed*100000 + uint64(i), Profile: p, Clock: clk, AgentVersion: "fleetsim"})
		if err != nil {
			return nil, fmt.Errorf("fleet: host %d (%s): %w", i, p, err)
		}
		tr, err := change.NewTracker(change.Options{FirstSequence: 1, Clock: clk})
		if err != nil {
			return nil, err
		}
		a := &Agent{Name: src.Hostname(), Profile: p, Source: src, Queue: NewQueue(), clk: clk, tracker: tr,
			Truth: NewHostTruth(src.Hostname(), src.MachineGUID())}
		host := &pb.Host{MachineGuid: src.MachineGUID(), Hostname: src.Hostname(), AgentVersion: "fleetsim"}
		a.Client, err = uplink.New(uplink.Options{
			Address: cfg.Address, ServerName: cfg.ServerName, CAPool: cfg.CAPool,
			EnrollmentSecret: cfg.EnrollmentSecret, Host: func() *pb.Host { return host },
			StateDir: filepath.Join(cfg.StateDir, fmt.Sprintf("agent-%05d", i)),
			Logger:   cfg.Logger.With("host", src.Hostname()), Backoff: cfg.Backoff, DialOptions: cfg.DialOptions,
		})
		if err != nil {
			return nil, fmt.Errorf("fleet: agent of %s: %w", src.Hostname(), err)
		}
		f.Agents = append(f.Agents, a)
	}
	return f, nil
}

// Enroll gives every agent its identity (uplink.Client.EnsureIdentity with
// the enrollment secret), retrying what the collector pushes back (its
// enrollment rate limit) until ctx is done.
func (f *Fleet) Enroll(ctx context.Context) error {
	for _, a := range f.Agents {
		b := uplink.NewBackoff(f.cfg.Backoff, nil)
		for {
			err := a.Client.EnsureIdentity(ctx)
			if err == nil {
				break
			}
			if _, ok := errors.AsType[*uplink.PushbackError](err); !ok {
				return fmt.Errorf("fleet: enroll %s: %w", a.Name, err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("fleet: enroll %s: %w (last: %v)", a.Name, ctx.Err(), err)
			case <-time.After(b.Next(0)):
			}
		}
	}
	return nil
}

// Start runs every agent's uplink.Pump in the background until Stop.
func (f *Fleet) Start(ctx context.Context) {
	ctx, f.cancel = context.WithCancel(ctx)
	for _, a := range f.Agents {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			p := uplink.NewPump(a.Client, a.Queue, uplink.PumpOptions{
				MaxReports: f.cfg.MaxReports, PollInterval: 100 * time.Millisecond, Notify: a.Queue.Notify(),
				OnResync: func() { a.resync.Store(true) },
			})
			_ = p.Run(ctx)
		}()
	}
}

// Stop stops delivery and closes the agents' connections.
func (f *Fleet) Stop() {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	for _, a := range f.Agents {
		_ = a.Client.Close()
	}
}

// Advance polls every simulated host once per poll interval until its
// clock reaches until, queueing each report and recording it in the truth.
func (f *Fleet) Advance(ctx context.Context, until time.Time) error {
	for _, a := range f.Agents {
		for !a.clk.Now().Add(f.cfg.Poll).After(until) {
			a.clk.Advance(f.cfg.Poll)
			if err := a.poll(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// poll takes one snapshot and queues its report.
func (a *Agent) poll(ctx context.Context) error {
	snap, err := a.Source.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("fleet: %s: snapshot: %w", a.Name, err)
	}
	if a.resync.Swap(false) {
		a.tracker.RequestResync()
	}
	reps, err := a.tracker.NextReports(snap)
	if err != nil {
		return fmt.Errorf("fleet: %s: next report: %w", a.Name, err)
	}
	for _, r := range reps {
		if err := a.Truth.Observe(r); err != nil {
			return err
		}
		a.counts.Reports++
		switch r.GetContent().(type) {
		case *pb.Report_Snapshot:
			a.counts.Snapshots++
		case *pb.Report_Delta:
			a.counts.Deltas++
		case *pb.Report_Heartbeat:
			a.counts.Heartbeats++
		}
		a.Queue.Append(r)
	}
	return nil
}

// Delivered waits until every agent's queue is empty, or ctx is done.
func (f *Fleet) Delivered(ctx context.Context) error {
	for {
		pending := 0
		for _, a := range f.Agents {
			pending += a.Queue.Pending()
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fleet: %d reports still unacknowledged: %w", pending, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Truths returns the ground truth of every host.
func (f *Fleet) Truths() []*HostTruth {
	out := make([]*HostTruth, len(f.Agents))
	for i, a := range f.Agents {
		out[i] = a.Truth
	}
	return out
}

// Counts returns the reports of all agents.
func (f *Fleet) Counts() Counts {
	var c Counts
	for _, a := range f.Agents {
		c.add(a.counts)
	}
	return c
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
