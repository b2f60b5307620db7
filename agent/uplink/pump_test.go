package uplink

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// runPump runs a Pump until the test ends.
func runPump(t *testing.T, c *Client, q *memQueue, opts PumpOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts.Notify = q.notify
	if opts.PollInterval == 0 {
		opts.PollInterval = time.Hour // idle: waits blocks until notified
	}
	go func() { done <- NewPump(c, q, opts).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	})
}

// TestPumpFailures: pushback with RetryInfo, RESOURCE_EXHAUSTED and a
// refused batch are each waited out as documented; the batch is kept
// throughout, and every report ends up stored exactly once, in order.
func TestPumpFailures(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	unavailable, _ := status.New(codes.Unavailable, "store slow").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(7 * time.Second)})
	fail := func(err error) func(*pb.IngestRequest) (*pb.IngestResponse, error) {
		return func(*pb.IngestRequest) (*pb.IngestResponse, error) { return nil, err }
	}
	f.script = []func(*pb.IngestRequest) (*pb.IngestResponse, error){
		fail(unavailable.Err()),
		fail(status.Error(codes.ResourceExhausted, "message too large")),
		fail(status.Error(codes.InvalidArgument, "reports[0] (sequence 1): snapshot.taken_at: in the future")),
		fail(status.Error(codes.PermissionDenied, "agent agent-1 is disabled")),
	}
	w := &waits{}
	c := newTestClient(t, f, clk, t.TempDir(), w)
	q := newMemQueue()
	q.Append(report(1, "S"), report(2, "D"), report(3, "D"), report(4, "H"), report(5, "D"))
	runPump(t, c, q, PumpOptions{MaxReports: 4})
	eventually(t, "all acknowledged", func() bool { return q.Acked() == 5 })

	stored, batches, _ := f.get()
	if !slices.Equal(stored, []uint64{1, 2, 3, 4, 5}) {
		t.Fatalf("stored %v, want 1..5 once each", stored)
	}
	// Same batch retried; halved after RESOURCE_EXHAUSTED; full again
	// after a success.
	want := [][]uint64{{1, 2, 3, 4}, {1, 2, 3, 4}, {1, 2}, {1, 2}, {1, 2}, {3, 4, 5}}
	if len(batches) != len(want) {
		t.Fatalf("batches %v, want %v", batches, want)
	}
	for i := range want {
		if !slices.Equal(batches[i], want[i]) {
			t.Fatalf("batches %v, want %v", batches, want)
		}
	}
	ds := w.all()
	if len(ds) < 4 {
		t.Fatalf("waits %v, want at least 4", ds)
	}
	if ds[0] < 7*time.Second || ds[0] > 7*time.Second+10*time.Millisecond {
		t.Errorf("wait after UNAVAILABLE with RetryInfo 7s: %v, want 7s plus at most the 10ms ceiling", ds[0])
	}
	if ds[1] > 20*time.Millisecond {
		t.Errorf("wait after RESOURCE_EXHAUSTED: %v, want under the second ceiling (20ms)", ds[1])
	}
	for i, what := range map[int]string{2: "refused batch", 3: "disabled agent"} {
		if ds[i] < 500*time.Millisecond || ds[i] > time.Second {
			t.Errorf("wait after %s: %v, want a long delay in [Max/2, Max] = [500ms, 1s]", what, ds[i])
		}
	}
}

// TestPumpResync: on resync_required the reports after the acknowledged
// one are dropped up to the next Snapshot, OnResync is called, and
// delivery goes on from the Snapshot.
func TestPumpResync(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	f.script = []func(*pb.IngestRequest) (*pb.IngestResponse, error){
		func(*pb.IngestRequest) (*pb.IngestResponse, error) {
			f.mu.Lock()
			f.stored, f.hwm = append(f.stored, 1), 1
			f.mu.Unlock()
			return &pb.IngestResponse{AcknowledgedSequence: 1, ResyncRequired: true}, nil
		},
	}
	c := newTestClient(t, f, clk, t.TempDir(), &waits{})
	q := newMemQueue()
	q.Append(report(1, "S"), report(2, "D"), report(3, "D"), report(4, "S"), report(5, "D"))
	var resyncs atomic.Int32
	runPump(t, c, q, PumpOptions{OnResync: func() { resyncs.Add(1) }})
	eventually(t, "all acknowledged", func() bool { return q.Acked() == 5 })
	stored, batches, _ := f.get()
	if !slices.Equal(stored, []uint64{1, 4, 5}) || resyncs.Load() != 1 {
		t.Fatalf("stored %v after %d resyncs (batches %v), want [1 4 5] after 1", stored, resyncs.Load(), batches)
	}
	if got := resyncDropPoint([]*pb.Report{report(3, "D"), report(4, "H")}, 2); got != 4 {
		t.Errorf("drop point of a batch without Snapshot = %d, want its last (4)", got)
	}
	// A later part of a snapshot in parts starts no chain: its first part does.
	part := func(seq uint64, k uint32) *pb.Report {
		r := report(seq, "S")
		r.GetSnapshot().Part, r.GetSnapshot().PartsTotal = k, 2
		return r
	}
	if got := resyncDropPoint([]*pb.Report{report(3, "D"), part(4, 2), part(5, 1), part(6, 2)}, 2); got != 4 {
		t.Errorf("drop point before a snapshot in parts = %d, want 4 (part 1 at 5 starts the chain)", got)
	}
}

// TestPumpWakesOnNotify: an idle Pump sends as soon as reports are
// appended, and honours the collector's min_interval between calls.
func TestPumpWakesOnNotify(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	f.script = []func(*pb.IngestRequest) (*pb.IngestResponse, error){
		func(req *pb.IngestRequest) (*pb.IngestResponse, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.stored, f.hwm = append(f.stored, 1), 1
			return &pb.IngestResponse{AcknowledgedSequence: 1, MinInterval: durationpb.New(90 * time.Second)}, nil
		},
	}
	w := &waits{}
	c := newTestClient(t, f, clk, t.TempDir(), w)
	q := newMemQueue()
	runPump(t, c, q, PumpOptions{})
	eventually(t, "the pump idles", func() bool { return slices.Contains(w.all(), time.Hour) })
	q.Append(report(1, "S"))
	eventually(t, "report 1 acknowledged", func() bool { return q.Acked() == 1 })
	q.Append(report(2, "D"))
	eventually(t, "report 2 acknowledged", func() bool { return q.Acked() == 2 })
	if !slices.Contains(w.all(), 90*time.Second) {
		t.Errorf("waits %v: min_interval 90s not honoured", w.all())
	}
}

// TestPumpRenewsExpiredCertificate: an agent that was off past its
// certificate's expiry renews by proof before delivering.
func TestPumpRenewsExpiredCertificate(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	c := newTestClient(t, f, clk, t.TempDir(), &waits{})
	if err := c.EnsureIdentity(context.Background()); err != nil {
		t.Fatal(err)
	}
	old := c.Identity()
	clk.Set(old.NotAfter.Add(72 * time.Hour))
	q := newMemQueue()
	q.Append(report(1, "S"))
	runPump(t, c, q, PumpOptions{})
	eventually(t, "report 1 acknowledged", func() bool { return q.Acked() == 1 })
	_, _, serials := f.get()
	if id := c.Identity(); id.AgentID != old.AgentID || len(serials) != 1 || serials[0] != id.Serial() || serials[0] == old.Serial() {
		t.Fatalf("delivered with serial %v; identity %s/%s, was %s", serials, id.AgentID, id.Serial(), old.Serial())
	}
	if len(f.enrolls) != 2 || len(f.enrolls[1].GetRenewalProof()) == 0 {
		t.Fatalf("second Enroll %v, want one by proof", f.enrolls)
	}
}
