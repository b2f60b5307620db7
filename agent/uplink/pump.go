package uplink

import (
	"context"
	"errors"
	"log/slog"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/grpc/codes"
)

// Queue is what the Pump needs of the spool; *spool.Spool implements it.
type Queue interface {
	// Peek returns the oldest unacknowledged reports, in sequence order, at
	// most maxReports and about maxBytes; none when all is acknowledged.
	// It removes nothing.
	Peek(maxReports, maxBytes int) ([]*pb.Report, error)
	// Dropped returns the reports (and bytes) dropped on overflow and not
	// yet reported to the collector.
	Dropped() (reports uint64, bytes int64)
	// Ack removes every report up to seq and records that the collector
	// received droppedReports.
	Ack(seq uint64, droppedReports uint64) error
}

// Defaults of PumpOptions.
const (
	// DefaultMaxReports is the most reports per batch: half the
	// collector's default limit (1000).
	DefaultMaxReports = 500
	// DefaultMaxBytes is about the most bytes of reports per batch: a
	// quarter of the collector's default message limit (4 MiB).
	DefaultMaxBytes = 1 << 20
	// DefaultPollInterval is how often the Pump looks at the queue when
	// nothing wakes it.
	DefaultPollInterval = time.Minute
)

// PumpOptions configure a Pump.
type PumpOptions struct {
	// MaxReports bounds a batch; default DefaultMaxReports.
	MaxReports int
	// MaxBytes bounds a batch's encoded reports (one report may exceed
	// it); default DefaultMaxBytes.
	MaxBytes int
	// PollInterval is how long the Pump sleeps on an empty queue when
	// Notify says nothing; default DefaultPollInterval.
	PollInterval time.Duration
	// Notify wakes the Pump when reports were appended (send without
	// blocking; a buffer of 1 is enough). Nil: poll only.
	Notify <-chan struct{}
	// OnResync is called when the collector asks for a Snapshot (the agent
	// calls its tracker's RequestResync). It must not block.
	OnResync func()
	// OnRenumber is called after the Pump moved a ChainQueue past the
	// collector's high-water mark (see ChainQueue): the agent's next report
	// must be a Snapshot numbered from the queue's NextSequence, the sooner
	// the better. It must not block. Nil: OnResync is called instead.
	OnRenumber func()
}

// Pump drives delivery from a Queue to the collector: peek a batch, send
// it, acknowledge what the collector acknowledged, repeat while there is
// data; wait with backoff after failures and for Notify or the poll
// interval when the queue is empty.
//
// What happens on each outcome:
//
//   - acknowledged: the queue drops the reports, the backoff resets, and
//     the next batch follows after the collector's min_interval (if any).
//   - resync_required: the reports after the acknowledged sequence cannot
//     be applied (their base is missing); the Pump drops them up to the
//     next Snapshot in the batch, or the whole batch if it holds none, and
//     calls OnResync so that the tracker sends a Snapshot.
//   - pushback (*PushbackError): retry the same batch after the
//     collector's RetryInfo plus jittered backoff. RESOURCE_EXHAUSTED also
//     halves the batch (a message too large), back to full after a success.
//   - refused (*RejectedError, INVALID_ARGUMENT): the collector stored none
//     of it. The batch stays in the queue (the protocol keeps refused
//     reports for an operator to see, and a newer collector may accept
//     them); the Pump logs an error naming the batch and the collector's
//     reason (report and field) and retries only after a long delay
//     (Backoff.Long, 2.5 to 5 minutes by default). Delivery is stuck
//     behind it until the collector accepts it or the spool overflows.
//   - identity refused (*AuthError): logged as an error; EnsureIdentity,
//     called before every attempt, renews an expired certificate by proof
//     or enrolls again; a disabled agent retries after long delays.
//   - anything else (collector down, connection lost, deadline): retry with
//     backoff.
type Pump struct {
	c       *Client
	q       Queue
	chain   ChainQueue // q, when it is one
	opts    PumpOptions
	backoff *Backoff
	log     *slog.Logger
}

// NewPump returns a Pump delivering q's reports through c.
func NewPump(c *Client, q Queue, opts PumpOptions) *Pump {
	if opts.MaxReports <= 0 {
		opts.MaxReports = DefaultMaxReports
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	chain, _ := q.(ChainQueue)
	return &Pump{c: c, q: q, chain: chain, opts: opts, backoff: NewBackoff(c.opts.Backoff, c.opts.Rand), log: c.log}
}

// wait blocks for d, or until ctx is done (returning its error), or, with
// wake, until Notify fires.
func (p *Pump) wait(ctx context.Context, d time.Duration, wake bool) error {
	var notify <-chan struct{}
	if wake {
		notify = p.opts.Notify
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.c.opts.After(d):
	case <-notify:
	}
	return nil
}

// retry logs a failed step and waits its backoff; it returns ctx's error
// if ctx ended meanwhile.
func (p *Pump) retry(ctx context.Context, d time.Duration, msg string, args ...any) error {
	args = append(args, "attempt", p.backoff.Attempt(), "retry_in", d.Round(time.Millisecond),
		"next_retry", p.c.opts.Clock.Now().Add(d).UTC().Format(time.RFC3339))
	p.log.Warn(msg, args...)
	return p.wait(ctx, d, false)
}

// Run delivers until ctx is done, then returns ctx's error. Failures are
// logged and retried, never returned.
func (p *Pump) Run(ctx context.Context) error {
	maxReports := p.opts.MaxReports
	var minInterval time.Duration
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := p.c.EnsureIdentity(ctx); err != nil {
			if err := p.retry(ctx, p.delayFor(err), "uplink: no usable agent identity; reports stay spooled", "err", err); err != nil {
				return err
			}
			continue
		}
		_, _ = p.c.MaybeRenew(ctx) // logs its failures; the current certificate is still valid
		reports, err := p.q.Peek(maxReports, p.opts.MaxBytes)
		if err != nil {
			if err := p.retry(ctx, p.backoff.Next(0), "uplink: cannot read the spool", "err", err); err != nil {
				return err
			}
			continue
		}
		if len(reports) == 0 {
			if err := p.wait(ctx, max(p.opts.PollInterval, minInterval), true); err != nil {
				return err
			}
			continue
		}
		dropped, _ := p.q.Dropped()
		first, last := reports[0].GetSequence(), reports[len(reports)-1].GetSequence()
		agent := p.agentID()
		batch, numbered := p.batch(reports, dropped)
		ack, err := p.c.SendBatch(ctx, batch)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pe, ok := errors.AsType[*PushbackError](err); ok && pe.Code == codes.ResourceExhausted {
				maxReports = max(1, maxReports/2)
			}
			if err := p.failed(ctx, err, agent, first, last, len(reports)); err != nil {
				return err
			}
			continue
		}
		maxReports = p.opts.MaxReports
		minInterval = ack.MinInterval
		if moved, err := p.behind(ctx, ack, numbered, agent, first, last); moved || err != nil {
			if err != nil {
				return err
			}
			continue
		}
		upTo := ack.Sequence
		if ack.ResyncRequired {
			upTo = resyncDropPoint(reports, ack.Sequence)
			p.log.Warn("uplink: collector requires a resync: dropping reports that cannot be applied and requesting a snapshot",
				"agent", agent, "acknowledged", ack.Sequence, "dropped_through", upTo, "batch_first", first, "batch_last", last)
			if p.opts.OnResync != nil {
				p.opts.OnResync()
			}
		}
		if upTo < last && !ack.ResyncRequired {
			// The collector guarantees all or nothing: a short answer
			// without resync is a collector bug; do not spin on it.
			if err := p.q.Ack(upTo, dropped); err != nil {
				p.log.Error("uplink: cannot record the acknowledgement in the spool", "agent", agent, "acknowledged", upTo, "err", err)
			}
			if err := p.retry(ctx, p.backoff.Next(0), "uplink: collector acknowledged only part of a batch",
				"agent", agent, "batch_first", first, "batch_last", last, "acknowledged", ack.Sequence); err != nil {
				return err
			}
			continue
		}
		if err := p.q.Ack(upTo, dropped); err != nil {
			// The collector has them. The spool keeps the acknowledgement
			// in memory (they are not sent again) and records it at its
			// next write; a restart before that sends them again, and the
			// collector acknowledges them again (stored once).
			p.log.Error("uplink: cannot record the acknowledgement in the spool", "agent", agent, "acknowledged", upTo, "err", err)
		}
		p.backoff.Reset()
		p.log.Debug("uplink: batch delivered", "agent", agent, "first", first, "last", last, "reports", len(reports),
			"acknowledged", ack.Sequence, "dropped_reports", dropped)
		if minInterval > 0 {
			if err := p.wait(ctx, minInterval, false); err != nil {
				return err
			}
		}
	}
}

func (p *Pump) agentID() string {
	if id := p.c.Identity(); id != nil {
		return id.AgentID
	}
	return ""
}

// delayFor returns the backoff after err.
func (p *Pump) delayFor(err error) time.Duration {
	var ae *AuthError
	if errors.As(err, &ae) && ae.Op != "enroll" {
		return p.backoff.Long()
	}
	return p.backoff.Next(retryFloor(err))
}

// failed logs a failed Send as what it is and waits before the retry.
func (p *Pump) failed(ctx context.Context, err error, agent string, first, last uint64, n int) error {
	batch := []any{"agent", agent, "batch_first", first, "batch_last", last, "reports", n}
	var (
		pe *PushbackError
		re *RejectedError
		ae *AuthError
	)
	switch {
	case errors.As(err, &pe):
		return p.retry(ctx, p.backoff.Next(pe.RetryAfter), "uplink: collector pushed back; batch kept",
			append(batch, "code", pe.Code.String(), "retry_after", pe.RetryAfter, "err", err)...)
	case errors.As(err, &re):
		d := p.backoff.Long()
		p.log.Error("uplink: collector REFUSED a batch as invalid; it stays in the spool and is retried after a long delay",
			append(batch, "reason", re.Message, "retry_in", d.Round(time.Second))...)
		return p.wait(ctx, d, false)
	case errors.As(err, &ae):
		// An expired certificate (UNAUTHENTICATED) is EnsureIdentity's to
		// fix at the next attempt: retry with the usual backoff. A disabled
		// agent or superseded certificate needs an administrator: wait long.
		var d time.Duration
		if ae.Code == codes.Unauthenticated {
			d = p.backoff.Next(0)
		} else {
			d = p.backoff.Long()
		}
		p.log.Error("uplink: collector REFUSED the agent's identity; reports stay spooled",
			append(batch, "code", ae.Code.String(), "err", err, "retry_in", d.Round(time.Millisecond))...)
		return p.wait(ctx, d, false)
	default:
		return p.retry(ctx, p.backoff.Next(0), "uplink: batch not delivered; will retry", append(batch, "err", err)...)
	}
}

// resyncDropPoint returns the sequence up to which the queue may drop
// reports after a resync_required answer that acknowledged acked: the
// reports after acked cannot be applied up to the next Snapshot, which
// starts a new chain (a snapshot in parts starts it at its first part).
// Without a Snapshot in the batch, all of it.
func resyncDropPoint(reports []*pb.Report, acked uint64) uint64 {
	upTo := acked
	for _, r := range reports {
		if r.GetSequence() <= acked {
			continue
		}
		if r.GetSnapshot() != nil && r.GetSnapshot().GetPart() <= 1 {
			return upTo
		}
		upTo = r.GetSequence()
	}
	return upTo
}
