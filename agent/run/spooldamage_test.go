package run

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/spool"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// syncBuffer is a log destination safe for the agent's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSpoolDamageLogged: a segment in the middle of the spool was zeroed
// while the agent was stopped. At start the agent's log says exactly what
// was lost: how many reports, which sequences, which file.
func TestSpoolDamageLogged(t *testing.T) {
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, SpoolDir)
	clk := clock.NewManual(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))
	sp, err := spool.Open(spoolDir, spool.Options{SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 300; seq++ {
		r := &pb.Report{Sequence: seq, Content: &pb.Report_Delta{Delta: &pb.Delta{BaseSequence: seq - 1,
			TakenAt: timestamppb.New(clk.Now()), LogonSessionsUpserted: []*pb.LogonSession{{LogonId: fmt.Sprint(seq)}}}}}
		if seq == 1 {
			r.Content = &pb.Report_Snapshot{Snapshot: &pb.Snapshot{TakenAt: timestamppb.New(clk.Now())}}
		}
		if err := sp.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()
	segs, err := filepath.Glob(filepath.Join(spoolDir, "*.seg"))
	if err != nil || len(segs) < 3 {
		t.Fatalf("segments %v %v", segs, err)
	}
	slices.Sort(segs)
	victim := segs[len(segs)/2]
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(victim, make([]byte, len(b)), 0o600); err != nil {
		t.Fatal(err)
	}
	// The reports lost are those from the victim's key to the next key.
	var first, next uint64
	fmt.Sscanf(filepath.Base(victim), "%d.seg", &first)
	fmt.Sscanf(filepath.Base(segs[len(segs)/2+1]), "%d.seg", &next)

	var logs syncBuffer
	d := startDriver(t, NewUnchangedSource(clk, 2, 1), config.NewWatcher(), dir, clk, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	d.next()
	d.wait()
	d.stop()

	out := logs.String()
	opened := fmt.Sprintf("corrupt_bytes=%d torn_bytes=0 lost_reports=%d needs_resync=true", len(b), next-first)
	lost := fmt.Sprintf("first_sequence=%d last_sequence=%d lost_reports=%d next_sequence=%d damaged_bytes=%d segments=[%s]",
		first, next-1, next-first, next, len(b), filepath.Base(victim))
	for _, want := range []string{opened, "level=WARN msg=\"spool damaged: reports lost", lost} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
}
