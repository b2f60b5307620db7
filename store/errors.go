package store

import (
	"errors"
	"fmt"
)

// ErrResyncRequired is matched (errors.Is) by the error Ingest returns when a
// Delta or Heartbeat does not apply to the last Snapshot or Delta stored for
// its agent.
// The collector should ask the agent for a full snapshot.
var ErrResyncRequired = errors.New("resync required: a full snapshot is needed")

// ErrInvalidInput is matched (errors.Is) by every *FieldError and by errors
// about invalid query parameters.
var ErrInvalidInput = errors.New("invalid input")

// ResyncError is the error behind ErrResyncRequired.
type ResyncError struct {
	AgentID     string
	MachineGUID string
	// Sequence and BaseSequence are those of the refused report.
	Sequence     uint64
	BaseSequence uint64
	// Stored is the agent's last stored Snapshot or Delta.
	Stored uint64
}

// Error says which report was refused and why.
func (e *ResyncError) Error() string {
	return fmt.Sprintf("store: agent %q host %s: report %d applies to report %d but the last snapshot or delta stored is %d: %v",
		e.AgentID, e.MachineGUID, e.Sequence, e.BaseSequence, e.Stored, ErrResyncRequired)
}

// Is reports whether target is ErrResyncRequired.
func (e *ResyncError) Is(target error) bool { return target == ErrResyncRequired }

// FieldError is invalid input that could not be sanitized: it names the field.
type FieldError struct {
	// Sequence is the report's sequence, 0 for a call parameter.
	Sequence uint64
	// Field names the value, e.g. "TakenAt" or "machineGUID".
	Field string
	// Reason says what is wrong with it.
	Reason string
}

// Error names the report, the field and the reason.
func (e *FieldError) Error() string {
	if e.Sequence == 0 {
		return fmt.Sprintf("store: %s: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("store: report %d: %s: %s", e.Sequence, e.Field, e.Reason)
}

// Is reports whether target is ErrInvalidInput.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidInput }
