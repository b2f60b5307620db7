//go:build linux

package e2e

// The chaos suite's agents and its accounting: each agent is the agent's
// real run loop (agent/run: simulated source, change tracker, the spool on
// disk, the uplink) on a manual clock, in this process, with a gRPC
// interceptor through which the test cuts its network or lets the
// collector commit a batch and kills the agent before it hears the answer.
// Every snapshot the source took is the ground truth (agent/fleet's
// HostTruth); the store's intervals are counted against it.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sessionaudit/sessionaudit/agent/change"
	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/fleet"
	"github.com/sessionaudit/sessionaudit/agent/run"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
	"github.com/sessionaudit/sessionaudit/proto/limits"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/store"
)

// chaosTimeFormat prints the host's times in the suite's examples.
const chaosTimeFormat = "Jan 2 15:04"

// chaosPoll is the agents' simulated poll interval: one manual-clock step.
const chaosPoll = time.Minute

// Delivery modes of an agent's interceptor.
const (
	chaosDeliver         int32 = iota // calls go through
	chaosCut                          // calls fail at once, as with the network cut
	chaosKillAfterCommit              // the next acknowledged Ingest is held: the agent dies before it hears the answer
	chaosDead                         // calls hang until the agent is stopped
)

// chaosAgent is one simulated host and its agent.
type chaosAgent struct {
	sc       *chaosScenario
	name     string
	profile  simulate.Profile
	src      *simulate.Source
	clk      *clock.Manual
	stateDir string
	values   map[string]string // the agent's settings
	log      *slog.Logger
	logFile  *os.File

	mode      atomic.Int32
	committed chan uint64   // kill-after-commit: the acknowledgement never heard
	acked     atomic.Uint64 // the highest acknowledgement the agent heard
	inFlight  atomic.Int32  // Ingest calls in flight
	calls     atomic.Int64  // Ingest calls made
	alive     atomic.Bool

	mu        sync.Mutex
	snaps     []*pb.Snapshot // every snapshot the source took: the truth
	spooled   []chaosSpooled // every report the spool took
	unspooled []time.Time    // polls whose report the spool refused (taken_at)
	lastSeq   uint64         // the newest report spooled

	cancel context.CancelFunc
	done   chan error
	ticks  chan time.Time
	waits  chan struct{}
}

// chaosSpooled is one report the spool took.
type chaosSpooled struct {
	seq     uint64
	takenAt time.Time
	kind    string
	size    int // encoded bytes
}

// newChaosAgent makes the agent of a simulated host (not started).
func newChaosAgent(sc *chaosScenario, i int, p simulate.Profile) *chaosAgent {
	t := sc.t
	clk := clock.NewManual(sc.historyStart)
	src, err := simulate.New(simulate.Config{Seed: 4242 + uint64(i), Profile: p, Clock: clk, RebootsPerWeek: -1,
		AlwaysWorking: true, AgentVersion: "chaos"})
	if err != nil {
		t.Fatal(err)
	}
	a := &chaosAgent{sc: sc, name: src.Hostname(), profile: p, src: src, clk: clk,
		stateDir: filepath.Join(sc.dir, fmt.Sprintf("agent-%d", i)), committed: make(chan uint64, 1),
		values: map[string]string{
			config.CollectorAddress: sc.addr, config.CACertificate: filepath.Join(sc.env.pkiDir, "agent-ca.crt"),
			config.EnrollmentSecret: sc.secret, config.PollIntervalSeconds: "60",
		}}
	if err := os.MkdirAll(a.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	a.logFile, err = os.Create(filepath.Join(sc.dir, fmt.Sprintf("agent-%d-%s.log", i, a.name)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.logFile.Close() })
	a.log = slog.New(slog.NewTextHandler(a.logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return a
}

// Snapshot implements source.Source: the simulated host's snapshot,
// recorded as the truth.
func (a *chaosAgent) Snapshot(ctx context.Context) (*pb.Snapshot, error) {
	s, err := a.src.Snapshot(ctx)
	if err == nil {
		a.mu.Lock()
		a.snaps = append(a.snaps, proto.CloneOf(s))
		a.mu.Unlock()
	}
	return s, err
}

// Close implements source.Source; the simulated host outlives the agent's
// restarts.
func (a *chaosAgent) Close() error { return nil }

// intercept is the agent's gRPC client interceptor: the test's hand on
// its network.
func (a *chaosAgent) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	switch a.mode.Load() {
	case chaosCut:
		return status.Error(codes.Unavailable, "chaos: the agent's network is cut")
	case chaosDead:
		<-ctx.Done()
		return ctx.Err()
	}
	ingest := strings.HasSuffix(method, "/Ingest")
	if ingest {
		a.inFlight.Add(1)
		a.calls.Add(1)
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	if ingest {
		a.inFlight.Add(-1)
	}
	resp, ok := reply.(*pb.IngestResponse)
	if err != nil || !ok || !ingest {
		return err
	}
	if a.mode.Load() == chaosKillAfterCommit && a.mode.CompareAndSwap(chaosKillAfterCommit, chaosDead) {
		// The collector committed and answered; the agent dies before
		// its spool records the acknowledgement.
		a.committed <- resp.GetAcknowledgedSequence()
		<-ctx.Done()
		return ctx.Err()
	}
	for {
		old := a.acked.Load()
		if resp.GetAcknowledgedSequence() <= old || a.acked.CompareAndSwap(old, resp.GetAcknowledgedSequence()) {
			break
		}
	}
	return nil
}

// start runs the agent's run loop on its state directory and waits for
// its first poll, which Run takes at once.
func (a *chaosAgent) start() {
	t := a.sc.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel, a.done = cancel, make(chan error, 1)
	a.ticks, a.waits = make(chan time.Time), make(chan struct{}, 4)
	ticks, waits := a.ticks, a.waits
	opts := run.Options{
		Source: a, Watcher: config.NewWatcher(config.MapLayer{LayerName: "chaos", Values: a.values}),
		ReloadTicks: make(chan time.Time), StateDir: a.stateDir, Clock: a.clk, Logger: a.log,
		After: func(time.Duration) <-chan time.Time {
			waits <- struct{}{}
			return ticks
		},
		OnReport: func(r *pb.Report) {
			a.mu.Lock()
			defer a.mu.Unlock()
			a.spooled = append(a.spooled, chaosSpooled{seq: r.GetSequence(), takenAt: chaosTakenAt(r), kind: chaosKind(r), size: proto.Size(r)})
			a.lastSeq = r.GetSequence()
		},
		Uplink: func(u *uplink.Options) {
			u.ServerName = "localhost"
			u.Clock = clock.System{} // certificates are of the real time; the host's history runs on the manual clock
			u.Backoff = uplink.BackoffConfig{Base: 20 * time.Millisecond, Max: 500 * time.Millisecond}
			u.CallTimeout = 20 * time.Second
			u.DialOptions = append(u.DialOptions, grpc.WithChainUnaryInterceptor(a.intercept))
		},
	}
	done := a.done
	before := a.spooledCount()
	go func() { done <- run.Run(ctx, opts) }()
	a.alive.Store(true)
	a.awaitPoll(before)
}

// stop stops the run loop (the uplink's call in flight is cancelled; the
// spool holds what it held).
func (a *chaosAgent) stop() {
	if !a.alive.Swap(false) {
		return
	}
	a.cancel()
	select {
	case err := <-a.done:
		if err != nil {
			a.sc.t.Errorf("chaos: %s: run: %v", a.name, err)
		}
	case <-time.After(60 * time.Second):
		a.sc.t.Errorf("chaos: %s: the run loop did not stop within 60 s", a.name)
	}
}

// poll advances the host's clock one step and lets the agent poll.
func (a *chaosAgent) poll() {
	a.clk.Advance(chaosPoll)
	if !a.alive.Load() {
		return // a dead agent's host lives on unobserved
	}
	before := a.spooledCount() // before the tick: the poll may spool before awaitPoll looks
	select {
	case a.ticks <- time.Time{}:
	case err := <-a.done:
		a.sc.t.Fatalf("chaos: %s: the run loop ended: %v", a.name, err)
	case <-time.After(60 * time.Second):
		a.sc.t.Fatalf("chaos: %s: the run loop did not take its poll within 60 s", a.name)
	}
	a.awaitPoll(before)
}

// awaitPoll waits until the loop is done with a poll, and records a poll
// whose report the spool refused: none spooled since before, the count of
// reports spooled when the poll was started.
func (a *chaosAgent) awaitPoll(before int) {
	select {
	case <-a.waits:
	case err := <-a.done:
		a.sc.t.Fatalf("chaos: %s: the run loop ended: %v", a.name, err)
	case <-time.After(60 * time.Second):
		a.sc.t.Fatalf("chaos: %s: no poll within 60 s", a.name)
	}
	a.mu.Lock()
	if len(a.spooled) == before {
		a.unspooled = append(a.unspooled, a.clk.Now())
	}
	a.mu.Unlock()
}

// last returns the newest report spooled.
func (a *chaosAgent) last() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastSeq
}

// takenAt returns the taken_at of spooled report seq; the zero time if
// the spool never took it.
func (a *chaosAgent) takenAt(seq uint64) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.spooled {
		if s.seq == seq {
			return s.takenAt
		}
	}
	return time.Time{}
}

// truth is the ground truth of the host: every snapshot its source took,
// applied in order.
func (a *chaosAgent) truth() *fleet.HostTruth {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := fleet.NewHostTruth(a.name, a.src.MachineGUID())
	for i, s := range a.snaps {
		if err := h.Observe(&pb.Report{Sequence: uint64(i + 1), Content: &pb.Report_Snapshot{Snapshot: s}}); err != nil {
			a.sc.t.Fatalf("chaos: truth of %s: %v", a.name, err)
		}
	}
	return h
}

// chaosKind names a report's content.
func chaosKind(r *pb.Report) string {
	switch r.GetContent().(type) {
	case *pb.Report_Snapshot:
		return "snapshot"
	case *pb.Report_Delta:
		return "delta"
	case *pb.Report_Heartbeat:
		return "heartbeat"
	}
	return "empty"
}

func chaosTakenAt(r *pb.Report) time.Time {
	switch c := r.GetContent().(type) {
	case *pb.Report_Snapshot:
		return c.Snapshot.GetTakenAt().AsTime()
	case *pb.Report_Delta:
		return c.Delta.GetTakenAt().AsTime()
	case *pb.Report_Heartbeat:
		return c.Heartbeat.GetTakenAt().AsTime()
	}
	return time.Time{}
}

// chaosWindow is a stretch of a host's history whose reports a fault
// destroyed on the agent's side (deleted, damaged or never written): the
// reports after From and before To. A session seen only inside it cannot
// be stored; the store must say there is a gap there.
type chaosWindow struct {
	Host     string // machine GUID
	From, To time.Time
	Reports  int    // reports destroyed, or at risk when the fault does not tell which
	What     string // the fault, for the log
}

func (w chaosWindow) contains(t time.Time) bool { return t.After(w.From) && t.Before(w.To) }

// chaosGap is a gap in a host's coverage as the store reports it
// (docs/design/0002, "Coverage gaps"): sessions seen only between From
// (the host's last observation before the lost reports) and To (the first
// after) may be missing; until Settled (the snapshot that settled the gap)
// the ends of sessions may be known only within wider bounds.
type chaosGap struct {
	From, To, Settled time.Time
}

// chaosReportedGaps returns the coverage gaps the store records for a
// host (store.CoverageGaps), and whether it records any at all: a store
// without the coverage_gap table (before migration 007) reports none.
func chaosReportedGaps(ctx context.Context, st *store.Store, guid string) ([]chaosGap, bool, error) {
	var out []chaosGap
	cursor := ""
	for {
		p, err := st.CoverageGaps(ctx, store.CoverageGapsQuery{Host: guid, PageSize: limits.MaxPageSize, Cursor: cursor})
		if err != nil {
			if strings.Contains(err.Error(), "coverage_gap") && strings.Contains(err.Error(), "does not exist") {
				return nil, false, nil
			}
			return nil, false, err
		}
		for _, g := range p.Items {
			settled := g.SettledAt
			switch {
			case settled.IsZero():
				settled = time.Now().Add(time.Hour)
			case settled.Before(g.EndTime):
				settled = g.EndTime
			}
			out = append(out, chaosGap{From: g.StartTime, To: g.EndTime, Settled: settled})
		}
		if cursor = p.NextCursor; cursor == "" {
			return out, true, nil
		}
	}
}

// chaosCount is a scenario's accounting against the truth.
type chaosCount struct {
	Hosts       int
	Expected    int // intervals in the truth
	Stored      int // of them, stored (same kind, key and start)
	Lost        int // of them, missing and not inside a destroyed window the store reports as a gap
	LostInside  int // of Lost, those inside a destroyed window (no gap reported for it)
	InGap       int // of them, missing, or with wider end bounds, inside a destroyed window the store reports as a gap
	Duplicated  int // stored rows beyond the first for one interval
	Extra       int // stored rows no interval of the truth explains
	WrongEnd    int // stored intervals whose end excludes the truth's, or is wider than the reports allow outside a reported gap
	WiderInside int // of WrongEnd, those wider because the observation bounding the end was destroyed (no gap reported)
	Destroyed   int // reports the fault destroyed (or put at risk) on the agent's side
	Windows     int // destroyed windows
	Gaps        int // of them, overlapped by a gap the store reports
	GapSupport  bool
	Pending     int // reports spooled but never acknowledged at the end
	Examples    []string
}

func (c *chaosCount) example(format string, args ...any) {
	if len(c.Examples) < 12 {
		c.Examples = append(c.Examples, fmt.Sprintf(format, args...))
	}
}

// chaosObserved is one stored interval.
type chaosObserved struct {
	kind      fleet.Kind
	key       string
	start     time.Time
	open      bool
	lastSeen  time.Time
	endBefore time.Time
	used      bool
}

// count compares the store with the truth of every agent of the scenario.
func (sc *chaosScenario) count(ctx context.Context) chaosCount {
	t := sc.t
	c := chaosCount{Hosts: len(sc.agents)}
	from, to := sc.historyStart.Add(-48*time.Hour), time.Now().Add(time.Hour)
	for _, a := range sc.agents {
		guid := a.src.MachineGUID()
		h := a.truth()
		obs := sc.stored(ctx, guid, from, to)
		gaps, supported, err := chaosReportedGaps(ctx, sc.st, guid)
		if err != nil {
			t.Fatalf("chaos: gaps of %s: %v", a.name, err)
		}
		c.GapSupport = supported
		var windows []chaosWindow
		for _, w := range sc.windows {
			if w.Host == guid {
				windows = append(windows, w)
				c.Windows++
				c.Destroyed += w.Reports
				if chaosOverlaps(gaps, w.From, w.To, false) {
					c.Gaps++
				}
			}
		}
		// destroyed says whether the fault destroyed the host's
		// observation at t (a poll whose report was deleted, damaged or
		// never written).
		destroyed := func(t time.Time) bool {
			for _, w := range windows {
				if w.contains(t) {
					return true
				}
			}
			return false
		}
		// gapOver says whether the store reports a coverage gap over
		// some of [a, b]; unsettled, whether [a, b] overlaps a gap or what
		// follows it until it was settled.
		gapOver := func(a, b time.Time) bool { return chaosOverlaps(gaps, a, b, false) }
		unsettled := func(a, b time.Time) bool { return chaosOverlaps(gaps, a, b, true) }
		byName := map[string][]*chaosObserved{}
		for i := range obs {
			o := &obs[i]
			byName[string(o.kind)+" "+o.key] = append(byName[string(o.kind)+" "+o.key], o)
		}
		for _, iv := range h.Intervals {
			c.Expected++
			var match []*chaosObserved
			for _, o := range byName[string(iv.Kind)+" "+iv.Key] {
				if chaosSameStart(iv.Kind, iv.Start, o.start) {
					match = append(match, o)
				}
			}
			if len(match) == 0 {
				// Seen only in destroyed observations: the store cannot
				// have it, and must say so.
				inside := destroyed(iv.FirstSeen) && destroyed(iv.LastPresent)
				if inside && gapOver(iv.FirstSeen, iv.LastPresent) {
					c.InGap++
				} else {
					c.Lost++
					where := ""
					if inside {
						c.LostInside++
						where = " (inside a destroyed window; no gap reported)"
					}
					c.example("%s: lost: %v, first seen %s%s", a.name, iv, iv.FirstSeen.Format(chaosTimeFormat), where)
				}
				continue
			}
			c.Stored++
			if len(match) > 1 {
				c.Duplicated += len(match) - 1
				c.example("%s: stored %d times: %v", a.name, len(match), iv)
			}
			for _, o := range match {
				o.used = true
			}
			o := match[0]
			// The end as the reports allow it: ended in (LastPresent,
			// FirstAbsent] exactly. Around lost reports the store may only
			// know wider bounds, (LastSeen, EndBefore] holding the truth's,
			// if it says so with a coverage gap; bounds that exclude the
			// truth's end are wrong whatever happened.
			var bad string
			wider := false
			lastPresent := iv.LastPresent.Truncate(time.Microsecond)
			switch {
			case iv.Open() && !o.open:
				bad = fmt.Sprintf("the store ended it in (%s, %s]", o.lastSeen.Format(chaosTimeFormat), o.endBefore.Format(chaosTimeFormat))
			case !iv.Open() && o.open:
				bad = "the store holds it open"
			case !iv.Open() && !o.lastSeen.Before(o.endBefore):
				bad = fmt.Sprintf("the store says ended in (%s, %s], an empty interval", o.lastSeen.Format(chaosTimeFormat), o.endBefore.Format(chaosTimeFormat))
			case !iv.Open() && (o.lastSeen.After(lastPresent) || o.endBefore.Before(iv.FirstAbsent)):
				bad = fmt.Sprintf("the store says ended in (%s, %s], which excludes the end", o.lastSeen.Format(chaosTimeFormat), o.endBefore.Format(chaosTimeFormat))
			case !iv.Open() && (o.lastSeen.Before(lastPresent) || o.endBefore.After(iv.FirstAbsent)):
				wider = true
				bad = fmt.Sprintf("the store says ended in (%s, %s], wider than the reports allow", o.lastSeen.Format(chaosTimeFormat), o.endBefore.Format(chaosTimeFormat))
			}
			if bad == "" {
				continue
			}
			// Wider bounds are what the store can know when the
			// observation that bounds the truth's end was destroyed.
			blind := wider && (destroyed(iv.LastPresent) || destroyed(iv.FirstAbsent))
			if blind && unsettled(o.lastSeen, o.endBefore) {
				c.InGap++
				continue
			}
			c.WrongEnd++
			if blind {
				c.WiderInside++
				bad += " (its end was destroyed; no gap reported)"
			}
			c.example("%s: end differs: %v; %s", a.name, iv, bad)
		}
		for _, o := range obs {
			if !o.used {
				c.Extra++
				end := "open"
				if !o.open {
					end = fmt.Sprintf("ended in (%s, %s]", o.lastSeen.Format(chaosTimeFormat), o.endBefore.Format(chaosTimeFormat))
				}
				c.example("%s: extra: the store has %s %s started %s, %s, which the host never had", a.name, o.kind, o.key,
					o.start.Format(chaosTimeFormat), end)
			}
		}
		if last := a.last(); a.acked.Load() < last {
			c.Pending += int(last - a.acked.Load())
		}
	}
	return c
}

// stored reads every interval the store holds for a host over [from, to).
func (sc *chaosScenario) stored(ctx context.Context, guid string, from, to time.Time) []chaosObserved {
	t := sc.t
	var out []chaosObserved
	cursor := ""
	for {
		p, err := sc.st.LogonSessions(ctx, store.LogonSessionsQuery{Host: guid, StartTime: from, EndTime: to, PageSize: limits.MaxPageSize, Cursor: cursor})
		if err != nil {
			t.Fatalf("chaos: logon sessions of %s: %v", guid, err)
		}
		for _, l := range p.Items {
			out = append(out, chaosObserved{kind: fleet.Logon, key: l.Session.LogonID, start: l.Session.StartTime,
				open: l.End.Open, lastSeen: l.End.LastSeen, endBefore: l.End.EndBefore})
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	for {
		p, err := sc.st.ServerSessions(ctx, store.ServerSessionQuery{ToHost: guid, StartTime: from, EndTime: to, PageSize: limits.MaxPageSize, Cursor: cursor})
		if err != nil {
			t.Fatalf("chaos: server sessions of %s: %v", guid, err)
		}
		for _, s := range p.Items {
			out = append(out, chaosObserved{kind: fleet.Server, key: s.Session.ComputerName + `\` + s.Session.UserName, start: s.StartTime,
				open: s.End.Open, lastSeen: s.End.LastSeen, endBefore: s.End.EndBefore})
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// chaosSameStart: a logon session's start is exact (to the store's
// microsecond); a server session's is derived from ActiveTime and may move
// within the tracker's tolerance.
func chaosSameStart(k fleet.Kind, truth, stored time.Time) bool {
	if k == fleet.Logon {
		return truth.Truncate(time.Microsecond).Equal(stored)
	}
	d := truth.Sub(stored)
	return d <= change.DefaultStartTolerance && d >= -change.DefaultStartTolerance
}

// chaosOverlaps reports whether a reported gap overlaps [from, to]; with
// untilSettled, a gap and the time after it until it was settled.
func chaosOverlaps(gaps []chaosGap, from, to time.Time, untilSettled bool) bool {
	for _, g := range gaps {
		end := g.To
		if untilSettled {
			end = g.Settled
		}
		if !g.From.After(to) && !end.Before(from) {
			return true
		}
	}
	return false
}
