package run

import (
	"context"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/change"
	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/spool"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// BenchmarkUnchangedCycle measures one poll cycle of a host with 500
// sessions (400 logon, 100 server) where nothing changed: snapshot (a copy
// of the host), change detection, a Heartbeat appended to the spool on
// disk. ns/op on one goroutine is the CPU time of a cycle, less the
// system time of the spool's write and flush (see bench-footprint for
// the process's whole CPU time).
func BenchmarkUnchangedCycle(b *testing.B) {
	clk := clock.NewManual(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	sp, err := spool.Open(b.TempDir(), spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	tr, err := change.NewTracker(change.Options{FirstSequence: 1, Clock: clk, ResyncInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	settings, _ := config.Load()
	a := &loop{opts: Options{Source: NewUnchangedSource(clk, 400, 100), Clock: clk}, log: quietLogger(),
		spool: sp, tracker: tr, settings: settings, notify: make(chan struct{}, 1), uplinkCfg: make(chan uplinkConfig, 1)}
	ctx := context.Background()
	n := 0
	a.opts.OnReport = func(r *pb.Report) {
		if n++; n > 1 && r.GetHeartbeat() == nil {
			b.Fatalf("report #%d is a %s; want heartbeat", r.GetSequence(), r.ContentName())
		}
	}
	a.poll(ctx) // the first Snapshot
	b.ReportAllocs()
	for b.Loop() {
		clk.Advance(10 * time.Second)
		a.poll(ctx)
	}
}
