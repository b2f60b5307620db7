package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

var t0 = time.Date(2025, 1, 6, 9, 0, 0, 0, time.UTC)

// kinds of report, for building scenarios: S snapshot, D delta, H heartbeat.
const (
	S = 'S'
	D = 'D'
	H = 'H'
)

// report returns a report of the given kind numbered seq; deltas carry one
// logon session, so that their size resembles a real one.
func report(seq uint64, kind rune) *sessionauditv1.Report {
	at := timestamppb.New(t0.Add(time.Duration(seq) * time.Minute))
	r := &sessionauditv1.Report{Sequence: seq}
	switch kind {
	case S:
		r.Content = &sessionauditv1.Report_Snapshot{Snapshot: &sessionauditv1.Snapshot{
			Host:    &sessionauditv1.Host{MachineGuid: "4c4c4544-0042-3510-8052-b4c04f564433", Hostname: "WS01"},
			TakenAt: at,
			LogonSessions: []*sessionauditv1.LogonSession{
				{LogonId: "999", AuthenticationPackage: "Negotiate", StartTime: at},
				{LogonId: fmt.Sprint(1000 + seq), AuthenticationPackage: "Kerberos", StartTime: at},
			},
		}}
	case D:
		r.Content = &sessionauditv1.Report_Delta{Delta: &sessionauditv1.Delta{
			BaseSequence: seq - 1, TakenAt: at,
			LogonSessionsUpserted: []*sessionauditv1.LogonSession{
				{LogonId: fmt.Sprint(1000 + seq), AuthenticationPackage: "Kerberos", Name: "CONTOSO\\alice", StartTime: at},
			},
		}}
	case H:
		r.Content = &sessionauditv1.Report_Heartbeat{Heartbeat: &sessionauditv1.Heartbeat{BaseSequence: seq - 1, TakenAt: at}}
	default:
		panic("unknown kind")
	}
	return r
}

func mustOpen(t testing.TB, dir string, opts Options) *Spool {
	t.Helper()
	sp, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// appendRange appends deltas numbered from..to.
func appendRange(t testing.TB, sp *Spool, from, to uint64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		if err := sp.Append(report(seq, D)); err != nil {
			t.Fatalf("Append(%d): %v", seq, err)
		}
	}
}

// peekAll returns the sequences of every unacknowledged report.
func peekAll(t testing.TB, sp *Spool) []uint64 {
	t.Helper()
	reps, err := sp.Peek(1<<30, 0)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	return seqs(reps)
}

func seqs(reps []*sessionauditv1.Report) []uint64 {
	var out []uint64
	for _, r := range reps {
		out = append(out, r.GetSequence())
	}
	return out
}

func span(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// diskBytes is the size of the segment files in dir.
func diskBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	for _, p := range segmentFiles(t, dir) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segmentExt))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

func TestAppendPeekAck(t *testing.T) {
	tests := []struct {
		name       string
		n          uint64
		maxReports int
		maxBytes   int
		want       []uint64 // first batch
	}{
		{"all", 10, 100, 0, span(1, 10)},
		{"report limit", 10, 3, 0, span(1, 3)},
		{"byte limit", 10, 100, proto.Size(report(1, D)) + proto.Size(report(2, D)) + proto.Size(report(3, D)), span(1, 3)},
		{"byte limit one short", 10, 100, proto.Size(report(1, D)) + proto.Size(report(2, D)) + proto.Size(report(3, D)) - 1, span(1, 2)},
		{"first report whatever its size", 10, 100, 1, span(1, 1)},
		{"empty", 0, 10, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := mustOpen(t, t.TempDir(), Options{SegmentBytes: 1024})
			appendRange(t, sp, 1, tt.n)
			got, err := sp.Peek(tt.maxReports, tt.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seqs(got), tt.want) {
				t.Fatalf("Peek = %v, want %v", seqs(got), tt.want)
			}
			for i, r := range got {
				if want := report(tt.want[i], D); !proto.Equal(r, want) {
					t.Fatalf("report %d = %v, want %v", i, r, want)
				}
			}
			// Peek again without Ack: the same reports.
			again, _ := sp.Peek(tt.maxReports, tt.maxBytes)
			if !slices.Equal(seqs(again), tt.want) {
				t.Fatalf("second Peek = %v, want %v", seqs(again), tt.want)
			}
			if len(got) == 0 {
				return
			}
			acked := got[len(got)-1].GetSequence()
			if err := sp.Ack(acked, 0); err != nil {
				t.Fatal(err)
			}
			if rest := peekAll(t, sp); !slices.Equal(rest, span(acked+1, tt.n)) {
				t.Fatalf("after Ack(%d): Peek = %v", acked, rest)
			}
			if err := sp.Ack(tt.n, 0); err != nil {
				t.Fatal(err)
			}
			if rest := peekAll(t, sp); len(rest) != 0 {
				t.Fatalf("after Ack of everything: Peek = %v", rest)
			}
		})
	}
}

func TestAckDeletesSegments(t *testing.T) {
	dir := t.TempDir()
	sp := mustOpen(t, dir, Options{SegmentBytes: 512})
	appendRange(t, sp, 1, 40)
	before := len(segmentFiles(t, dir))
	if before < 4 {
		t.Fatalf("%d segments, want several", before)
	}
	if err := sp.Ack(20, 0); err != nil {
		t.Fatal(err)
	}
	mid := len(segmentFiles(t, dir))
	if mid >= before || mid == 0 {
		t.Fatalf("after Ack(20): %d segments, had %d", mid, before)
	}
	if got := peekAll(t, sp); !slices.Equal(got, span(21, 40)) {
		t.Fatalf("Peek = %v", got)
	}
	if err := sp.Ack(40, 0); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentFiles(t, dir)); n != 1 {
		t.Fatalf("after acknowledging everything: %d segments, want the newest only", n)
	}
	if got := sp.Stats(); got.Segments != 1 || got.Bytes != diskBytes(t, dir) {
		t.Fatalf("Stats = %+v, disk %d bytes", got, diskBytes(t, dir))
	}
}

func TestRestart(t *testing.T) {
	tests := []struct {
		name     string
		n, acked uint64
	}{
		{"nothing acknowledged", 30, 0},
		{"some acknowledged", 30, 12},
		{"all acknowledged", 30, 30},
		{"acknowledged beyond the newest", 30, 99},
		{"empty", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentBytes: 700}
			sp, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			appendRange(t, sp, 1, tt.n)
			if err := sp.Ack(tt.acked, 0); err != nil {
				t.Fatal(err)
			}
			if err := sp.Close(); err != nil {
				t.Fatal(err)
			}
			if err := sp.Append(report(tt.n+1, D)); err != ErrClosed {
				t.Fatalf("Append after Close: %v, want ErrClosed", err)
			}

			sp = mustOpen(t, dir, opts)
			wantAcked := min(tt.acked, tt.n)
			if got := peekAll(t, sp); !slices.Equal(got, span(wantAcked+1, tt.n)) {
				t.Fatalf("after restart: Peek = %v, want %d..%d", got, wantAcked+1, tt.n)
			}
			if got := sp.Stats().Acknowledged; got != wantAcked {
				t.Fatalf("Acknowledged = %d, want %d", got, wantAcked)
			}
			if got := sp.NextSequence(); got != tt.n+1 {
				t.Fatalf("NextSequence = %d, want %d", got, tt.n+1)
			}
			if sp.NeedsResync() {
				t.Fatal("NeedsResync after a clean restart")
			}
			// Numbering goes on; an old number is refused.
			if err := sp.Append(report(tt.n, D)); tt.n > 0 && err == nil {
				t.Fatalf("Append(%d) again succeeded", tt.n)
			}
			appendRange(t, sp, tt.n+1, tt.n+5)
			sp.Close()
			sp = mustOpen(t, dir, opts)
			if got := peekAll(t, sp); !slices.Equal(got, span(wantAcked+1, tt.n+5)) {
				t.Fatalf("after second restart: Peek = %v", got)
			}
		})
	}
}

func TestHeartbeatsCoalesce(t *testing.T) {
	tests := []struct {
		kinds      string // report i+1 has kind kinds[i]
		maxReports int
		want       []uint64
	}{
		{"SHHHD", 10, []uint64{1, 4, 5}},
		{"SHHH", 10, []uint64{1, 4}},
		{"HHH", 10, []uint64{3}},
		{"SDHDHHS", 10, []uint64{1, 2, 3, 4, 6, 7}},
		{"SDDHH", 2, []uint64{1, 2}},
		// A full batch still takes the heartbeats that follow its last one.
		{"SHHHD", 2, []uint64{1, 4}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.kinds, tt.maxReports), func(t *testing.T) {
			sp := mustOpen(t, t.TempDir(), Options{})
			for i, k := range tt.kinds {
				if err := sp.Append(report(uint64(i+1), k)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := sp.Peek(tt.maxReports, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(seqs(got), tt.want) {
				t.Fatalf("Peek = %v, want %v", seqs(got), tt.want)
			}
		})
	}
}

func TestOverflow(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MaxBytes: 4096, SegmentBytes: 1024}
	sp := mustOpen(t, dir, opts)
	const n = 200
	if err := sp.Append(report(1, S)); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(2); seq <= n; seq++ {
		if err := sp.Append(report(seq, D)); err != nil {
			t.Fatal(err)
		}
		if got := diskBytes(t, dir); got > opts.MaxBytes+opts.SegmentBytes {
			t.Fatalf("after report %d: %d bytes on disk, bound %d + one segment", seq, got, opts.MaxBytes)
		}
	}
	if !sp.NeedsResync() {
		t.Fatal("NeedsResync false after overflow")
	}
	kept := peekAll(t, sp)
	if len(kept) == 0 || kept[len(kept)-1] != n || !slices.Equal(kept, span(kept[0], n)) {
		t.Fatalf("kept %v, want the newest reports up to %d without gaps", kept, n)
	}
	dropped, droppedBytes := sp.Dropped()
	if dropped != uint64(n-len(kept)) {
		t.Fatalf("Dropped = %d, want %d (%d kept of %d)", dropped, n-len(kept), len(kept), n)
	}
	if want := int64(dropped) * int64(headerSize+proto.Size(report(100, D))); droppedBytes < want/2 || droppedBytes > want*2 {
		t.Fatalf("dropped bytes %d, about %d expected", droppedBytes, want)
	}

	// Survives a restart.
	sp.Close()
	sp = mustOpen(t, dir, opts)
	if d, _ := sp.Dropped(); d != dropped || !sp.NeedsResync() {
		t.Fatalf("after restart: Dropped %d, NeedsResync %v; want %d, true", d, sp.NeedsResync(), dropped)
	}
	if st := sp.Stats(); st.DroppedReports != dropped || st.DroppedBytes != droppedBytes {
		t.Fatalf("Stats = %+v", st)
	}
	// A Snapshot clears the resync; acknowledging the count clears it.
	if err := sp.Append(report(n+1, S)); err != nil {
		t.Fatal(err)
	}
	if sp.NeedsResync() {
		t.Fatal("NeedsResync after a Snapshot")
	}
	if err := sp.Ack(n+1, dropped-1); err != nil {
		t.Fatal(err)
	}
	if d, _ := sp.Dropped(); d != 1 {
		t.Fatalf("Dropped after acknowledging all but one = %d", d)
	}
	if err := sp.Ack(n+1, 1); err != nil {
		t.Fatal(err)
	}
	if d, b := sp.Dropped(); d != 0 || b != 0 {
		t.Fatalf("Dropped after acknowledging = %d, %d", d, b)
	}
	if st := sp.Stats(); st.DroppedReports != dropped {
		t.Fatalf("lifetime DroppedReports = %d, want %d", st.DroppedReports, dropped)
	}
}

func TestOverflowAcknowledgedIsNotDropped(t *testing.T) {
	sp := mustOpen(t, t.TempDir(), Options{MaxBytes: 4096, SegmentBytes: 1024})
	for seq := uint64(1); seq <= 200; seq++ {
		if err := sp.Append(report(seq, D)); err != nil {
			t.Fatal(err)
		}
		if err := sp.Ack(seq, 0); err != nil {
			t.Fatal(err)
		}
	}
	if d, _ := sp.Dropped(); d != 0 || sp.NeedsResync() {
		t.Fatalf("Dropped %d, NeedsResync %v with everything acknowledged", d, sp.NeedsResync())
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		opts    Options
		wantErr bool
	}{
		{Options{}, false},
		{Options{MaxBytes: 1 << 20}, false},
		{Options{MaxBytes: 1024, SegmentBytes: 2048}, true},
		{Options{MaxBytes: -1}, true},
	}
	for _, tt := range tests {
		sp, err := Open(t.TempDir(), tt.opts)
		if (err != nil) != tt.wantErr {
			t.Errorf("Open(%+v): err %v, want error %v", tt.opts, err, tt.wantErr)
		}
		if sp != nil {
			sp.Close()
		}
	}
	sp := mustOpen(t, t.TempDir(), Options{MaxBytes: 100, SegmentBytes: 50})
	if err := sp.Append(report(1, S)); err == nil {
		t.Error("Append of a report larger than MaxBytes succeeded")
	}
	if err := sp.Append(&sessionauditv1.Report{Sequence: 1}); err == nil {
		t.Error("Append of a report without content succeeded")
	}
	if _, err := sp.Peek(0, 0); err == nil {
		t.Error("Peek(0, 0) succeeded")
	}
}

func TestStateDamaged(t *testing.T) {
	dir := t.TempDir()
	sp := mustOpen(t, dir, Options{})
	appendRange(t, sp, 1, 10)
	if err := sp.Ack(4, 0); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	if err := os.WriteFile(filepath.Join(dir, stateName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	sp = mustOpen(t, dir, Options{})
	if got := peekAll(t, sp); !slices.Equal(got, span(1, 10)) {
		t.Fatalf("Peek = %v, want everything again", got)
	}
	if !sp.NeedsResync() || !sp.Stats().StateDamaged {
		t.Fatalf("NeedsResync %v, Stats %+v", sp.NeedsResync(), sp.Stats())
	}
}

// TestConcurrent runs a writer and a reader at once (run with -race).
func TestConcurrent(t *testing.T) {
	sp := mustOpen(t, t.TempDir(), Options{SegmentBytes: 2048})
	const n = 300
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := uint64(1); seq <= n; seq++ {
			if err := sp.Append(report(seq, D)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var got []uint64
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		reps, err := sp.Peek(7, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(reps) == 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		got = append(got, seqs(reps)...)
		if err := sp.Ack(reps[len(reps)-1].GetSequence(), 0); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if !slices.Equal(got, span(1, n)) {
		t.Fatalf("read %d reports, want 1..%d in order", len(got), n)
	}
}

func TestErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	sp := mustOpen(t, dir, Options{})
	appendRange(t, sp, 1, 3)
	for _, p := range segmentFiles(t, dir) {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	_, err := sp.Peek(10, 0)
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Peek of a removed segment: %v, want an error naming it", err)
	}
}

// TestBoundLoweredAtOpen: a spool reopened with a smaller bound drops its
// oldest segments at once and says so.
func TestBoundLoweredAtOpen(t *testing.T) {
	dir := t.TempDir()
	sp := mustOpen(t, dir, Options{MaxBytes: 1 << 20, SegmentBytes: 1024})
	appendRange(t, sp, 1, 100)
	sp.Close()
	opts := Options{MaxBytes: 2048, SegmentBytes: 1024}
	sp = mustOpen(t, dir, opts)
	if got := diskBytes(t, dir); got > opts.MaxBytes+opts.SegmentBytes {
		t.Fatalf("%d bytes on disk after Open with MaxBytes %d", got, opts.MaxBytes)
	}
	kept := peekAll(t, sp)
	d, _ := sp.Dropped()
	if len(kept) == 0 || d != uint64(100-len(kept)) || !sp.NeedsResync() || !slices.Equal(kept, span(kept[0], 100)) {
		t.Fatalf("kept %v, dropped %d, NeedsResync %v", kept, d, sp.NeedsResync())
	}
}

// TestAppendFailure: a failed write is reported with the file and offset,
// and the next Append goes to a new segment.
func TestAppendFailure(t *testing.T) {
	dir := t.TempDir()
	sp := mustOpen(t, dir, Options{})
	appendRange(t, sp, 1, 5)
	sp.active.Close() // every write to the segment now fails
	err := sp.Append(report(6, D))
	if err == nil || !strings.Contains(err.Error(), segmentFiles(t, dir)[0]) || !strings.Contains(err.Error(), "offset") {
		t.Fatalf("Append to a failing segment: %v, want an error naming the file and offset", err)
	}
	appendRange(t, sp, 6, 8)
	if n := len(segmentFiles(t, dir)); n != 2 {
		t.Fatalf("%d segments after a failed write, want 2", n)
	}
	sp.Close()
	sp = mustOpen(t, dir, Options{})
	if got := peekAll(t, sp); !slices.Equal(got, span(1, 8)) {
		t.Fatalf("after restart: %v", got)
	}
}

// TestOverflowBeforeSnapshotNeedsNoResync: dropping reports older than the
// newest Snapshot counts them but asks for no resync (the Snapshot
// supersedes them); otherwise a full spool would want a Snapshot after
// every Snapshot.
func TestOverflowBeforeSnapshotNeedsNoResync(t *testing.T) {
	sp := mustOpen(t, t.TempDir(), Options{MaxBytes: 4096, SegmentBytes: 1024})
	for seq := uint64(1); seq <= 100; seq++ {
		if err := sp.Append(report(seq, S)); err != nil {
			t.Fatal(err)
		}
		if sp.NeedsResync() {
			t.Fatalf("NeedsResync after Snapshot %d", seq)
		}
	}
	if d, _ := sp.Dropped(); d == 0 {
		t.Fatal("nothing dropped: the test did not overflow")
	}
}
