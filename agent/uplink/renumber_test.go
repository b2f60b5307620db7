package uplink

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// chainQueue is a memQueue with an incarnation and Rebase, as the spool has.
type chainQueue struct {
	*memQueue
	incarnation uint64
}

func (q *chainQueue) Incarnation() uint64 { return q.incarnation }

func (q *chainQueue) NextSequence() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	next := q.acked
	for _, r := range q.reports {
		next = max(next, r.GetSequence())
	}
	return next + 1
}

func (q *chainQueue) Rebase(floor uint64) (uint64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var n uint64
	for _, r := range q.reports {
		if r.GetSequence() > q.acked {
			n++
		}
	}
	q.acked = max(q.acked, floor)
	q.dropped += n
	return n, nil
}

func runChainPump(t *testing.T, c *Client, q *chainQueue, opts PumpOptions) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	opts.Notify, opts.PollInterval = q.notify, time.Hour
	go func() { done <- NewPump(c, q, opts).Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// TestPumpRenumbersBehindCollector: the collector acknowledges 100, above
// every sequence the queue numbered (its spool was restored from an older
// copy, or lost under the same incarnation): the reports held would be
// taken for duplicates, so the Pump moves the queue past 100 and calls
// OnRenumber; the next report, 101, is stored. Every batch carries the
// queue's incarnation.
func TestPumpRenumbersBehindCollector(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	f.hwm = 100
	var incarnations []uint64
	record := func(req *pb.IngestRequest) (*pb.IngestResponse, error) {
		f.mu.Lock()
		incarnations = append(incarnations, req.GetBatch().GetIncarnation())
		f.mu.Unlock()
		return nil, nil
	}
	f.script = []func(*pb.IngestRequest) (*pb.IngestResponse, error){record, record}
	c := newTestClient(t, f, clk, t.TempDir(), &waits{})
	q := &chainQueue{memQueue: newMemQueue(), incarnation: 0xabc}
	q.Append(report(1, "S"), report(2, "H"), report(3, "D"))
	var renumbers, resyncs atomic.Int32
	runChainPump(t, c, q, PumpOptions{OnRenumber: func() { renumbers.Add(1) }, OnResync: func() { resyncs.Add(1) }})
	eventually(t, "the queue moved past 100", func() bool { return q.NextSequence() == 101 })
	if renumbers.Load() != 1 || resyncs.Load() != 0 {
		t.Errorf("OnRenumber called %d times, OnResync %d; want 1, 0", renumbers.Load(), resyncs.Load())
	}
	if d, _ := q.Dropped(); d != 3 {
		t.Errorf("dropped %d; want the 3 reports held", d)
	}
	q.Append(report(101, "S"))
	eventually(t, "101 acknowledged", func() bool { return q.Acked() == 101 })
	stored, batches, _ := f.get()
	if !slices.Equal(stored, []uint64{101}) {
		t.Errorf("stored %v (batches %v); want [101]", stored, batches)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Equal(incarnations, []uint64{0xabc, 0xabc}) {
		t.Errorf("batch incarnations %v; want 0xabc on each", incarnations)
	}
}

// TestPumpRetryAboveBatchIsNoRenumber: an acknowledgement above the batch
// but not above what the queue numbered is a lost response followed by a
// smaller retry, not a collector ahead of the queue.
func TestPumpRetryAboveBatchIsNoRenumber(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	f.script = []func(*pb.IngestRequest) (*pb.IngestResponse, error){
		func(*pb.IngestRequest) (*pb.IngestResponse, error) {
			f.mu.Lock()
			f.stored, f.hwm = append(f.stored, 1, 2, 3, 4), 4
			f.mu.Unlock()
			return nil, status.Error(codes.ResourceExhausted, "stored, but the response was lost")
		},
	}
	c := newTestClient(t, f, clk, t.TempDir(), &waits{})
	q := &chainQueue{memQueue: newMemQueue(), incarnation: 7}
	q.Append(report(1, "S"), report(2, "H"), report(3, "D"), report(4, "H"))
	var renumbers atomic.Int32
	runChainPump(t, c, q, PumpOptions{MaxReports: 4, OnRenumber: func() { renumbers.Add(1) }})
	eventually(t, "all acknowledged", func() bool { return q.Acked() == 4 })
	_, batches, _ := f.get()
	if len(batches) != 2 || !slices.Equal(batches[1], []uint64{1, 2}) {
		t.Fatalf("batches %v; want [1..4] then the halved retry [1 2]", batches)
	}
	if renumbers.Load() != 0 || q.NextSequence() != 5 {
		t.Errorf("renumbered %d times, next %d (batches %v); want none, 5", renumbers.Load(), q.NextSequence(), batches)
	}
	if d, _ := q.Dropped(); d != 0 {
		t.Errorf("dropped %d; want 0", d)
	}
}
