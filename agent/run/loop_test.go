package run

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/change"
	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/spool"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// newTestLoop returns a loop over an unchanged host, without goroutines:
// the test calls poll.
func newTestLoop(t *testing.T, logons int, values map[string]string) (*loop, *[]*pb.Report) {
	t.Helper()
	clk := clock.NewManual(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	settings, ws := config.Load(config.MapLayer{LayerName: "test", Values: values})
	if len(ws) > 0 {
		t.Fatal(ws)
	}
	sp, err := spool.Open(t.TempDir(), spool.Options{MaxBytes: settings.SpoolMaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	tr, err := change.NewTracker(change.Options{FirstSequence: sp.NextSequence(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	var reports []*pb.Report
	a := &loop{opts: Options{Source: NewUnchangedSource(clk, logons, 0), Clock: clk,
		OnReport: func(r *pb.Report) { reports = append(reports, r) }},
		log: quietLogger(), spool: sp, tracker: tr, settings: settings,
		notify: make(chan struct{}, 1), uplinkCfg: make(chan uplinkConfig, 1)}
	return a, &reports
}

// TestCollectorResync: when the pump says the collector wants a Snapshot,
// the next report is one.
func TestCollectorResync(t *testing.T) {
	a, reports := newTestLoop(t, 10, nil)
	ctx := context.Background()
	a.poll(ctx)
	a.poll(ctx)
	a.resync.Store(true) // what the pump's OnResync does
	a.poll(ctx)
	a.poll(ctx)
	var kinds []string
	for _, r := range *reports {
		kinds = append(kinds, r.ContentName())
	}
	if want := "snapshot heartbeat snapshot heartbeat"; join(kinds) != want {
		t.Errorf("reports %s; want %s", join(kinds), want)
	}
}

// TestSpoolOverflowResync: when the spool drops reports that the
// collector needs (after the newest Snapshot) to stay within SpoolMaxMB,
// the next report is a Snapshot, so the collector is whole again; drops
// of reports older than the newest Snapshot need none.
func TestSpoolOverflowResync(t *testing.T) {
	// About 280 KB per Snapshot, and per Delta that changes every
	// session, against a 1 MiB spool.
	a, reports := newTestLoop(t, 3000, map[string]string{config.SpoolMaxMB: "1"})
	src := a.opts.Source.(*UnchangedSource)
	ctx := context.Background()
	a.poll(ctx)
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatal("the spool never dropped anything")
		}
		for _, ls := range src.base.LogonSessions {
			ls.Status = fmt.Sprint("changed ", i)
		}
		a.poll(ctx)
		if last := (*reports)[len(*reports)-1]; last.GetDelta() == nil {
			t.Fatalf("report %d is a %s; want a delta", last.GetSequence(), last.ContentName())
		}
		if n, _ := a.spool.Dropped(); n > 0 {
			break
		}
	}
	// The first report kept names the reports dropped, for the collector's
	// coverage gap.
	if kept, err := a.spool.Peek(1, 0); err != nil || len(kept) != 1 ||
		kept[0].GetLostBefore().GetReason() != pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_OVERFLOW ||
		kept[0].GetLostBefore().GetLastSequence() != kept[0].GetSequence()-1 {
		t.Errorf("first report kept after an overflow: %v, %v; want one naming the reports dropped just before it", kept, err)
	}
	a.poll(ctx) // nothing changed, nothing requested
	if last := (*reports)[len(*reports)-1]; last.GetSnapshot() == nil {
		t.Errorf("report after an overflow is a %s; want a snapshot", last.ContentName())
	}
	// Snapshots over the bound drop only what they supersede.
	for range 5 {
		a.resync.Store(true)
		a.poll(ctx)
	}
	a.poll(ctx)
	if last := (*reports)[len(*reports)-1]; last.GetHeartbeat() == nil {
		t.Errorf("report after snapshots that overflowed is a %s; want a heartbeat", last.ContentName())
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}
