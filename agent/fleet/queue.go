package fleet

import (
	"sync"

	"google.golang.org/protobuf/proto"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// Queue is an agent's reports waiting for the collector's acknowledgement,
// in memory: the uplink.Queue contract without the spool's disk (see the
// package comment for why). It is safe for concurrent use.
type Queue struct {
	mu      sync.Mutex
	reports []*pb.Report
	acked   uint64
	notify  chan struct{}
}

// NewQueue returns an empty Queue.
func NewQueue() *Queue { return &Queue{notify: make(chan struct{}, 1)} }

// Append queues r and wakes the pump.
func (q *Queue) Append(r *pb.Report) {
	q.mu.Lock()
	q.reports = append(q.reports, r)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// Notify is the channel for uplink.PumpOptions.Notify.
func (q *Queue) Notify() <-chan struct{} { return q.notify }

// Peek returns the oldest unacknowledged reports: at most maxReports, and
// no more than about maxBytes (at least one).
func (q *Queue) Peek(maxReports, maxBytes int) ([]*pb.Report, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*pb.Report
	size := 0
	for _, r := range q.reports {
		if len(out) == maxReports {
			break
		}
		n := proto.Size(r)
		if len(out) > 0 && size+n > maxBytes {
			break
		}
		size += n
		out = append(out, r)
	}
	return out, nil
}

// Dropped returns zeros: the queue never drops reports.
func (q *Queue) Dropped() (uint64, int64) { return 0, 0 }

// Ack removes every report up to seq.
func (q *Queue) Ack(seq uint64, _ uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := 0
	for i < len(q.reports) && q.reports[i].GetSequence() <= seq {
		i++
	}
	q.reports = q.reports[i:]
	if seq > q.acked {
		q.acked = seq
	}
	return nil
}

// Pending returns how many reports wait for an acknowledgement.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.reports)
}

// Acknowledged returns the highest sequence the collector acknowledged.
func (q *Queue) Acknowledged() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.acked
}
