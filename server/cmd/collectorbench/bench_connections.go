package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/uplink"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

const benchConnectionsDoc = `How many concurrent agents one collector holds. A collector is served in this
process (real TLS, the given PostgreSQL, --max-connections) and agents are
added in steps (--steps). Each agent enrolls with the secret (its own key and
certificate: uplink.Client.EnsureIdentity), opens its own TLS connection with
its certificate, sends a Snapshot of one session, then a Heartbeat every
--interval with ±--jitter, from a random first moment, each waiting for its
acknowledgement. After each step's agents are connected, the acknowledgement
latency of the heartbeats is measured for --hold: the step passes while p99 is
at most --p99 and no call failed. It stops at the first step that does not
pass, when --budget has run out, or after the last step, and reports the
most agents held at a passing step.

Connections come from --sources loopback source addresses (127.0.0.2, ...)
so that ephemeral ports do not run out; RLIMIT_NOFILE is raised (both ends
of every connection are in this process). Agents, collector and PostgreSQL
share the machine. With --collector-dir the collector runs in its own
process (collectorbench collector) and its RSS and CPU are reported apart;
otherwise they are this whole process's.
Keys and certificates go under /dev/shm when it exists.
`

// benchConnections is "collectorbench connections".
func benchConnections(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("connections", benchConnectionsDoc, stdout)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL of a database the benchmark may fill (env DATABASE_URL; required)")
	stepsFlag := fs.String("steps", "1000,2500,5000,10000,20000,30000,40000,50000", "comma-separated agent counts to reach, increasing")
	interval := fs.Duration("interval", time.Minute, "time between two heartbeats of one agent (the poll interval)")
	jitter := fs.Float64("jitter", 0.2, "relative jitter of the interval, 0 to 1")
	hold := fs.Duration("hold", 30*time.Second, "how long each step is measured once its agents are connected")
	bound := fs.Duration("p99", 500*time.Millisecond, "the acknowledgement p99 a step must not exceed")
	sources := fs.Int("sources", 64, "loopback source addresses to spread connections over (1 to 2500)")
	workers := fs.Int("workers", 16, "agents enrolling and connecting at once during a ramp")
	budget := fs.Duration("budget", 5*time.Minute, "longest total run; the step running then is reported as unfinished")
	maxConns := fs.Int("max-connections", 100000, "the collector's MaxConnections")
	collectorDir := fs.String("collector-dir", "", "use the collector 'collectorbench collector --dir DIR' runs in another process "+
		"(its RSS and CPU are then reported apart); default a collector in this process")
	stateDir := fs.String("state-dir", "", "keep the agents' identities here, to reuse them in a later run against the same database "+
		"(enrollment is then skipped); default a temporary directory under /dev/shm, removed at exit")
	groups := fs.Bool("heartbeat-groups", true, "the collector stores plain heartbeats of many agents in one statement (false: one transaction each, as before)")
	if err := parse(fs, args); err != nil {
		return err
	}
	var steps []int
	for _, s := range strings.Split(*stepsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || (len(steps) > 0 && n <= steps[len(steps)-1]) {
			return usagef("--steps %q: want increasing positive counts", *stepsFlag)
		}
		steps = append(steps, n)
	}
	switch {
	case *sources < 1 || *sources > 2500:
		return usagef("--sources %d: want 1 to 2500", *sources)
	case *jitter < 0 || *jitter > 1 || *interval <= 0 || *workers < 1:
		return usagef("--jitter in [0, 1], --interval and --workers positive")
	}
	maxAgents := steps[len(steps)-1]
	limit, err := raiseFileLimit(uint64(2*maxAgents + 4096))
	if err != nil {
		return fmt.Errorf("raise the open files limit to %d: %w", 2*maxAgents+4096, err)
	}
	machine(stdout)
	fmt.Fprintf(stdout, "open files limit %d; %d source addresses; interval %v ±%.0f%%; hold %v per step; bound p99 ≤ %v\n",
		limit, *sources, *interval, 100**jitter, *hold, *bound)
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	// The collector: in this process, or collectorbench collector's.
	var target benchTarget
	collectorPID := os.Getpid()
	if *collectorDir != "" {
		e, err := readExternalCollector(*collectorDir)
		if err != nil {
			return err
		}
		pool, err := uplink.LoadCAFile(filepath.Join(*collectorDir, "ca.crt"))
		if err != nil {
			return err
		}
		target = benchTarget{addr: e.addr, secret: e.secret, pool: pool}
		collectorPID = e.pid
		fmt.Fprintf(stdout, "collector: pid %d at %s (its own process)\n", e.pid, e.addr)
	} else {
		if *dbURL == "" {
			return usagef("--database-url (or DATABASE_URL) is required without --collector-dir")
		}
		c, err := startBenchCollector(ctx, *dbURL, *stateDir, *maxConns, 0, *groups, log)
		if err != nil {
			return err
		}
		defer c.stop()
		target = benchTarget{addr: c.addr, secret: c.secret, pool: c.pool}
		fmt.Fprintln(stdout, "collector: in this process (RSS and CPU below include the agents)")
	}
	dir := *stateDir
	if dir == "" {
		if dir, err = stateRoot(); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}

	deadline := time.Now().Add(*budget)
	bctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	rec := &recorder{}
	var agents []*connAgent
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		for _, a := range agents {
			_ = a.client.Close()
		}
	}()
	dial := sourceDialer(*sources)
	fmt.Fprintf(stdout, "\n%8s %8s %9s %10s %9s %9s %9s %7s %9s %9s %10s\n", "STEP", "HELD", "RAMP", "CONNECT/s", "ACKS", "P50", "P99", "ERRORS", "COLL. MiB", "COLL.CPU%", "AGENTS MiB")
	best := 0
	for _, step := range steps {
		// Ramp: enroll and connect the new agents.
		t0 := time.Now()
		cpu0 := cpuSeconds()
		from := len(agents)
		news := make([]*connAgent, step-from)
		var next atomic.Int64
		var rampErr atomic.Value
		var rwg sync.WaitGroup
		for range *workers {
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= len(news) || bctx.Err() != nil {
						return
					}
					a, err := newConnAgent(bctx, target, dir, from+i, dial, log)
					if err != nil {
						rampErr.CompareAndSwap(nil, err)
						return
					}
					news[i] = a
				}
			}()
		}
		rwg.Wait()
		ramp := time.Since(t0)
		for _, a := range news {
			if a != nil {
				agents = append(agents, a)
				wg.Add(1)
				go func() { defer wg.Done(); a.heartbeats(bctx, *interval, *jitter, rec) }()
			}
		}
		if err, _ := rampErr.Load().(error); err != nil || bctx.Err() != nil {
			fmt.Fprintf(stdout, "%8d %8d %9s  ramp stopped: %v\n", step, len(agents), ramp.Round(time.Second), firstNonNil(err, bctx.Err()))
			break
		}
		// Hold: measure the heartbeats.
		rec.reset()
		cpu1 := procCPUSeconds(collectorPID)
		select {
		case <-bctx.Done():
		case <-time.After(*hold):
		}
		lat, errs, firstErr := rec.take()
		cpu2 := procCPUSeconds(collectorPID)
		_ = cpu0
		l := sortDurations(lat)
		p99 := percentile(l, 99)
		fmt.Fprintf(stdout, "%8d %8d %9s %10.0f %9d %9s %9s %7d %9.0f %9.0f %10.0f\n", step, len(agents), ramp.Round(time.Second),
			float64(len(news))/ramp.Seconds(), len(lat), percentile(l, 50).Round(time.Millisecond), p99.Round(time.Millisecond), errs,
			float64(procStatus(collectorPID, "VmRSS"))/1024, 100*(cpu2-cpu1)/hold.Seconds(), float64(procStatus(os.Getpid(), "VmRSS"))/1024)
		if bctx.Err() != nil {
			fmt.Fprintf(stdout, "budget of %v ran out during the step: not counted\n", *budget)
			break
		}
		if errs > 0 || p99 > *bound || len(lat) == 0 {
			fmt.Fprintf(stdout, "step %d fails: p99 %v (bound %v), %d failed calls (first: %v)\n", step, p99, *bound, errs, firstErr)
			break
		}
		best = len(agents)
	}
	fmt.Fprintf(stdout, "\nmost agents held with p99 ≤ %v and no errors: %d\n", *bound, best)
	return nil
}

func firstNonNil(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// recorder collects acknowledgement latencies and failures.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	errs     int
	firstErr error
}

func (r *recorder) add(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs++
		if r.firstErr == nil {
			r.firstErr = err
		}
		return
	}
	r.lat = append(r.lat, d)
}

func (r *recorder) reset() { r.take() }

func (r *recorder) take() ([]time.Duration, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lat, errs, first := r.lat, r.errs, r.firstErr
	r.lat, r.errs, r.firstErr = nil, 0, nil
	return lat, errs, first
}

// benchTarget is where the connections benchmark's agents go.
type benchTarget struct {
	addr, secret string
	pool         *x509.CertPool
}

// connAgent is a light agent: an uplink with its own identity and
// connection, a host with one session, heartbeats.
type connAgent struct {
	client *uplink.Client
	guid   string
	seq    uint64 // the last report's
	base   uint64 // the Snapshot's
}

// newConnAgent enrolls agent i and delivers its first Snapshot (which
// opens its connection).
func newConnAgent(ctx context.Context, c benchTarget, dir string, i int, dial grpc.DialOption, log *slog.Logger) (*connAgent, error) {
	guid := fmt.Sprintf("c0ffee00-0000-4000-8000-%012d", i)
	host := &pb.Host{MachineGuid: guid, Hostname: fmt.Sprintf("WS%06d", i), Domain: "CONTOSO", AgentVersion: "fleetsim"}
	client, err := uplink.New(uplink.Options{
		Address: c.addr, ServerName: "localhost", CAPool: c.pool, EnrollmentSecret: c.secret,
		Host: func() *pb.Host { return host }, StateDir: fmt.Sprintf("%s/agent-%06d", dir, i), Logger: log,
		DialOptions: []grpc.DialOption{dial},
	})
	if err != nil {
		return nil, err
	}
	if err := client.EnsureIdentity(ctx); err != nil {
		client.Close()
		return nil, fmt.Errorf("enroll agent %d: %w", i, err)
	}
	now := time.Now()
	raw := uint32(2)
	// Sequences from the clock, so that a run reusing identities continues
	// above the previous run's.
	seq := uint64(now.UnixMicro())
	snap := &pb.Report{Sequence: seq, Content: &pb.Report_Snapshot{Snapshot: &pb.Snapshot{
		Host: host, TakenAt: timestamppb.New(now), LogonSessions: []*pb.LogonSession{{
			LogonId: "0x3e7", LogonType: pb.LogonType_LOGON_TYPE_INTERACTIVE, LogonTypeRaw: &raw, AuthenticationPackage: "Kerberos",
			StartTime: timestamppb.New(now.Add(-time.Hour)), Account: &pb.Account{Domain: "CONTOSO", Name: fmt.Sprintf("user%06d", i)},
		}},
	}}}
	if _, err := client.Send(ctx, []*pb.Report{snap}, 0); err != nil {
		client.Close()
		return nil, fmt.Errorf("first snapshot of agent %d: %w", i, err)
	}
	return &connAgent{client: client, guid: guid, seq: seq, base: seq}, nil
}

// heartbeats sends a Heartbeat every interval ± jitter until ctx is done,
// the first at a random moment within one interval.
func (a *connAgent) heartbeats(ctx context.Context, interval time.Duration, jitter float64, rec *recorder) {
	wait := time.Duration(rand.Int64N(int64(interval)))
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		a.seq++
		hb := &pb.Report{Sequence: a.seq, Content: &pb.Report_Heartbeat{Heartbeat: &pb.Heartbeat{
			BaseSequence: a.base, TakenAt: timestamppb.Now(),
		}}}
		t := time.Now()
		_, err := a.client.Send(ctx, []*pb.Report{hb}, 0)
		if ctx.Err() != nil {
			return
		}
		rec.add(time.Since(t), err)
		wait = time.Duration(float64(interval) * (1 + jitter*(2*rand.Float64()-1)))
	}
}
