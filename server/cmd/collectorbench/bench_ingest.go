package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/sessionaudit/sessionaudit/agent/fleet"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server"
	"github.com/sessionaudit/sessionaudit/store"
)

const benchIngestDoc = `Sustained ingest through gRPC on loopback. A collector is served in this
process (real TLS, the given PostgreSQL, default limits) and --agents simulated
agents, each enrolled with its own key and certificate, send pre-generated
batches (--history of simulated reports each, --batch reports per batch) as
fast as the collector acknowledges them: one batch in flight per agent, all
agents at once. It reports batches/s, reports/s, session changes/s (sessions
in snapshots plus sessions upserted and ended in deltas), the acknowledgement
latency (Ingest call, client side) p50/p99, and the process's RSS.

Then, in the same run, a second fleet of the same size and mix (other seeds,
so other hosts) goes straight into store.Ingest with the same batches and
concurrency, without gRPC, TLS, authentication or validation: the store's
own rate, and the ratio of the two.

The collector runs in this process: the RSS reported is the whole process
(collector, agents and their reports), an upper bound of the collector's.
The machine's two cores are shared by agents, collector and PostgreSQL.
`

// benchIngest is "collectorbench ingest".
func benchIngest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ingest", benchIngestDoc, stdout)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL of a database the benchmark may fill (env DATABASE_URL; required)")
	agents := fs.Int("agents", 200, "number of concurrent agents")
	history := fs.Duration("history", 24*time.Hour, "simulated history each agent pre-generates (one report per minute)")
	batch := fs.Int("batch", 60, "reports per batch")
	duration := fs.Duration("duration", 90*time.Second, "longest time for each of the two phases")
	maxIngests := fs.Int("max-concurrent-ingests", 0, "the collector's MaxConcurrentIngests (0: its default, 16)")
	seed := fs.Uint64("seed", 1, "seed of the simulation")
	groups := fs.Bool("heartbeat-groups", true, "the collector stores plain heartbeats of many agents in one statement (false: one transaction each, as before)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *dbURL == "":
		return usagef("--database-url (or DATABASE_URL) is required")
	case *agents < 1 || *batch < 1 || *history < time.Minute:
		return usagef("--agents, --batch must be positive and --history at least a minute")
	}
	if _, err := raiseFileLimit(uint64(4**agents + 1024)); err != nil {
		return fmt.Errorf("raise the open files limit: %w", err)
	}
	machine(stdout)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	c, err := startBenchCollector(ctx, *dbURL, "", *agents+100, *maxIngests, *groups, log)
	if err != nil {
		return err
	}
	defer c.stop()
	dir, err := stateRoot()
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	end := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	mk := func(seed uint64, sub string) (*fleet.Fleet, error) {
		f, err := fleet.New(fleet.Config{
			Address: c.addr, ServerName: "localhost", CAPool: c.pool, EnrollmentSecret: c.secret,
			StateDir: dir + "/" + sub, Profiles: benchProfiles(*agents), Seed: seed, Start: end.Add(-*history),
			Logger: log, DialOptions: []grpc.DialOption{sourceDialer(16)},
		})
		if err != nil {
			return nil, err
		}
		return f, f.Advance(ctx, end)
	}
	t0 := time.Now()
	viaGRPC, err := mk(*seed, "grpc")
	if err != nil {
		return err
	}
	defer viaGRPC.Stop()
	direct, err := mk(*seed+1000, "direct")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "generated 2 x %d agents x %v of reports in %v\n", *agents, *history, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	if err := viaGRPC.Enroll(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled %d agents in %v\n", *agents, time.Since(t0).Round(time.Millisecond))

	// Phase 1: through gRPC.
	runtime.GC()
	var m1 ingestMeasure
	cpu0 := cpuSeconds()
	m1.run(ctx, *duration, viaGRPC.Agents, *batch, func(ctx context.Context, a *fleet.Agent, reports []*pb.Report) error {
		ack, err := a.Client.Send(ctx, reports, 0)
		if err != nil {
			return err
		}
		if ack.Sequence < reports[len(reports)-1].GetSequence() || ack.ResyncRequired {
			return fmt.Errorf("%s: acknowledged %d of a batch up to %d (resync %v)", a.Name, ack.Sequence, reports[len(reports)-1].GetSequence(), ack.ResyncRequired)
		}
		return nil
	})
	cpu1 := cpuSeconds()
	rss, hwm := procStatus(os.Getpid(), "VmRSS"), procStatus(os.Getpid(), "VmHWM")
	fmt.Fprintf(stdout, "\nthrough gRPC (collector in this process, TLS on loopback, %d agents, %d reports per batch):\n", *agents, *batch)
	m1.print(stdout, cpu1-cpu0)
	fmt.Fprintf(stdout, "  RSS of the whole process (collector + agents + their reports): %.0f MiB now, %.0f MiB peak\n", float64(rss)/1024, float64(hwm)/1024)

	// Phase 2: the same workload straight into the store.
	var m2 ingestMeasure
	cpu0 = cpuSeconds()
	m2.run(ctx, *duration, direct.Agents, *batch, func(ctx context.Context, a *fleet.Agent, reports []*pb.Report) error {
		rs := make([]store.Report, len(reports))
		for i, r := range reports {
			if rs[i], err = server.ReportFromProto(r); err != nil {
				return err
			}
		}
		res, err := c.st.Ingest(ctx, "direct-"+a.Source.MachineGUID()[:8], a.Source.MachineGUID(), rs)
		if err == nil && len(res.Rejected) > 0 {
			err = fmt.Errorf("%s: %d reports rejected: %v", a.Name, len(res.Rejected), res.Rejected[0].Err)
		}
		return err
	})
	cpu1 = cpuSeconds()
	fmt.Fprintf(stdout, "\nstraight into store.Ingest (no gRPC, TLS, authentication or validation; same concurrency and batches):\n")
	m2.print(stdout, cpu1-cpu0)
	if m2.rate() > 0 {
		fmt.Fprintf(stdout, "\nratio gRPC / store: %.2f (batches/s)\n", m1.rate()/m2.rate())
	}
	if m1.errors.Load() > 0 {
		return fmt.Errorf("%d batches failed through gRPC (first: %v)", m1.errors.Load(), m1.firstErr.Load())
	}
	return nil
}

// benchProfiles is a fleet's mix: per 50 hosts, 1 domain controller, 5
// file servers, 6 member servers, 38 workstations.
func benchProfiles(n int) []simulate.Profile {
	out := make([]simulate.Profile, n)
	for i := range out {
		switch k := i % 50; {
		case k == 0:
			out[i] = simulate.DomainController
		case k <= 5:
			out[i] = simulate.FileServer
		case k <= 11:
			out[i] = simulate.Server
		default:
			out[i] = simulate.Workstation
		}
	}
	return out
}

// ingestMeasure counts what one phase of the ingest benchmark delivered.
type ingestMeasure struct {
	batches, reports, changes, errors atomic.Int64
	firstErr                          atomic.Value
	elapsed                           time.Duration
	mu                                sync.Mutex
	latencies                         []time.Duration
}

// run has every agent send its queued reports in batches with send, one
// batch at a time, until the queues are empty or d has passed.
func (m *ingestMeasure) run(ctx context.Context, d time.Duration, agents []*fleet.Agent, batch int,
	send func(context.Context, *fleet.Agent, []*pb.Report) error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			defer func() {
				m.mu.Lock()
				m.latencies = append(m.latencies, lat...)
				m.mu.Unlock()
			}()
			for ctx.Err() == nil {
				reports, _ := a.Queue.Peek(batch, 1<<30)
				if len(reports) == 0 {
					return
				}
				t := time.Now()
				err := send(ctx, a, reports)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					if m.errors.Add(1) == 1 {
						m.firstErr.Store(err.Error())
					}
					var pe *uplink.PushbackError
					if errors.As(err, &pe) {
						time.Sleep(pe.RetryAfter)
					}
					continue
				}
				lat = append(lat, time.Since(t))
				m.batches.Add(1)
				m.reports.Add(int64(len(reports)))
				m.changes.Add(int64(sessionChanges(reports)))
				_ = a.Queue.Ack(reports[len(reports)-1].GetSequence(), 0)
			}
		}()
	}
	wg.Wait()
	m.elapsed = time.Since(start)
}

func (m *ingestMeasure) rate() float64 { return float64(m.batches.Load()) / m.elapsed.Seconds() }

func (m *ingestMeasure) print(w io.Writer, cpu float64) {
	s := m.elapsed.Seconds()
	l := sortDurations(m.latencies)
	fmt.Fprintf(w, "  %d batches, %d reports, %d session changes in %.1f s\n", m.batches.Load(), m.reports.Load(), m.changes.Load(), s)
	fmt.Fprintf(w, "  %.0f batches/s, %.0f reports/s, %.0f session changes/s\n", m.rate(), float64(m.reports.Load())/s, float64(m.changes.Load())/s)
	fmt.Fprintf(w, "  acknowledgement latency p50 %v, p99 %v, max %v; %d failed calls\n", percentile(l, 50).Round(100*time.Microsecond),
		percentile(l, 99).Round(100*time.Microsecond), percentile(l, 100).Round(100*time.Microsecond), m.errors.Load())
	fmt.Fprintf(w, "  CPU of this process: %.1f s (%.0f%% of one core; PostgreSQL's is apart)\n", cpu, 100*cpu/s)
}

// sessionChanges counts the sessions a batch carries: all of a snapshot's,
// a delta's upserted and ended ones.
func sessionChanges(reports []*pb.Report) int {
	n := 0
	for _, r := range reports {
		if s := r.GetSnapshot(); s != nil {
			n += len(s.GetLogonSessions()) + len(s.GetServerSessions())
		}
		if d := r.GetDelta(); d != nil {
			n += len(d.GetLogonSessionsUpserted()) + len(d.GetLogonSessionsEnded()) + len(d.GetServerSessionsUpserted()) + len(d.GetServerSessionsEnded())
		}
	}
	return n
}
