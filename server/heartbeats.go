package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sessionaudit/sessionaudit/store"
)

// Heartbeat grouping. A fleet at rest sends almost only heartbeats, one per
// agent per poll, and a store transaction each is what bounds how many
// agents a database serves (docs/benchmarks.md). Ingest calls that carry
// one plain heartbeat (no host facts, no collection errors) are queued here
// instead; a few workers take everything queued, store it with one
// store.IngestHeartbeats statement, and answer each call. A heartbeat the
// store leaves alone (a duplicate, a resync, a late one, a first report)
// goes back to the ordinary path, which gives the full answer. Under no
// load a heartbeat goes alone, at once: grouping adds no delay, it only
// takes what queued while the previous group was in the store.
const (
	// heartbeatWorkers is how many groups may be in the store at once.
	heartbeatWorkers = 2
	// heartbeatQueue bounds the heartbeats waiting for a worker; beyond
	// it calls take the ordinary path (and its pushback).
	heartbeatQueue = 4096
	// maxHeartbeatGroup bounds one statement.
	maxHeartbeatGroup = 1000
	// heartbeatWorkerIdle is how long an idle worker waits before it ends.
	heartbeatWorkerIdle = 5 * time.Second
)

// errHeartbeatBusy is a group that found no store slot within
// IngestQueueWait.
var errHeartbeatBusy = errors.New("every store slot busy")

type heartbeatCall struct {
	hb   store.Heartbeat
	done chan heartbeatResult
}

type heartbeatResult struct {
	applied bool
	err     error
}

// heartbeatGroups queues plain heartbeats and stores them in groups.
type heartbeatGroups struct {
	s  *Server
	in chan *heartbeatCall

	mu      sync.Mutex
	running int
}

func newHeartbeatGroups(s *Server) *heartbeatGroups {
	return &heartbeatGroups{s: s, in: make(chan *heartbeatCall, heartbeatQueue)}
}

// submit queues hb and waits for its group. queued is false when the queue
// is full (nothing was done: use the ordinary path); otherwise applied says
// whether the store took it, and err is the group's store error or ctx's.
func (g *heartbeatGroups) submit(ctx context.Context, hb store.Heartbeat) (applied, queued bool, err error) {
	call := &heartbeatCall{hb: hb, done: make(chan heartbeatResult, 1)}
	select {
	case g.in <- call:
	default:
		return false, false, nil
	}
	g.mu.Lock()
	if g.running < heartbeatWorkers {
		g.running++
		go g.work()
	}
	g.mu.Unlock()
	select {
	case r := <-call.done:
		return r.applied, true, r.err
	case <-ctx.Done():
		// The group may still store it: the agent resends, and is
		// acknowledged as a duplicate.
		return false, true, ctx.Err()
	}
}

// work stores groups until it has been idle for heartbeatWorkerIdle.
func (g *heartbeatGroups) work() {
	idle := time.NewTimer(heartbeatWorkerIdle)
	defer idle.Stop()
	for {
		select {
		case first := <-g.in:
			g.store(g.take(first))
			idle.Reset(heartbeatWorkerIdle)
		case <-idle.C:
			g.mu.Lock()
			if len(g.in) > 0 {
				g.mu.Unlock()
				idle.Reset(heartbeatWorkerIdle)
				continue
			}
			g.running--
			g.mu.Unlock()
			return
		}
	}
}

// take returns first and whatever else is queued, up to maxHeartbeatGroup.
func (g *heartbeatGroups) take(first *heartbeatCall) []*heartbeatCall {
	group := []*heartbeatCall{first}
	for len(group) < maxHeartbeatGroup {
		select {
		case c := <-g.in:
			group = append(group, c)
		default:
			return group
		}
	}
	return group
}

// store writes one group under a store slot and answers its calls.
func (g *heartbeatGroups) store(group []*heartbeatCall) {
	s := g.s
	answer := func(applied []bool, err error) {
		for i, c := range group {
			c.done <- heartbeatResult{applied: err == nil && applied[i], err: err}
		}
	}
	wait := time.NewTimer(s.cfg.IngestQueueWait)
	select {
	case s.ingestSlots <- struct{}{}:
		wait.Stop()
	case <-wait.C:
		answer(nil, errHeartbeatBusy)
		return
	}
	defer func() { <-s.ingestSlots }()
	hbs := make([]store.Heartbeat, len(group))
	for i, c := range group {
		hbs[i] = c.hb
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.IngestTimeout)
	defer cancel()
	start := time.Now()
	applied, err := s.store.IngestHeartbeats(ctx, hbs)
	s.metrics.ingest.Observe(time.Since(start).Seconds())
	s.metrics.heartbeatGroup.Observe(float64(len(group)))
	if err != nil {
		s.metrics.storeErrors.Inc()
		s.log.Error("store failed to ingest a group of heartbeats: pushing back", "err", err, "heartbeats", len(group))
	}
	answer(applied, err)
}

// plainHeartbeat returns the heartbeat of a batch that is one heartbeat
// without host facts or collection errors: what heartbeatGroups takes.
func plainHeartbeat(a agentCaller, reports []store.Report) (store.Heartbeat, bool) {
	if len(reports) != 1 {
		return store.Heartbeat{}, false
	}
	r := reports[0]
	if r.Kind != store.KindHeartbeat || r.Host != nil || len(r.CollectionErrors) > 0 || r.LostBefore != nil {
		return store.Heartbeat{}, false
	}
	return store.Heartbeat{AgentID: a.AgentID, MachineGUID: a.MachineGUID, Sequence: r.Sequence,
		BaseSequence: r.BaseSequence, TakenAt: r.TakenAt}, true
}
