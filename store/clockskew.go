package store

import (
	"context"
	"fmt"
	"time"
)

// Host clocks far ahead of the collector's (docs/design/0002-storage.md,
// "Clocks ahead of the collector"). A report stamped more than MaxClockSkew
// ahead of the store's clock is stored, not refused (refusing it kept it at
// the head of the agent's spool and blocked the host's delivery for good),
// with a corrected TakenAt and a note. The host's clock skew, which the
// collector measures on every batch (Batch.sent_at), is recorded on the
// host row by RecordClockSkew and listed by Hosts.

// aheadTakenAt returns the TakenAt the store keeps for a report stamped t,
// more than MaxClockSkew after now, the store's clock when the batch
// arrived:
//
//   - t minus skew, the host's clock skew measured on the batch, when that
//     skew is positive: what the collector's clock said when the host's
//     said t, if the host's clock was as far ahead then as when it sent the
//     batch (a clock set an hour or more ahead usually stays so until
//     someone fixes it, and a backlog keeps its spacing);
//   - never after now: a report cannot have been taken after it arrived (a
//     clock fixed before the batch was sent measures no skew, and its
//     earlier reports, stamped ahead, can only be placed at their arrival);
//   - after prev, the clean TakenAt of the report before it in the batch
//     (zero: none), by a microsecond when need be: reports keep their
//     order, so that a corrected report is not taken for a late one.
func aheadTakenAt(t time.Time, skew time.Duration, now, prev time.Time) time.Time {
	c := t
	if skew > 0 {
		c = t.Add(-skew)
	}
	if c.After(now) || c.Before(Earliest) {
		c = now
	}
	if !prev.IsZero() && !c.After(prev) {
		c = prev.Add(time.Microsecond)
	}
	return pgTime(c)
}

// aheadNote says what aheadTakenAt did, for the report's ingest_note.
func aheadNote(stamped, kept time.Time, skew time.Duration, now time.Time) string {
	measured := "no clock skew was measured on its batch"
	if skew != 0 {
		measured = fmt.Sprintf("the host's clock was %s ahead when it sent the batch", skew.Round(time.Millisecond))
		if skew < 0 {
			measured = fmt.Sprintf("the host's clock was %s behind when it sent the batch", (-skew).Round(time.Millisecond))
		}
	}
	return fmt.Sprintf("%s is %s ahead of the collector's clock (%s), more than %s: stored as %s (%s; the report's "+
		"other times are by the host's clock and bounded by this one)",
		stamped.Format(time.RFC3339Nano), stamped.Sub(now).Round(time.Second), now.UTC().Format(time.RFC3339Nano),
		MaxClockSkew, kept.Format(time.RFC3339Nano), measured)
}

// ClockSkewRefresh is how old a host's recorded clock skew may grow before
// RecordClockSkew writes the same value again; ClockSkewResolution is the
// change that is written at once.
const (
	ClockSkewRefresh    = 10 * time.Minute
	ClockSkewResolution = time.Second
)

// RecordClockSkew records skew, the host's clock skew measured at
// measuredAt (the collector's clock) on a batch of its agent: Batch.sent_at
// minus the collector's clock on receipt, positive when the host's clock is
// ahead. It writes only when the host has no skew recorded, when the
// recorded one differs by ClockSkewResolution or more, or when it was
// measured ClockSkewRefresh or longer before measuredAt; a measurement
// older than the recorded one is never written. It reports whether it
// wrote; a host the store does not know is not an error (nothing written).
//
// It runs outside the ingest transaction, in one statement that locks the
// host row only when it writes.
func (s *Store) RecordClockSkew(ctx context.Context, machineGUID string, skew time.Duration, measuredAt time.Time) (bool, error) {
	guid, err := validMachineGUID("machineGUID", machineGUID)
	if err != nil {
		return false, err
	}
	ms := skew.Milliseconds()
	tag, err := s.pool.Exec(ctx, `UPDATE host SET clock_skew_ms = $2, clock_skew_at = $3
		WHERE machine_guid = $1 AND (clock_skew_at IS NULL
			OR (clock_skew_at < $3 AND (abs(clock_skew_ms - $2) >= $4 OR clock_skew_at <= $3 - $5::bigint * interval '1 millisecond')))`,
		guid, ms, pgTime(measuredAt), ClockSkewResolution.Milliseconds(), ClockSkewRefresh.Milliseconds())
	if err != nil {
		return false, fmt.Errorf("store: record the clock skew of host %s: %w", guid, err)
	}
	return tag.RowsAffected() > 0, nil
}
