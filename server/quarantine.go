package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/store"
	"google.golang.org/protobuf/proto"
)

// Quarantine of batches that keep failing (docs/design/0004-collector.md,
// "Batches that keep failing"). An agent resends its oldest unacknowledged
// reports until the collector acknowledges them, so a batch the store fails
// every time would stop its host's history for good. The collector counts
// the store's failures of a batch in the store (it keeps no state between
// calls; store.RecordIngestFailure) and, once the batch has failed
// QuarantineAfterFailures times over at least QuarantineMinSpan, while the
// store commits other batches, sets it aside (store.QuarantineBatch): its
// reports are kept as they came, acknowledged without being applied, the
// host gets a coverage gap, and the agent is asked for a Snapshot.

// Defaults of the quarantine.
const (
	// DefaultQuarantineAfterFailures is how many failed store writes of
	// one batch (counted from its first report) quarantine it.
	DefaultQuarantineAfterFailures = 5
	// DefaultQuarantineMinSpan is how long a batch must have been failing,
	// at least, before it is quarantined: long enough for a store that is
	// briefly slow or restarting to come back first.
	DefaultQuarantineMinSpan = 10 * time.Minute
	// quarantineTimeout bounds recording a failure and quarantining: the
	// store call's own deadline may have passed already.
	quarantineTimeout = 5 * time.Second
)

// storeCommitted records that the store committed a batch: the store
// works, for the quarantine's check that a failing batch is not the store
// failing everything.
func (s *Server) storeCommitted() { s.lastCommit.Store(s.cfg.Now().UnixNano()) }

// quarantineIfStuck is called after the store failed to ingest reports
// (cause: an error or the ingest timeout, not a pushback or the caller
// giving up). It records the failure and, when the batch has failed often
// and long enough while the store committed other batches, quarantines it
// and returns the answer to send: the reports acknowledged, and a resync
// so that the agent's next report is a Snapshot. Otherwise (or if the
// store cannot be reached to record it) it returns false and the caller
// pushes back as usual.
func (s *Server) quarantineIfStuck(ctx context.Context, log *slog.Logger, a agentCaller, b *pb.Batch, reports []store.Report, cause error) (*pb.IngestResponse, bool) {
	n := s.cfg.QuarantineAfterFailures
	if n < 0 || len(reports) == 0 {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), quarantineTimeout)
	defer cancel()
	now := s.cfg.Now()
	first, last := reports[0].Sequence, reports[len(reports)-1].Sequence
	f, err := s.store.RecordIngestFailure(ctx, store.IngestFailure{AgentID: a.AgentID, Incarnation: b.GetIncarnation(),
		FirstSequence: first, LastSequence: last, LastFailedAt: now, LastError: cause.Error()})
	if err != nil {
		log.Warn("cannot record the batch's store failure (for its quarantine)", "first_sequence", first, "err", err)
		return nil, false
	}
	switch {
	case f.Failures < n:
		return nil, false
	case now.Sub(f.FirstFailedAt) < s.cfg.QuarantineMinSpan:
		log.Warn("batch keeps failing in the store; it will be quarantined if it still fails after the minimum span",
			"first_sequence", first, "last_sequence", last, "failures", f.Failures, "failing_since", f.FirstFailedAt,
			"quarantine_from", f.FirstFailedAt.Add(s.cfg.QuarantineMinSpan))
		return nil, false
	case time.Unix(0, s.lastCommit.Load()).Before(f.PreviousFailedAt):
		// Nothing committed on this collector since the batch's previous
		// failure: the store may be failing everything. Not this batch's
		// fault; keep pushing back.
		log.Warn("batch keeps failing in the store, but no other batch was committed since its previous failure: not quarantined",
			"first_sequence", first, "last_sequence", last, "failures", f.Failures, "failing_since", f.FirstFailedAt)
		return nil, false
	}
	// The reports up to the next Snapshot: those after it do not depend on
	// the quarantined ones and get their own chance.
	k := quarantinePrefix(reports)
	raw, err := proto.Marshal(&pb.Batch{Reports: b.GetReports()[:k], DroppedReports: b.GetDroppedReports(),
		SentAt: b.GetSentAt(), Incarnation: b.GetIncarnation()})
	if err != nil {
		log.Error("cannot encode a batch to quarantine it", "err", err)
		return nil, false
	}
	res, err := s.store.QuarantineBatch(ctx, store.QuarantinedBatch{AgentID: a.AgentID, MachineGUID: a.MachineGUID,
		Incarnation: b.GetIncarnation(), Reports: reports[:k], Raw: raw, Failures: f.Failures,
		FirstFailedAt: f.FirstFailedAt, LastError: cause.Error()})
	if err != nil {
		log.Error("cannot quarantine a batch that keeps failing", "first_sequence", first, "err", err)
		return nil, false
	}
	if res.ID == 0 {
		// Stored meanwhile through another collector: acknowledge it.
		log.Info("batch that kept failing is stored already", "first_sequence", first, "acknowledged", res.Acknowledged)
		return s.ingestResponse(res.Acknowledged, false), true
	}
	s.metrics.batches.WithLabelValues(resultQuarantined).Inc()
	s.metrics.quarantined.Inc()
	kinds := make(map[uint64]store.ReportKind, k)
	for _, r := range reports[:k] {
		kinds[r.Sequence] = r.Kind
	}
	for q := res.FirstSequence; q <= res.LastSequence; q++ {
		if kind, ok := kinds[q]; ok {
			s.metrics.reports.WithLabelValues(kind.String(), outcomeQuarantined).Inc()
		}
	}
	args := []any{"agent", a.AgentID, "machine_guid", a.MachineGUID, "quarantine_id", res.ID,
		"first_sequence", res.FirstSequence, "last_sequence", res.LastSequence, "reports", k,
		"failures", f.Failures, "failing_since", f.FirstFailedAt.Format(time.RFC3339), "err", cause}
	if g := res.Gap; g != nil {
		s.metrics.coverageGaps.WithLabelValues(string(g.Reason)).Inc()
		args = append(args, "host", g.Host.Hostname, "gap_start", g.StartTime.Format(time.RFC3339), "gap_end", g.EndTime.Format(time.RFC3339))
	}
	log.Error(fmt.Sprintf("ALERT batch quarantined after %d failed store writes: its reports are acknowledged without being stored "+
		"(kept in quarantined_batch); the host's history has a coverage gap until its next snapshot", f.Failures), args...)
	return s.ingestResponse(res.Acknowledged, true), true
}

// quarantinePrefix returns how many of reports to quarantine: all of them
// up to the first Snapshot after the first report.
func quarantinePrefix(reports []store.Report) int {
	for i := 1; i < len(reports); i++ {
		if reports[i].Kind == store.KindSnapshot {
			return i
		}
	}
	return len(reports)
}
