package source

import (
	"context"

	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// Source produces complete snapshots of one host's sessions. The WMI source
// (Windows), the simulated source (package simulate) and the fixture replay
// source (package fixture) implement it.
type Source interface {
	// Snapshot takes a snapshot now. A problem with one class (a failed or
	// timed-out query, a disabled class) or one value is recorded in the
	// snapshot's errors, and the snapshot is still returned; an error is
	// returned only when no snapshot can be made at all (ctx is done, the
	// host's identity is unknown, a replay has ended, the source is
	// closed). The caller owns the returned message.
	//
	// Snapshot is not safe for concurrent use: a source may run one
	// collection at a time, and a caller must not start a snapshot while
	// the previous one is still running.
	Snapshot(ctx context.Context) (*sessionauditv1.Snapshot, error)

	// Close releases what the source holds (a WMI connection, a file).
	// Snapshot fails after Close.
	Close() error
}

// WMI class names, as they appear in CollectionError.wmi_class.
const (
	ClassLogonSession    = "Win32_LogonSession"
	ClassLoggedOnUser    = "Win32_LoggedOnUser"
	ClassServerSession   = "Win32_ServerSession"
	ClassOperatingSystem = "Win32_OperatingSystem"
	ClassComputerSystem  = "Win32_ComputerSystem"
)

// Classes lists every WMI class a source reads, in the order collection
// errors list them. (The WMI source queries them in its own order,
// wmi.QueryOrder.)
var Classes = []string{
	ClassOperatingSystem,
	ClassComputerSystem,
	ClassLogonSession,
	ClassLoggedOnUser,
	ClassServerSession,
}

// ListIncomplete reports whether kind means that a class's list in a snapshot
// is incomplete (QUERY_FAILED, TIMEOUT or DISABLED), so that an instance
// missing from it must not be taken as ended.
func ListIncomplete(kind sessionauditv1.CollectionErrorKind) bool {
	switch kind {
	case sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_QUERY_FAILED,
		sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_TIMEOUT,
		sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_DISABLED:
		return true
	}
	return false
}

// IncompleteClasses returns the set of classes whose lists are incomplete
// according to errs (see ListIncomplete).
func IncompleteClasses(errs []*sessionauditv1.CollectionError) map[string]bool {
	var out map[string]bool
	for _, e := range errs {
		if ListIncomplete(e.GetKind()) {
			if out == nil {
				out = make(map[string]bool)
			}
			out[e.GetWmiClass()] = true
		}
	}
	return out
}
