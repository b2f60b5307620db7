package uplink

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// PushbackError means the collector asked the agent to come back later:
// UNAVAILABLE with a google.rpc.RetryInfo (the store is slow or down), or
// RESOURCE_EXHAUSTED (too many batches in flight, a rate limit, a message
// too large). Nothing of the call was stored; retry the same data after at
// least RetryAfter, with jitter (Backoff.Next does both).
type PushbackError struct {
	// Op is the call: "enroll", "renew" or "ingest".
	Op string
	// Code is UNAVAILABLE or RESOURCE_EXHAUSTED.
	Code codes.Code
	// RetryAfter is the collector's RetryInfo delay; 0 when it gave none.
	RetryAfter time.Duration
	// Err is the status error.
	Err error
}

func (e *PushbackError) Error() string {
	return fmt.Sprintf("uplink: %s: collector pushed back (%v, retry after %v): %s", e.Op, e.Code, e.RetryAfter, status.Convert(e.Err).Message())
}

func (e *PushbackError) Unwrap() error { return e.Err }

// AuthError means the collector refused the agent's identity:
// UNAUTHENTICATED (no valid certificate, an expired one, a refused secret
// or renewal proof), PERMISSION_DENIED (a disabled agent, a superseded
// certificate) or, at Enroll, FAILED_PRECONDITION (the machine GUID is held
// by another enabled agent; an admin must allow re-enrollment). Retrying
// soon does not help; an administrator may have to act.
type AuthError struct {
	// Op is the call: "enroll", "renew" or "ingest".
	Op string
	// Code is the status code.
	Code codes.Code
	// Err is the status error.
	Err error
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("uplink: %s: collector refused the agent (%v): %s", e.Op, e.Code, status.Convert(e.Err).Message())
}

func (e *AuthError) Unwrap() error { return e.Err }

// RejectedError means the collector refused a request whole as malformed
// (INVALID_ARGUMENT): for Ingest, a batch breaking the protocol's rules,
// with nothing of it stored; Message names the report and field.
type RejectedError struct {
	// Op is the call: "enroll", "renew" or "ingest".
	Op string
	// Message is the collector's explanation.
	Message string
	// Err is the status error.
	Err error
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("uplink: %s: collector rejected the request as invalid: %s", e.Op, e.Message)
}

func (e *RejectedError) Unwrap() error { return e.Err }

// retryAfter returns the RetryInfo delay of a status, or 0.
func retryAfter(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			if dd := ri.GetRetryDelay().AsDuration(); dd > 0 {
				return dd
			}
		}
	}
	return 0
}

// classify turns the error of call op to addr into a *PushbackError,
// *AuthError or *RejectedError, or wraps it with what was called.
func classify(op, addr string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("uplink: %s to collector %s: %w", op, addr, err)
	}
	switch st.Code() {
	case codes.Unavailable:
		if d := retryAfter(st); d > 0 {
			return &PushbackError{Op: op, Code: st.Code(), RetryAfter: d, Err: err}
		}
	case codes.ResourceExhausted:
		return &PushbackError{Op: op, Code: st.Code(), RetryAfter: retryAfter(st), Err: err}
	case codes.Unauthenticated, codes.PermissionDenied, codes.FailedPrecondition:
		return &AuthError{Op: op, Code: st.Code(), Err: err}
	case codes.InvalidArgument:
		return &RejectedError{Op: op, Message: st.Message(), Err: err}
	}
	return fmt.Errorf("uplink: %s to collector %s: %w", op, addr, err)
}

// retryFloor returns the delay err asks for (a PushbackError's RetryAfter),
// or 0.
func retryFloor(err error) time.Duration {
	if pe, ok := errors.AsType[*PushbackError](err); ok {
		return pe.RetryAfter
	}
	return 0
}
