package uplink

import (
	"context"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// ChainQueue is a Queue that numbers its reports within an incarnation, as
// *spool.Spool does. The Pump sends the incarnation with every batch
// (Batch.incarnation), so that the collector tells a new spool from a replay
// of an old one; and when the collector acknowledges a sequence above every
// one the queue has numbered, it holds reports of this incarnation the
// queue no longer has (the spool was restored from an older copy, a VM
// snapshot say, or lost and made again): the reports the queue holds, and
// those it would number next, would be taken for duplicates. The Pump then
// moves the queue past the acknowledged sequence (Rebase), so that the
// agent's next report, a Snapshot, is numbered above it.
type ChainQueue interface {
	Queue
	// Incarnation returns the queue's incarnation; 0 for none.
	Incarnation() uint64
	// NextSequence returns one above every sequence the queue has numbered
	// or acknowledged.
	NextSequence() uint64
	// Rebase drops every report held (counting them in Dropped) and moves
	// NextSequence above floor; it returns how many it dropped.
	Rebase(floor uint64) (dropped uint64, err error)
}

// batch makes the batch of reports, with the queue's incarnation, and
// returns it with the sequence the queue would number next as it is sent:
// the collector cannot have stored a report of this incarnation numbered
// at or above it, unless the queue went back (see behind). Without a
// ChainQueue, numbered is 0.
func (p *Pump) batch(reports []*pb.Report, dropped uint64) (b *pb.Batch, numbered uint64) {
	b = &pb.Batch{Reports: reports, DroppedReports: dropped}
	if p.chain != nil {
		b.Incarnation = p.chain.Incarnation()
		numbered = p.chain.NextSequence()
	}
	return b, numbered
}

// behind handles an acknowledgement at or above numbered, the sequence the
// queue would have numbered next when the batch was sent: the collector
// stored reports of this incarnation that the queue never sent from its
// present state. It moves the queue past the acknowledged sequence and
// calls OnRenumber (or OnResync), and reports whether it did; err is ctx's
// error if ctx ended while it waited after a failure.
func (p *Pump) behind(ctx context.Context, ack Ack, numbered uint64, agent string, first, last uint64) (moved bool, err error) {
	if p.chain == nil || numbered == 0 || ack.Sequence < numbered {
		return false, nil
	}
	dropped, err := p.chain.Rebase(ack.Sequence)
	if err != nil {
		return true, p.retry(ctx, p.backoff.Next(0), "uplink: the collector holds newer reports of this agent than its spool, "+
			"and the spool cannot be moved past them; retrying", "agent", agent, "acknowledged", ack.Sequence,
			"spool_next_sequence", numbered, "err", err)
	}
	p.log.Warn("uplink: the collector holds reports of this agent up to a sequence its spool never reached: "+
		"the spool was restored from an older copy (a VM snapshot?) or lost; its unacknowledged reports would be "+
		"taken for duplicates, so they are dropped and the next report, a full snapshot, is numbered above the collector's",
		"agent", agent, "acknowledged", ack.Sequence, "spool_next_sequence", numbered, "dropped_reports", dropped,
		"batch_first", first, "batch_last", last, "incarnation", p.chain.Incarnation())
	p.backoff.Reset()
	switch {
	case p.opts.OnRenumber != nil:
		p.opts.OnRenumber()
	case p.opts.OnResync != nil:
		p.opts.OnResync()
	}
	return true, nil
}
