package store

import "time"

// ReportKind says what a Report carries.
type ReportKind uint8

const (
	// KindSnapshot is a complete snapshot: the full lists of both session classes
	// (each complete unless a CollectionError names its class).
	KindSnapshot ReportKind = iota + 1
	// KindDelta is the difference to the state after report BaseSequence.
	KindDelta
	// KindHeartbeat says the state, collection errors included, equals the
	// state after report BaseSequence: nothing changed.
	KindHeartbeat
)

// String returns the kind's name, for errors and logs.
func (k ReportKind) String() string {
	switch k {
	case KindSnapshot:
		return "full"
	case KindDelta:
		return "delta"
	case KindHeartbeat:
		return "heartbeat"
	default:
		return "unknown"
	}
}

// WMI class names as they appear in CollectionError.Class.
const (
	ClassLogonSession  = "Win32_LogonSession"
	ClassLoggedOnUser  = "Win32_LoggedOnUser"
	ClassServerSession = "Win32_ServerSession"
)

// Host is the identity and facts of a Windows host.
type Host struct {
	// MachineGUID is the host's identity (lower-case, without braces).
	MachineGUID string
	// Hostname is Win32_ComputerSystem.DNSHostName, else Name.
	Hostname string
	// Domain is the AD domain or the workgroup.
	Domain string
	// OSCaption, OSVersion and OSBuild come from Win32_OperatingSystem.
	OSCaption, OSVersion, OSBuild string
	// LastBootTime is Win32_OperatingSystem.LastBootUpTime in UTC; the zero
	// time when unknown. A new value ends every open session of the old boot.
	LastBootTime time.Time
	// AgentVersion is the version of the reporting agent.
	AgentVersion string
	// SMBIOSUUID is Win32_ComputerSystemProduct.UUID in the canonical form
	// of identity.ParseSMBIOSUUID; empty when unknown. Recorded at
	// enrollment (EnrollAgent), where it tells clones of one machine GUID
	// apart (identity.Match); reports do not change it.
	SMBIOSUUID string
}

// Account is the Win32_Account a logon session belongs to. Domain and Name
// identify it, compared without regard to case as Windows does.
type Account struct {
	Domain string
	Name   string
	// SID is "S-1-5-..." when known, else empty.
	SID string
}

// LogonSession is one Win32_LogonSession instance joined with its account.
type LogonSession struct {
	// LogonID is the LUID as WMI gives it, kept verbatim; never parsed.
	LogonID string
	// LogonType is the raw WMI number; nil when WMI gave none. Numbers the
	// project does not know are kept as they are.
	LogonType *uint32
	// AuthenticationPackage is e.g. "Kerberos", "NTLM", "Negotiate".
	AuthenticationPackage string
	Caption               string
	Description           string
	Name                  string
	Status                string
	// StartTime is when the session started (UTC); zero when WMI gave none.
	StartTime time.Time
	// InstallDate is zero when WMI gave none.
	InstallDate time.Time
	// Account is nil when no Win32_LoggedOnUser names the session: the
	// session is stored all the same.
	Account *Account
	// LingeringSince is when the agent first saw the session lingering (an
	// interactive, RDP or cached logon with no process left: a logoff whose
	// session a leaked token keeps alive); zero while it is live or when
	// the agent did not tell. It follows the latest report while the
	// interval is open and is kept when the interval closes (column
	// lingering_since, migration 010).
	LingeringSince time.Time
}

// ServerSession is one Win32_ServerSession instance: an SMB session a remote
// computer opened to the host.
type ServerSession struct {
	// ComputerName and UserName are the WMI keys, as given.
	ComputerName string
	UserName     string
	ClientType   string
	// TransportName is the transport the session runs over.
	TransportName string
	Caption       string
	Description   string
	Name          string
	Status        string
	// ActiveTime is the session's age in seconds; its start is the report's
	// TakenAt minus ActiveTime. Nil when WMI gave none.
	ActiveTime *uint32
	// IdleTime and ResourcesOpened change at every poll; the store does not
	// keep them in history (see docs/design/0002-storage.md).
	IdleTime        *uint32
	ResourcesOpened *uint32
	// SessionType is the raw WMI number (0 Guest, 1 NoEncryption, 2 Other);
	// nil when WMI gave none.
	SessionType *uint32
	// InstallDate is zero when WMI gave none.
	InstallDate time.Time
}

// ServerSessionKey names a server session that ended, in a Delta.
type ServerSessionKey struct {
	ComputerName string
	UserName     string
}

// CollectionError is a WMI class the agent failed to read completely for a
// report. Its list in that report is then not complete.
type CollectionError struct {
	// Class is the WMI class, e.g. ClassServerSession.
	Class string
	// Message is the error as the agent saw it.
	Message string
	// ValueOnly is true for an error about one value of one instance: the
	// list is still complete. False (the default) means the class's list in
	// this report is incomplete, so that its absences end nothing.
	ValueOnly bool
}

// Report is one numbered report of an agent.
type Report struct {
	// Sequence is assigned by the agent, strictly increasing per agent,
	// from 1; at most math.MaxInt64.
	Sequence uint64
	// Kind says what the report carries.
	Kind ReportKind
	// TakenAt is when the snapshot was taken, in UTC, by the agent's clock.
	TakenAt time.Time
	// BaseSequence is, for a Delta or a Heartbeat, the sequence of the state
	// it applies to: the agent's last Full or Delta (Heartbeats in between do
	// not count). It must be the last one stored for the agent.
	BaseSequence uint64
	// Host carries the host's facts: always on a Full, on a Delta when one
	// changed, never on a Heartbeat.
	Host *Host
	// LogonSessions is, on a Full, every logon session; on a Delta, those
	// that appeared or changed.
	LogonSessions []LogonSession
	// ServerSessions is, on a Full, every server session; on a Delta, those
	// that appeared or changed (a reconnect shows as a new start).
	ServerSessions []ServerSession
	// EndedLogonIDs lists, on a Delta, the logon sessions that are gone.
	EndedLogonIDs []string
	// EndedServerSessions lists, on a Delta, the server sessions that are gone.
	EndedServerSessions []ServerSessionKey
	// CollectionErrors lists the classes that failed for this report.
	CollectionErrors []CollectionError
	// Part and PartsTotal number a Full in parts (Snapshot.part): part Part
	// of PartsTotal, the parts numbered by consecutive sequences; both 0
	// for a Full in one report. The store keeps the parts until the last
	// arrives and applies them together (parts.go).
	Part, PartsTotal uint32
	// LostBefore, when set, says that the agent lost reports it had
	// numbered just before this one (its spool found them damaged,
	// dropped them on overflow, or could not write them). A
	// Delta or Heartbeat carrying it is applied even when its base is not
	// the agent's stored state, and the hole is recorded as a CoverageGap
	// (gaps.go; docs/design/0002-storage.md, "Coverage gaps").
	LostBefore *LostReports
	// ClockSkew is the host's clock skew measured on the batch that carried
	// the report: Batch.sent_at minus the collector's clock on receipt
	// (positive: the host's clock is ahead); zero when not measured. It
	// serves only to correct a TakenAt more than MaxClockSkew ahead of the
	// store's clock (docs/design/0002-storage.md, "Clocks ahead of the
	// collector").
	ClockSkew time.Duration

	// held is true, in a clean report, for a part of a snapshot other than
	// the last of its set: acknowledged, kept, not applied (parts.go).
	held bool
	// stamped is, in a clean report whose TakenAt the store corrected, the
	// TakenAt the agent stamped; zero otherwise (stampedTakenAt).
	stamped time.Time
}

// stampedTakenAt is the TakenAt the agent stamped on the report, before the
// store corrected it (a clock far ahead): what identifies the report when
// the agent sends it again (the chain's fingerprint, incarnation.go).
func (r *Report) stampedTakenAt() time.Time {
	if !r.stamped.IsZero() {
		return r.stamped
	}
	return r.TakenAt
}

// LostReports names the reports FirstSequence..LastSequence (both
// included, all below the report that carries it) that an agent lost.
type LostReports struct {
	FirstSequence, LastSequence uint64
	// Reason says how they were lost; empty means GapLostReports.
	Reason GapReason
}

// IngestResult says what happened to each report of an Ingest call.
type IngestResult struct {
	// Applied lists the sequences whose content was stored, in order,
	// including late ones.
	Applied []uint64
	// Late lists the applied sequences that were older than the host's
	// newest observation and went through the late rule (see docs/design/0002-storage.md).
	Late []uint64
	// Duplicates lists the sequences at or below the agent's high-water mark:
	// already stored, acknowledged again, changed nothing.
	Duplicates []uint64
	// Rejected lists the reports refused as invalid; they changed nothing.
	Rejected []RejectedReport
	// Acknowledged is the agent's high-water mark after the call: every
	// report numbered at or below it is stored, or superseded by a later
	// full snapshot. The agent may drop them from its spool.
	Acknowledged uint64
	// Sanitized lists every value the store changed to be able to store it.
	Sanitized []Note
	// Gaps lists the coverage gaps the call recorded (Report.LostBefore).
	Gaps []CoverageGap
	// Restart is set when the call started a new chain for the agent: the
	// batch came from a new incarnation of its spool (see ChainRestart).
	Restart *ChainRestart
	// Anomalies lists what the interval rules refused to take as reported,
	// because it would have changed immutable history: a boot earlier than
	// the current one, sessions seen again after their intervals ended
	// before the host's current boot began (docs/design/0002-storage.md,
	// "Closed intervals are immutable"). The reports were applied
	// otherwise. Stored in ingest_note like Sanitized.
	Anomalies []Note
	// Renamed is the change of the host's name (host name or domain) the
	// applied reports made; nil when none. The store records every name in
	// the host's name history (HostNameHistory); the collector alerts when
	// the new name is another host's.
	Renamed *HostRename
}

// RejectedReport is a report refused as invalid.
type RejectedReport struct {
	Sequence uint64
	// Err is a *FieldError naming the field.
	Err error
}

// Note records one value changed (or dropped) by sanitization. Notes are
// also stored in the ingest_note table.
type Note struct {
	Sequence uint64
	// Field names the value, e.g. "LogonSessions[3].Caption".
	Field string
	// Change says what was done, e.g. "removed 2 NUL bytes".
	Change string
}

// HostRef names a host in query results.
type HostRef struct {
	MachineGUID string
	Hostname    string
	Domain      string
}

// End says how a session's interval ended, and how precisely that is known.
type End struct {
	// Open is true while the session is still seen. LastSeen is then the
	// host's latest complete observation and EndBefore is zero.
	Open bool
	// LastSeen is the last observation that had the session.
	LastSeen time.Time
	// EndBefore is the first observation that lacked it (or the new boot): the
	// session ended in (LastSeen, EndBefore].
	EndBefore time.Time
}

// LogonInterval is a stored logon session with its interval.
type LogonInterval struct {
	// ID is the store's identifier of the interval.
	ID       int64
	Host     HostRef
	BootTime time.Time
	// Session holds the stored properties; StartTime is the interval's start.
	Session LogonSession
	End     End
}

// ServerInterval is a stored server session with its interval.
type ServerInterval struct {
	// ID is the store's identifier of the interval.
	ID   int64
	Host HostRef
	// StartTime is the observation time minus ActiveTime at first sight.
	StartTime time.Time
	// Session holds the stored properties (ActiveTime, IdleTime and
	// ResourcesOpened are not kept).
	Session ServerSession
	End     End
}

// HostStatus is a host with its freshness and open session counts.
type HostStatus struct {
	Host          Host
	FirstReceived time.Time
	// LastSeen is the newest observation applied (agent clock); zero if none.
	LastSeen time.Time
	// LastReceived is when the collector last received a report (its clock).
	LastReceived time.Time
	// StoredUpTo is how far the host's stored history reaches, its
	// freshness: LastSeen (the taken_at of the newest report stored, the
	// host's clock), but not after LastReceived (a clock running ahead
	// cannot make a host look fresh); FirstReceived while no report is
	// stored. Reports discarded as duplicates do not move it.
	// HostsQuery.StaleAfter compares against it.
	StoredUpTo         time.Time
	AgentID            string
	OpenLogonSessions  int
	OpenServerSessions int
	// CoverageGaps counts the host's recorded coverage gaps
	// (Store.CoverageGaps lists them).
	CoverageGaps int
	// AgentKeyReuseAt is the earliest Agent.KeyReuseAt of the host's
	// enabled agents: a superseded certificate was presented after its
	// successor was used, the agent's key is in use twice
	// (docs/design/0003-security.md C6). Zero when none is flagged.
	AgentKeyReuseAt time.Time
	// ClockSkew is the host's clock skew as last recorded
	// (RecordClockSkew): positive when its clock is ahead of the
	// collector's. ClockSkewAt is when it was measured (the collector's
	// clock); zero, with ClockSkew, when never.
	ClockSkew   time.Duration
	ClockSkewAt time.Time
}
