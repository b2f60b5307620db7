//go:build linux

package e2e

// The chaos suite (make chaos): simulated agents with ground truth report to
// collector processes over a PostgreSQL cluster of the suite's own while
// one fault at a time strikes; afterwards every host's intervals in the
// store are counted against what its source saw. One subtest, one verdict
// and one table row per fault; the table is printed at the end (and written
// to -chaos.report). See docs/testing.md ("The chaos suite") and
// docs/benchmarks.md ("Chaos").
//
//	go test ./server/e2e -run '^TestChaos$' -chaos -v
//	go test ./server/e2e -run '^TestChaos$/^spool-deleted$' -chaos -v -chaos.keep

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/run"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/store"
)

var (
	chaosFlag  = flag.Bool("chaos", false, "run the chaos suite, TestChaos (make chaos; docs/testing.md)")
	chaosPolls = flag.Int("chaos.polls", 40,
		"polls of each agent (simulated minutes) in each phase of a fault: warm-up, fault, recovery; 40 is the CI size")
	chaosCollectorBin = flag.String("chaos.collector", "", "the sessionaudit-collector binary to run (default: go build it)")
	chaosReport       = flag.String("chaos.report", "", "also write the chaos table, in Markdown, to this file")
	chaosKeep         = flag.Bool("chaos.keep", false, "keep the run's directory (collector, agent and PostgreSQL logs) when a fault fails")
	chaosLogs         = flag.String("chaos.logs", "", "when a fault fails, copy the run's logs (collectors, agents, PostgreSQL) to this directory")
)

// chaosPollGap is the real time between two polls of one agent: the pace
// at which reports reach the collectors while a fault strikes.
const chaosPollGap = 15 * time.Millisecond

// chaosFault is one fault and the scenario around it.
type chaosFault struct {
	name string
	// what says what the fault does, for the table.
	what string
	// profiles are the hosts; the first is the victim of an agent fault.
	profiles []simulate.Profile
	// collectors is 1, or 2 behind a balancer.
	collectors int
	// prepare runs before the agents start (settings, a small disk); an
	// error means the fault cannot be staged here, and it is not run.
	prepare func(sc *chaosScenario) error
	// inject strikes between the warm-up and the recovery; the agents
	// poll meanwhile as it says.
	inject func(sc *chaosScenario)
	// tamper, when set, changes the store after everything was delivered
	// and before the count; verdict then replaces chaosVerdict (the
	// suite's check of itself).
	tamper  func(sc *chaosScenario) string
	verdict func(c chaosCount) string
}

// chaosFaults are the faults, each a subtest and a row of the table.
var chaosFaults = []chaosFault{
	{
		name: "self-check", collectors: 1,
		what: "no fault; afterwards the store is tampered with (one interval deleted, one stored twice, one's end moved " +
			"an hour later): the suite must count exactly 1 lost, 1 duplicated, 1 wrong end",
		profiles: []simulate.Profile{simulate.DomainController, simulate.Workstation},
		inject:   func(sc *chaosScenario) {},
		tamper:   chaosTamper,
		verdict: func(c chaosCount) string {
			if c.Lost == 1 && c.Duplicated == 1 && c.WrongEnd == 1 && c.Extra == 0 && c.Pending == 0 && c.Expected >= 20 {
				return "pass"
			}
			return fmt.Sprintf("FAIL: the suite counted %d lost, %d duplicated, %d wrong end, %d extra, %d pending; want 1, 1, 1, 0, 0",
				c.Lost, c.Duplicated, c.WrongEnd, c.Extra, c.Pending)
		},
	},
	{
		name: "collector-kill", collectors: 1,
		what:     "collector process killed (SIGKILL) while agents deliver; restarted on the same address 1 s later",
		profiles: []simulate.Profile{simulate.DomainController, simulate.FileServer, simulate.Workstation},
		inject: func(sc *chaosScenario) {
			wait := sc.pollAsync(sc.agents, sc.perPhase)
			time.Sleep(sc.phase() / 3)
			sc.whenBusy()
			sc.killCollector(sc.collectors[0])
			time.Sleep(time.Second)
			sc.collectors[0].start()
			wait()
		},
	},
	{
		name: "postgres-restart", collectors: 1,
		what:     "PostgreSQL crashed (pg_ctl stop -m immediate) while agents deliver; started again 2 s later",
		profiles: []simulate.Profile{simulate.DomainController, simulate.FileServer, simulate.Workstation},
		inject: func(sc *chaosScenario) {
			wait := sc.pollAsync(sc.agents, sc.perPhase)
			time.Sleep(sc.phase() / 3)
			sc.whenBusy()
			inFlight := sc.inFlight()
			sc.env.pg.crash()
			sc.notef("PostgreSQL crashed with %d Ingest calls in flight", inFlight)
			time.Sleep(2 * time.Second)
			sc.env.pg.start()
			wait()
		},
	},
	{
		name: "collector-of-two-dies", collectors: 2,
		what:     "two collectors behind one balanced address; one killed (SIGKILL) while agents deliver, not restarted",
		profiles: []simulate.Profile{simulate.DomainController, simulate.FileServer, simulate.Server, simulate.Workstation},
		inject: func(sc *chaosScenario) {
			wait := sc.pollAsync(sc.agents, sc.perPhase)
			time.Sleep(sc.phase() / 3)
			sc.whenBusy()
			// The one holding more agents dies.
			open := sc.balancer.openTo()
			victim := sc.collectors[0]
			for _, c := range sc.collectors {
				if open[c.Addr] > open[victim.Addr] {
					victim = c
				}
			}
			sc.notef("connections through the balancer: %s %d, %s %d", sc.collectors[0].name, open[sc.collectors[0].Addr],
				sc.collectors[1].name, open[sc.collectors[1].Addr])
			sc.killCollector(victim)
			wait()
		},
	},
	{
		name: "agent-kill-after-commit", collectors: 1,
		what:     "an agent dies after the collector committed its batch and before it recorded the acknowledgement; restarted on its spool",
		profiles: []simulate.Profile{simulate.DomainController, simulate.Workstation},
		inject: func(sc *chaosScenario) {
			victim := sc.agents[0]
			others := sc.pollAsync(sc.agents[1:], sc.perPhase)
			victim.mode.Store(chaosKillAfterCommit)
			var acked uint64
			for i := 0; ; i++ {
				select {
				case acked = <-victim.committed:
				default:
					if i == 20*sc.perPhase {
						sc.t.Fatalf("chaos: %s: no batch acknowledged in %d polls", victim.name, i)
					}
					victim.poll()
					time.Sleep(chaosPollGap)
					continue
				}
				break
			}
			heard := victim.acked.Load()
			victim.stop()
			sc.notef("%s killed: the collector committed up to #%d, the agent had heard #%d; its spool holds up to #%d",
				victim.name, acked, heard, victim.last())
			others()
			sc.polls(sc.agents[:1], sc.perPhase/4) // the host lives on while its agent is down
			victim.mode.Store(chaosDeliver)
			victim.start()
		},
	},
	{
		name: "spool-deleted", collectors: 1,
		what:     "an agent's network cut for a phase, the agent stopped and its spool directory deleted, restarted",
		profiles: []simulate.Profile{simulate.DomainController, simulate.Workstation},
		inject: func(sc *chaosScenario) {
			victim := sc.agents[0]
			acked := sc.cutAndBacklog(victim)
			victim.stop()
			if err := os.RemoveAll(filepath.Join(victim.stateDir, run.SpoolDir)); err != nil {
				sc.t.Fatal(err)
			}
			sc.notef("%s: spool deleted with reports #%d..#%d unacknowledged", victim.name, acked+1, victim.last())
			victim.acked.Store(0) // a new spool counts from scratch
			sc.restartAfterLoss(victim, acked, int(victim.last()-acked), "spool deleted")
		},
	},
	{
		name: "spool-corrupted", collectors: 1,
		what:     "an agent's network cut for a phase, the agent stopped, 1 KiB in the middle of the unacknowledged part of its spool overwritten, restarted",
		profiles: []simulate.Profile{simulate.DomainController, simulate.Workstation},
		inject: func(sc *chaosScenario) {
			victim := sc.agents[0]
			spoolDir := filepath.Join(victim.stateDir, run.SpoolDir)
			before := chaosSegmentSizes(spoolDir) // what the backlog will follow
			acked := sc.cutAndBacklog(victim)
			victim.stop()
			seg, off := chaosCorruptSpool(sc.t, spoolDir, before, 1024)
			sc.notef("%s: %s overwritten at offset %d (reports #%d..#%d unacknowledged)", victim.name, filepath.Base(seg), off,
				acked+1, victim.last())
			sc.restartAfterLoss(victim, acked, int(victim.last()-acked), "spool corrupted")
		},
	},
	{
		name: "disk-full", collectors: 1,
		what: "an agent's state directory on a 4 MiB tmpfs; its network cut, then the disk filled by another file, " +
			"then the network restored with the disk still full, then the file removed",
		profiles: []simulate.Profile{simulate.DomainController, simulate.Workstation},
		prepare: func(sc *chaosScenario) error {
			return chaosMountTmpfs(sc.t, sc.agents[0].stateDir, 4<<20)
		},
		inject: func(sc *chaosScenario) {
			victim := sc.agents[0]
			victim.mode.Store(chaosCut)
			acked := victim.acked.Load()
			others := sc.pollAsync(sc.agents[1:], 3*sc.perPhase/2)
			for range sc.perPhase / 2 {
				victim.poll()
			}
			filler := filepath.Join(victim.stateDir, "filler")
			size := chaosFillDisk(sc.t, filler)
			failed := victim.unspooledCount()
			for range sc.perPhase / 2 {
				victim.poll()
			}
			failedCut := victim.unspooledCount() - failed
			victim.mode.Store(chaosDeliver)
			calls := victim.calls.Load()
			for range sc.perPhase / 2 {
				victim.poll()
				time.Sleep(chaosPollGap)
			}
			calls = victim.calls.Load() - calls
			failedBack := victim.unspooledCount() - failed - failedCut
			others()
			if err := os.Remove(filler); err != nil {
				sc.t.Fatal(err)
			}
			sc.notef("%s: disk filled (%d bytes of filler) with reports #%d..#%d unacknowledged; network cut: %d of %d polls could not spool; "+
				"network back, disk still full: %d of %d polls could not spool, %d Ingest calls, acknowledged up to #%d; then the filler removed",
				victim.name, size, acked+1, victim.last(), failedCut, sc.perPhase/2, failedBack, sc.perPhase/2, calls, victim.acked.Load())
			sc.afterRecovery = append(sc.afterRecovery, func() { sc.unspooledWindows(victim, "disk full") })
		},
	},
	{
		name: "spool-bound", collectors: 1,
		what:     "an agent's spool bounded to SpoolMaxMB=1; its network cut until 1.5 MiB of reports overflowed it, then restored",
		profiles: []simulate.Profile{simulate.FileServer, simulate.Workstation},
		prepare: func(sc *chaosScenario) error {
			sc.agents[0].values[config.SpoolMaxMB] = "1"
			sc.agents[0].values[config.ResyncIntervalMinutes] = "10"
			return nil
		},
		inject: func(sc *chaosScenario) {
			victim := sc.agents[0]
			acked := sc.cutAndBacklog(victim)
			polls := 0
			for victim.bytesSince(acked) < 3<<19 {
				if polls == 200*sc.perPhase {
					sc.t.Fatalf("chaos: %s: only %d bytes spooled in %d polls", victim.name, victim.bytesSince(acked), polls)
				}
				victim.poll()
				polls++
			}
			victim.stop() // the bound takes effect at start; restart to make sure the setting is the one in use
			sc.notef("%s: %d bytes (%d reports) spooled with the network cut, over a bound of 1 MiB", victim.name,
				victim.bytesSince(acked), victim.last()-acked)
			sc.restartAfterLoss(victim, acked, int(victim.last()-acked), "spool overflowed")
		},
	},
}

// chaosRow is one fault's line of the table.
type chaosRow struct {
	fault   chaosFault
	count   chaosCount
	verdict string // "pass", "FAIL: ...", "not run: ..."
	took    time.Duration
	notes   []string
}

// TestChaos runs every fault (make chaos).
func TestChaos(t *testing.T) {
	if !*chaosFlag {
		t.Skip("the chaos suite runs with -chaos (make chaos)")
	}
	if *chaosPolls < 8 {
		t.Fatalf("-chaos.polls %d: want at least 8", *chaosPolls)
	}
	start := time.Now()
	env := newChaosEnv(t)
	var rows []chaosRow
	for _, f := range chaosFaults {
		t.Run(f.name, func(t *testing.T) {
			// A scenario that stops on a fatal error still gets its row.
			row := chaosRow{fault: f, verdict: "FAIL: the scenario stopped (see its log)"}
			defer func() { rows = append(rows, row) }()
			row = runChaosFault(t, env, f)
			for _, n := range row.notes {
				t.Log(n)
			}
			for _, e := range row.count.Examples {
				t.Log("  ", e)
			}
			switch {
			case strings.HasPrefix(row.verdict, "not run"):
				t.Skip(row.verdict)
			case row.verdict != "pass":
				t.Error(row.verdict)
			}
		})
	}
	table := chaosTable(rows, *chaosPolls, time.Since(start))
	t.Log("\n" + table)
	if *chaosReport != "" {
		if err := os.MkdirAll(filepath.Dir(*chaosReport), 0o755); err != nil {
			t.Error(err)
		} else if err := os.WriteFile(*chaosReport, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// chaosScenario is one fault's run: its database, collectors and agents.
type chaosScenario struct {
	t            *testing.T
	env          *chaosEnv
	dir          string
	st           *store.Store
	secret       string
	addr         string // what the agents dial
	collectors   []*chaosCollector
	balancer     *chaosBalancer // in front of the collectors, when there are two
	historyStart time.Time
	perPhase     int // polls of each agent per phase
	agents       []*chaosAgent

	mu            sync.Mutex
	windows       []chaosWindow
	notes         []string
	afterRecovery []func()
}

// runChaosFault stages one fault: warm-up, fault, recovery, then the count.
func runChaosFault(t *testing.T, env *chaosEnv, f chaosFault) (row chaosRow) {
	begin := time.Now()
	row.fault = f
	defer func() { row.took = time.Since(begin) }()
	ctx := context.Background()
	sc := &chaosScenario{t: t, env: env, dir: filepath.Join(env.dir, chaosSafeName(t.Name())), perPhase: *chaosPolls}
	if err := os.MkdirAll(sc.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	dbURL := env.pg.newDatabase(f.name)
	for i := range f.collectors {
		sc.collectors = append(sc.collectors, startChaosCollector(t, env, fmt.Sprintf("collector%d", i+1), dbURL))
	}
	sc.addr = sc.collectors[0].Addr
	if len(sc.collectors) > 1 {
		var addrs []string
		for _, c := range sc.collectors {
			addrs = append(addrs, c.Addr)
		}
		sc.balancer = startChaosBalancer(t, addrs...)
		sc.addr = sc.balancer.Addr
	}
	st, err := store.Open(ctx, dbURL) // migrated by the collectors
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	sc.st = st
	if _, sc.secret, err = st.CreateEnrollmentSecret(ctx, "chaos "+f.name, 100, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// The histories end before now (the collector refuses reports from the
	// future): room for the longest fault's polls.
	sc.historyStart = time.Now().UTC().Truncate(time.Minute).Add(-time.Duration(250*sc.perPhase) * chaosPoll)
	for i, p := range f.profiles {
		sc.agents = append(sc.agents, newChaosAgent(sc, i, p))
	}
	if f.prepare != nil {
		if err := f.prepare(sc); err != nil {
			row.verdict = fmt.Sprintf("not run: %v", err)
			return row
		}
	}
	for _, a := range sc.agents {
		a.start()
		t.Cleanup(a.stop)
	}

	// Warm-up: everyone enrolls and delivers.
	sc.polls(sc.agents, sc.perPhase)
	if p := sc.delivered(60 * time.Second); p > 0 {
		t.Fatalf("chaos: warm-up: %d reports not acknowledged within 60 s", p)
	}
	f.inject(sc)
	// Recovery: everyone polls on, then everything is delivered.
	sc.polls(sc.agents, sc.perPhase)
	for _, f := range sc.afterRecovery {
		f()
	}
	sc.delivered(30 * time.Second)
	for _, a := range sc.agents {
		a.stop()
	}
	for _, c := range sc.collectors {
		c.kill()
	}
	if f.tamper != nil {
		sc.notef("%s", f.tamper(sc))
	}
	row.count = sc.count(ctx)
	row.notes = sc.notes
	row.verdict = chaosVerdict(row.count)
	if f.verdict != nil {
		row.verdict = f.verdict(row.count)
	}
	return row
}

// chaosVerdict is "pass" or what failed.
func chaosVerdict(c chaosCount) string {
	var bad []string
	if c.Lost > 0 {
		bad = append(bad, fmt.Sprintf("%d intervals lost", c.Lost))
	}
	if c.Duplicated > 0 {
		bad = append(bad, fmt.Sprintf("%d duplicated", c.Duplicated))
	}
	if c.Extra > 0 {
		bad = append(bad, fmt.Sprintf("%d stored that the hosts never had", c.Extra))
	}
	if c.WrongEnd > 0 {
		bad = append(bad, fmt.Sprintf("%d with a wrong end", c.WrongEnd))
	}
	if c.Pending > 0 {
		bad = append(bad, fmt.Sprintf("%d reports never acknowledged", c.Pending))
	}
	if c.Expected < 20 {
		bad = append(bad, fmt.Sprintf("only %d intervals: the scenario exercised too little", c.Expected))
	}
	if len(bad) == 0 {
		return "pass"
	}
	return "FAIL: " + strings.Join(bad, "; ")
}

// phase is about how long one phase of polls takes.
func (sc *chaosScenario) phase() time.Duration { return time.Duration(sc.perPhase) * chaosPollGap }

func (sc *chaosScenario) notef(format string, args ...any) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.notes = append(sc.notes, fmt.Sprintf(format, args...))
}

// polls makes each of agents poll n times, all at once, and waits.
func (sc *chaosScenario) polls(agents []*chaosAgent, n int) { sc.pollAsync(agents, n)() }

// pollAsync starts n polls of each of agents, paced, and returns a
// function that waits for them.
func (sc *chaosScenario) pollAsync(agents []*chaosAgent, n int) (wait func()) {
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				a.poll()
				time.Sleep(chaosPollGap)
			}
		}()
	}
	return wg.Wait
}

// delivered waits until every live agent heard the acknowledgement of its
// newest report, or timeout passes; it returns the reports still waiting.
func (sc *chaosScenario) delivered(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		pending := 0
		for _, a := range sc.agents {
			if last := a.last(); a.alive.Load() && a.acked.Load() < last {
				pending += int(last - a.acked.Load())
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return pending
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// inFlight counts the Ingest calls the agents have in flight.
func (sc *chaosScenario) inFlight() int {
	n := 0
	for _, a := range sc.agents {
		n += int(a.inFlight.Load())
	}
	return n
}

// whenBusy waits, up to 2 s, until an agent has an Ingest call in flight:
// the moment to strike.
func (sc *chaosScenario) whenBusy() {
	for deadline := time.Now().Add(2 * time.Second); sc.inFlight() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// killCollector kills c with SIGKILL and notes how many calls it cut.
func (sc *chaosScenario) killCollector(c *chaosCollector) {
	n := sc.inFlight()
	c.kill()
	sc.notef("%s killed (SIGKILL) with %d Ingest calls in flight", c.name, n)
}

// cutAndBacklog cuts the victim's network and lets every agent poll a
// phase: the victim's reports pile up in its spool. It returns the
// victim's acknowledged sequence at the cut.
func (sc *chaosScenario) cutAndBacklog(victim *chaosAgent) uint64 {
	victim.mode.Store(chaosCut)
	acked := victim.acked.Load()
	sc.polls(sc.agents, sc.perPhase)
	return acked
}

// restartAfterLoss restores the victim's network and restarts it after a
// fault destroyed (or put at risk) the n reports after acked: what they
// alone carried is a destroyed stretch, from the last report the collector
// has to the first the agent makes after the restart.
func (sc *chaosScenario) restartAfterLoss(victim *chaosAgent, acked uint64, n int, what string) {
	from := victim.takenAt(acked)
	first := victim.spooledCount()
	victim.mode.Store(chaosDeliver)
	victim.clk.Advance(chaosPoll) // the restart takes a moment of the host's time
	victim.start()
	to := victim.spooledAt(first)
	if to.IsZero() {
		to = victim.clk.Now()
	}
	sc.mu.Lock()
	sc.windows = append(sc.windows, chaosWindow{Host: victim.src.MachineGUID(), From: from, To: to, Reports: n, What: what})
	sc.mu.Unlock()
}

// unspooledWindows records as destroyed stretches the runs of the
// victim's polls whose reports the spool refused.
func (sc *chaosScenario) unspooledWindows(victim *chaosAgent, what string) {
	victim.mu.Lock()
	defer victim.mu.Unlock()
	failed := append([]time.Time(nil), victim.unspooled...)
	sort.Slice(failed, func(i, j int) bool { return failed[i].Before(failed[j]) })
	for i := 0; i < len(failed); {
		w := chaosWindow{Host: victim.src.MachineGUID(), What: what}
		j := i
		for j < len(failed) && !victim.spooledBetween(failed[i], failed[j]) {
			j++
		}
		w.Reports = j - i
		for _, s := range victim.spooled {
			if s.takenAt.Before(failed[i]) {
				w.From = s.takenAt
			}
			if s.takenAt.After(failed[j-1]) && w.To.IsZero() {
				w.To = s.takenAt
			}
		}
		if w.To.IsZero() {
			w.To = victim.clk.Now().Add(time.Minute)
		}
		sc.windows = append(sc.windows, w)
		i = j
	}
}

// spooledBetween reports whether a report was spooled with taken_at in
// (a, b]; the caller holds a.mu.
func (a *chaosAgent) spooledBetween(from, to time.Time) bool {
	for _, s := range a.spooled {
		if s.takenAt.After(from) && !s.takenAt.After(to) {
			return true
		}
	}
	return false
}

func (a *chaosAgent) unspooledCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.unspooled)
}

func (a *chaosAgent) spooledCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.spooled)
}

// spooledAt returns the taken_at of the i-th report spooled, zero if none.
func (a *chaosAgent) spooledAt(i int) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i < len(a.spooled) {
		return a.spooled[i].takenAt
	}
	return time.Time{}
}

// bytesSince returns the encoded bytes of the reports spooled after seq.
func (a *chaosAgent) bytesSince(seq uint64) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, s := range a.spooled {
		if s.seq > seq {
			n += s.size
		}
	}
	return n
}

// chaosTamper damages the store of a scenario in three ways the count
// must see: it deletes one closed logon interval, stores another one twice
// (a copy under a new id) and moves the end of a third an hour later.
func chaosTamper(sc *chaosScenario) string {
	t := sc.t
	ctx := context.Background()
	var ids []int64
	rows, err := sc.st.Pool().Query(ctx, `SELECT id FROM logon_session WHERE end_before <> 'infinity' ORDER BY id LIMIT 3`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if len(ids) < 3 {
		t.Fatalf("chaos: self-check: only %d closed logon intervals to tamper with", len(ids))
	}
	tx, err := sc.st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, q := range []string{
		`DELETE FROM logon_session WHERE id = $1`,
		`CREATE TEMP TABLE chaos_copy ON COMMIT DROP AS SELECT * FROM logon_session WHERE id = $1`,
		`UPDATE logon_session SET end_before = end_before + interval '1 hour' WHERE id = $1`,
	} {
		id := ids[0]
		switch {
		case strings.HasPrefix(q, "CREATE"):
			id = ids[1]
		case strings.HasPrefix(q, "UPDATE"):
			id = ids[2]
		}
		if _, err := tx.Exec(ctx, q, id); err != nil {
			t.Fatalf("chaos: self-check: %s: %v", q, err)
		}
	}
	for _, q := range []string{
		`UPDATE chaos_copy SET id = nextval(pg_get_serial_sequence('logon_session', 'id'))`,
		`INSERT INTO logon_session SELECT * FROM chaos_copy`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatalf("chaos: self-check: %s: %v", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("store tampered with: logon interval %d deleted, %d stored twice, %d ended an hour later", ids[0], ids[1], ids[2])
}

// chaosFillDisk writes path until the file system it is on is full, and
// returns its size.
func chaosFillDisk(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{64 << 10, 4 << 10, 512, 1} {
		buf := make([]byte, chunk)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if err != nil {
				break
			}
		}
	}
	return n
}

// chaosSegmentSizes returns the size of each segment file of the spool in
// dir.
func chaosSegmentSizes(dir string) map[string]int64 {
	out := map[string]int64{}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	for _, s := range segs {
		if fi, err := os.Stat(s); err == nil {
			out[filepath.Base(s)] = fi.Size()
		}
	}
	return out
}

// chaosCorruptSpool overwrites n bytes in the middle of what the segments
// of the spool in dir gained since before (the reports written since): of
// the segment that gained most. It returns the file and offset.
func chaosCorruptSpool(t *testing.T, dir string, before map[string]int64, n int) (string, int64) {
	t.Helper()
	var name string
	var from, gain int64
	for s, size := range chaosSegmentSizes(dir) {
		if g := size - before[s]; g > gain {
			name, from, gain = s, before[s], g
		}
	}
	if gain < int64(3*n) {
		t.Fatalf("chaos: the spool in %s gained no segment of %d bytes or more to damage (most %d)", dir, 3*n, gain)
	}
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := make([]byte, n)
	for i := range junk {
		junk[i] = byte(0xA5 ^ i*7)
	}
	off := from + gain/2 - int64(n/2)
	if _, err := f.WriteAt(junk, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return path, off
}

// chaosTable renders the rows as the Markdown table of docs/benchmarks.md.
func chaosTable(rows []chaosRow, polls int, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Chaos suite: -chaos.polls %d, %d faults, %v\n\n", polls, len(rows), took.Round(time.Second))
	b.WriteString("| fault | hosts | expected | stored | lost | duplicated | extra | wrong end | destroyed on disk (reports) | gap reported | verdict |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range rows {
		c := r.count
		if strings.HasPrefix(r.verdict, "not run") {
			fmt.Fprintf(&b, "| %s | | | | | | | | | | %s |\n", r.fault.name, r.verdict)
			continue
		}
		gap := "—"
		switch {
		case c.Windows == 0:
		case !c.GapSupport:
			gap = "no (the store records no gaps)"
		case c.Gaps == c.Windows:
			gap = "yes"
		default:
			gap = fmt.Sprintf("no (%d of %d stretches)", c.Gaps, c.Windows)
		}
		if c.InGap > 0 {
			gap += fmt.Sprintf("; %d intervals inside", c.InGap)
		}
		destroyed := "0"
		if c.Windows > 0 {
			destroyed = fmt.Sprintf("%d", c.Destroyed)
		}
		lost := fmt.Sprintf("%d", c.Lost)
		if c.LostInside > 0 {
			lost += fmt.Sprintf(" (%d inside destroyed stretches)", c.LostInside)
		}
		wrong := fmt.Sprintf("%d", c.WrongEnd)
		if c.WiderInside > 0 {
			wrong += fmt.Sprintf(" (%d wider: end destroyed)", c.WiderInside)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %d | %d | %s | %s | %s | %s (%v) |\n", r.fault.name, c.Hosts, c.Expected, c.Stored,
			lost, c.Duplicated, c.Extra, wrong, destroyed, gap, r.verdict, r.took.Round(time.Second))
	}
	b.WriteString("\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "- %s: %s\n", r.fault.name, r.fault.what)
	}
	return b.String()
}
