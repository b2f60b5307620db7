package run

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/change"
	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/spool"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// TestSpoolWriteFailureLogged: a report the spool cannot write (a full
// disk; here, its segment file cannot be made) is lost, and the agent says
// so; the next report spooled, a full Snapshot, names it (lost_before,
// write failed) so that the collector records a coverage gap, and the log
// says that too. (Before: "it is lost", and nothing told the collector.)
func TestSpoolWriteFailureLogged(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewManual(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	// One segment per report: report n goes to a new file named n.
	sp, err := spool.Open(dir, spool.Options{SegmentBytes: 1, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	tr, err := change.NewTracker(change.Options{FirstSequence: sp.NextSequence(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	settings, _ := config.Load(config.MapLayer{LayerName: "test"})
	var logs syncBuffer
	var reports []*pb.Report
	a := &loop{opts: Options{Source: NewUnchangedSource(clk, 3, 1), Clock: clk,
		OnReport: func(r *pb.Report) { reports = append(reports, r) }},
		log: slog.New(slog.NewTextHandler(&logs, nil)), spool: sp, tracker: tr, settings: settings,
		notify: make(chan struct{}, 1), uplinkCfg: make(chan uplinkConfig, 1)}
	ctx := context.Background()

	a.poll(ctx) // report 1, a Snapshot
	// Report 2's segment cannot be made: a directory holds its name.
	if err := os.Mkdir(filepath.Join(dir, "00000000000000000002.seg"), 0o700); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	a.poll(ctx) // report 2, lost
	clk.Advance(time.Minute)
	a.poll(ctx) // report 3
	if len(reports) != 2 || reports[0].GetSequence() != 1 || reports[1].GetSequence() != 3 {
		t.Fatalf("reports spooled: %d; want 1 and 3", len(reports))
	}
	r3 := reports[1]
	if r3.GetSnapshot() == nil {
		t.Errorf("report 3 is a %s; want a snapshot after a report was lost", r3.ContentName())
	}
	if lb := r3.GetLostBefore(); lb.GetFirstSequence() != 2 || lb.GetLastSequence() != 2 ||
		lb.GetReason() != pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_WRITE_FAILED {
		t.Errorf("report 3 carries lost_before %v; want 2..2, write failed", lb)
	}
	peeked, err := sp.Peek(10, 0)
	if err != nil || len(peeked) != 2 || peeked[1].GetLostBefore().GetFirstSequence() != 2 {
		t.Errorf("Peek: %v, %v; want report 3 to carry the loss to the collector", peeked, err)
	}
	out := logs.String()
	for _, want := range []string{
		`level=ERROR msg="cannot spool the report: it is lost; the next report spooled names it`,
		"sequence=2 kind=heartbeat unwritten_first_sequence=2 unwritten_reports=1",
		`level=WARN msg="spool writes again: the reports it could not write are lost; this report names them`,
		"first_sequence=2 last_sequence=2 lost_reports=1 sequence=3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
}
