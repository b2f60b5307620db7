package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Quarantine (docs/design/0002-storage.md and 0004-collector.md, "Batches
// that keep failing"): an agent resends its oldest unacknowledged reports
// until the collector acknowledges them, so a batch the store fails to
// ingest every time (an error, or the collector's ingest timeout) would
// stop its host's history for good. The collector counts the failures here
// (RecordIngestFailure: it keeps no state between calls, and the agent may
// reach another collector) and, after enough of them, quarantines the batch
// (QuarantineBatch): its reports are kept as they came, acknowledged
// without being applied, and the host's history gets a coverage gap for
// them, which the agent's next complete Snapshot settles.

// GapQuarantined is the reason of a coverage gap left by a quarantined
// batch.
const GapQuarantined GapReason = "quarantined"

// IngestFailure is the batch an agent is stuck on: the store failed every
// call that started at FirstSequence (of Incarnation).
type IngestFailure struct {
	AgentID     string
	Incarnation uint64
	// FirstSequence is the first report of the calls; LastSequence the last
	// report of the latest one (the batch may grow between attempts).
	FirstSequence, LastSequence uint64
	// Failures counts the failed calls, FirstFailedAt the first of them,
	// LastFailedAt the latest; PreviousFailedAt is the one before the
	// latest (zero for the first failure). Times are the caller's clock.
	Failures                                      int
	FirstFailedAt, PreviousFailedAt, LastFailedAt time.Time
	// LastError is the latest failure's error.
	LastError string
}

// RecordIngestFailure records that a call of f.AgentID carrying reports
// f.FirstSequence..f.LastSequence of f.Incarnation failed at f.LastFailedAt
// with f.LastError, and returns the count so far: one more when the agent's
// previous failure started at the same report of the same incarnation, else
// 1 (the agent got past the earlier one). f.Failures, FirstFailedAt and
// PreviousFailedAt are ignored. The agent's row must exist (the collector
// authenticated it).
func (s *Store) RecordIngestFailure(ctx context.Context, f IngestFailure) (IngestFailure, error) {
	if err := validKey("agentID", f.AgentID); err != nil {
		return f, err
	}
	if f.FirstSequence == 0 || f.LastSequence < f.FirstSequence || f.LastSequence > 1<<63-1 {
		return f, &FieldError{Field: "FirstSequence", Reason: fmt.Sprintf("%d..%d is not a range of sequences", f.FirstSequence, f.LastSequence)}
	}
	var prev *time.Time
	err := s.pool.QueryRow(ctx, `
		WITH prev AS (SELECT last_failed_at FROM ingest_failure
			WHERE agent_id = $1 AND first_sequence = $3 AND incarnation IS NOT DISTINCT FROM $2)
		INSERT INTO ingest_failure AS f (agent_id, incarnation, first_sequence, last_sequence, failures,
			first_failed_at, last_failed_at, last_error)
		VALUES ($1, $2, $3, $4, 1, $5, $5, $6)
		ON CONFLICT (agent_id) DO UPDATE SET
			failures = CASE WHEN f.first_sequence = excluded.first_sequence AND f.incarnation IS NOT DISTINCT FROM excluded.incarnation
				THEN f.failures + 1 ELSE 1 END,
			first_failed_at = CASE WHEN f.first_sequence = excluded.first_sequence AND f.incarnation IS NOT DISTINCT FROM excluded.incarnation
				THEN f.first_failed_at ELSE excluded.first_failed_at END,
			incarnation = excluded.incarnation, first_sequence = excluded.first_sequence,
			last_sequence = excluded.last_sequence, last_failed_at = excluded.last_failed_at, last_error = excluded.last_error
		RETURNING f.failures, f.first_failed_at, (SELECT last_failed_at FROM prev)`,
		f.AgentID, incarnationParam(f.Incarnation), int64(f.FirstSequence), int64(f.LastSequence), f.LastFailedAt, f.LastError).
		Scan(&f.Failures, &f.FirstFailedAt, &prev)
	if err != nil {
		return f, fmt.Errorf("store: record an ingest failure of agent %q: %w", f.AgentID, err)
	}
	f.FirstFailedAt = f.FirstFailedAt.UTC()
	f.PreviousFailedAt = time.Time{}
	if prev != nil {
		f.PreviousFailedAt = prev.UTC()
	}
	return f, nil
}

// QuarantinedBatch is a batch to set aside: the reports the store failed
// to ingest, as the collector received them.
type QuarantinedBatch struct {
	AgentID, MachineGUID string
	Incarnation          uint64
	// Reports are the reports quarantined, in sequence order (their
	// content is not read: only Sequence and TakenAt).
	Reports []Report
	// Raw is the reports as received (a protobuf Batch), kept for
	// inspection and replay.
	Raw []byte
	// Failures, FirstFailedAt and LastError are the record of the failures
	// (RecordIngestFailure).
	Failures      int
	FirstFailedAt time.Time
	LastError     string
}

// QuarantineResult says what QuarantineBatch did.
type QuarantineResult struct {
	// ID names the quarantined_batch row; 0 when nothing was quarantined
	// because the store had every report already.
	ID int64
	// FirstSequence..LastSequence are the reports quarantined (those above
	// the agent's high-water mark).
	FirstSequence, LastSequence uint64
	// Acknowledged is the agent's high-water mark afterwards.
	Acknowledged uint64
	// Gap is the coverage gap recorded; nil when the host had no history
	// yet (nothing to have a gap in) or nothing was quarantined.
	Gap *CoverageGap
}

// QuarantineBatch sets q's reports aside, in one transaction under the
// host's lock (as Ingest takes it): the reports above the agent's
// high-water mark are stored whole in quarantined_batch and acknowledged
// (the mark moves past them, as if applied) without being applied; the
// agent's stored state stays the last one applied, so that its next Delta
// or Heartbeat based on a quarantined report asks for a resync; the host's
// state becomes unsettled and a coverage gap (GapQuarantined) runs from
// its last observation to the last quarantined report's, until the next
// complete Snapshot settles it (gaps.go); a note names the reports in
// ingest_note; the agent's failure record is deleted. A new incarnation in
// q starts the agent's chain again, as Ingest would.
func (s *Store) QuarantineBatch(ctx context.Context, q QuarantinedBatch) (QuarantineResult, error) {
	var res QuarantineResult
	guid, err := validMachineGUID("machineGUID", q.MachineGUID)
	if err != nil {
		return res, err
	}
	if err := validKey("agentID", q.AgentID); err != nil {
		return res, err
	}
	if len(q.Reports) == 0 {
		return res, &FieldError{Field: "Reports", Reason: "no report to quarantine"}
	}
	for i, r := range q.Reports {
		if r.Sequence == 0 || r.Sequence > 1<<63-1 || (i > 0 && r.Sequence <= q.Reports[i-1].Sequence) {
			return res, &FieldError{Sequence: r.Sequence, Field: "Reports", Reason: "sequences must be positive, increasing and fit in a bigint"}
		}
	}
	if q.Raw == nil {
		q.Raw = []byte{}
	}
	now := s.now()
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("store: quarantine a batch of host %s: acquire a connection: %w", guid, err)
	}
	defer pc.Release()
	tx := pc.Conn()
	committed := false
	defer func() {
		if !committed {
			_, _ = tx.Exec(context.Background(), "ROLLBACK")
		}
	}()
	fail := func(err error) (QuarantineResult, error) {
		return QuarantineResult{}, fmt.Errorf("store: quarantine a batch of host %s agent %q: %w", guid, q.AgentID, err)
	}
	st, err := loadState(ctx, tx, q.AgentID, guid, now, false)
	if err != nil {
		return fail(err)
	}
	notes := st.adoptIncarnation(q.Incarnation, q.Reports[0].Sequence, now)
	var held []Report
	for _, r := range q.Reports {
		if r.Sequence > st.hwm {
			held = append(held, r)
		}
	}
	if len(held) == 0 {
		// Stored meanwhile (another collector got through): nothing to set
		// aside. Nothing was written either.
		res.Acknowledged = st.hwm
		return res, nil
	}
	first, last := held[0], held[len(held)-1]
	lastTaken := first.TakenAt
	for _, r := range held {
		lastTaken = maxTime(lastTaken, r.TakenAt)
	}
	if !st.lastSeen.IsZero() {
		st.gaps = append(st.gaps, CoverageGap{
			Host:    HostRef{MachineGUID: guid, Hostname: st.facts.Hostname, Domain: st.facts.Domain},
			AgentID: q.AgentID, Reason: GapQuarantined, StartTime: st.lastSeen, EndTime: maxTime(st.lastSeen, lastTaken),
			FirstSequence: first.Sequence, LastSequence: last.Sequence,
		})
	}
	st.openGap()
	st.hwm, st.appliedTakenAt = last.Sequence, last.TakenAt
	notes = append(notes, Note{Sequence: first.Sequence, Field: "Batch", Change: fmt.Sprintf(
		"reports %d..%d (%d) quarantined after %d failed attempts since %s, not applied: %s",
		first.Sequence, last.Sequence, len(held), q.Failures, q.FirstFailedAt.UTC().Format(time.RFC3339), q.LastError)})

	b := &pgx.Batch{}
	if err := st.queueHostAndAgent(b, q.AgentID); err != nil {
		return fail(err)
	}
	queueNotes(b, now, st.hostID, q.AgentID, notes)
	st.queueGaps(b, q.AgentID, now)
	b.Queue(`INSERT INTO quarantined_batch (host_id, agent_id, incarnation, first_sequence, last_sequence, reports,
			first_taken_at, last_taken_at, failures, first_failed_at, last_error, batch, quarantined_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id`,
		st.hostID, q.AgentID, incarnationParam(q.Incarnation), int64(first.Sequence), int64(last.Sequence), len(held),
		first.TakenAt, lastTaken, q.Failures, q.FirstFailedAt, q.LastError, q.Raw, now).
		QueryRow(func(row pgx.Row) error { return row.Scan(&res.ID) })
	b.Queue(`DELETE FROM ingest_failure WHERE agent_id = $1`, q.AgentID)
	b.Queue("COMMIT")
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fail(err)
	}
	committed = true
	res.FirstSequence, res.LastSequence, res.Acknowledged = first.Sequence, last.Sequence, st.hwm
	if len(st.gaps) > 0 {
		g := st.gaps[0]
		res.Gap = &g
	}
	return res, nil
}
