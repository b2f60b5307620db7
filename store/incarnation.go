package store

import (
	"context"
	"fmt"
	"time"
)

// An agent numbers its reports within one incarnation of its spool
// (Batch.incarnation in the protocol): a new spool, after the old one was
// deleted or lost or the agent reinstalled over it, has a new incarnation
// and numbers from 1 again. The store keeps, per agent, the incarnation of
// the chain it holds and the taken_at of the report at its high-water mark
// (migration 004), so that neither a new spool nor an old copy of the spool
// (a restored VM snapshot) can have new reports taken for duplicates:
//
//   - a batch of another incarnation starts the chain again: the
//     high-water mark and the state go back to 0 (the first report must be
//     a Snapshot, else the call asks for a resync), and a note records the
//     change (ChainRestart);
//   - a report numbered at the high-water mark whose taken_at is not the one
//     stored under that number is not the report stored: the agent's spool
//     went back and numbered new reports again. The call stops with a
//     *DivergedError (a resync) and acknowledges the mark, so that the agent
//     continues above it with a Snapshot;
//   - reports below the mark cannot be told from retries by the store; the
//     agent can (the mark is above every sequence it assigned) and
//     continues above it (docs/design/0001-protocol.md).
//
// The reasoning is in docs/design/0002-storage.md ("Spool loss, reinstalls
// and restored snapshots").

// Ingest stores the reports of one agent about one host, in one transaction,
// as IngestIncarnation does for an agent that sends no incarnation (0).
func (s *Store) Ingest(ctx context.Context, agentID, machineGUID string, reports []Report) (IngestResult, error) {
	return s.IngestIncarnation(ctx, agentID, machineGUID, 0, reports)
}

// ChainRestart describes a new incarnation of an agent's spool, taken by an
// Ingest call: the reports of the call are numbered in it.
type ChainRestart struct {
	// Incarnation is the new incarnation, Previous the one the store held.
	Incarnation, Previous uint64
	// PreviousMark is the high-water mark of the previous incarnation: the
	// agent's reports up to it were stored; those it held beyond it when
	// its spool was lost are lost.
	PreviousMark uint64
}

// DivergedError is the error (matched by errors.Is with ErrResyncRequired)
// of a report numbered at the agent's high-water mark that is not the report
// stored under that number: its taken_at differs. The agent's spool went
// back to an older copy and numbered new reports again; the report, and the
// ones after it in the call, are not applied, and the mark is acknowledged
// so that the agent continues above it with a Snapshot.
type DivergedError struct {
	AgentID     string
	MachineGUID string
	// Sequence is the report's number, the agent's high-water mark.
	Sequence uint64
	// TakenAt is the report's, Stored the one stored under its number.
	TakenAt, Stored time.Time
}

// Error says which report is not the one stored.
func (e *DivergedError) Error() string {
	return fmt.Sprintf("store: agent %q host %s: report %d taken at %s is not the report %d stored (taken at %s): "+
		"the agent's spool numbered new reports again (restored from an older copy?): %v",
		e.AgentID, e.MachineGUID, e.Sequence, e.TakenAt.Format(time.RFC3339Nano), e.Sequence,
		e.Stored.Format(time.RFC3339Nano), ErrResyncRequired)
}

// Is reports whether target is ErrResyncRequired.
func (e *DivergedError) Is(target error) bool { return target == ErrResyncRequired }

// chainState is what an Ingest call knows of the agent's chain besides its
// high-water mark and state (ingestState).
type chainState struct {
	// incarnation is the stored incarnation; 0 when none is.
	incarnation uint64
	// appliedTakenAt is the taken_at of the report at the high-water mark;
	// zero when unknown.
	appliedTakenAt time.Time
	// restart is set when the call started a new chain.
	restart *ChainRestart
	// chainNotes are the notes of a new incarnation or a report that is not
	// the one stored at the mark, stored with the call's other notes.
	chainNotes []Note
	// since is the call's time: incarnation_since when the incarnation
	// changes.
	since time.Time
}

// adoptIncarnation takes the batch's incarnation: a new one (other than 0
// and than the stored one) starts the chain again, with a note that says
// so (added to chainNotes, and returned); the first incarnation an agent
// sends is only recorded. first is the sequence of the call's first report,
// for the note; now the call's time.
func (st *ingestState) adoptIncarnation(incarnation, first uint64, now time.Time) []Note {
	st.since = now
	switch {
	case incarnation == 0 || incarnation == st.incarnation:
		return nil
	case st.incarnation == 0:
		st.incarnation = incarnation
		return nil
	}
	st.restart = &ChainRestart{Incarnation: incarnation, Previous: st.incarnation, PreviousMark: st.hwm}
	st.incarnation = incarnation
	st.hwm, st.stateSeq, st.appliedTakenAt = 0, 0, time.Time{}
	st.chainNotes = append(st.chainNotes, Note{Sequence: first, Field: "Batch.incarnation", Change: fmt.Sprintf(
		"new spool incarnation %016x (was %016x, whose reports were stored up to %d): the agent's spool was "+
			"deleted or lost and made anew; its sequences start again, and the old spool's reports after %d, "+
			"if it held any, are lost", incarnation, st.restart.Previous, st.restart.PreviousMark,
		st.restart.PreviousMark)})
	return st.chainNotes[len(st.chainNotes)-1:]
}

// diverged returns a *DivergedError, and notes it, when r, numbered at or
// below the high-water mark, is known not to be the report stored under its
// number: numbered at the mark, taken at another time.
func (st *ingestState) diverged(agentID, machineGUID string, r *Report) error {
	// As the agent stamped it: a TakenAt the store corrected (a clock far
	// ahead) is corrected anew, differently, when the report is sent again.
	takenAt := r.stampedTakenAt()
	if r.Sequence != st.hwm || st.appliedTakenAt.IsZero() || takenAt.Equal(st.appliedTakenAt) {
		return nil
	}
	st.chainNotes = append(st.chainNotes, Note{Sequence: r.Sequence, Field: "Sequence", Change: fmt.Sprintf(
		"report %d taken at %s is not the report %d stored (taken at %s): the agent's spool went back to an older "+
			"copy (a restored VM snapshot?) and numbered new reports again; asked for a snapshot above %d, the reports "+
			"it numbered at or below %d are lost", r.Sequence, takenAt.Format(time.RFC3339Nano), r.Sequence,
		st.appliedTakenAt.Format(time.RFC3339Nano), st.hwm, st.hwm)})
	return &DivergedError{AgentID: agentID, MachineGUID: machineGUID, Sequence: r.Sequence, TakenAt: takenAt, Stored: st.appliedTakenAt}
}

// incarnationParam is the stored form of an incarnation: its 64 bits as a
// bigint, NULL for none.
func incarnationParam(incarnation uint64) *int64 {
	if incarnation == 0 {
		return nil
	}
	v := int64(incarnation)
	return &v
}
