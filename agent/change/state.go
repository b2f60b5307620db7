package change

import (
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/source"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// State is the state of a host that a sequence of reports describes: what a
// collector holds after applying them in order. The Tracker keeps one to
// compute deltas against; tests and the collector side use Apply to check
// that reports reproduce the snapshots they came from.
//
// The zero value is not usable; use NewState.
type State struct {
	// Sequence is the sequence number of the last report applied; 0 before
	// any.
	Sequence uint64
	// StateSequence is the sequence number of the last Snapshot or Delta
	// applied: the base the next Delta or Heartbeat names. Heartbeats do not
	// move it, so an agent may drop or coalesce them.
	StateSequence uint64
	// TakenAt is the taken_at of the last report applied (a heartbeat
	// included).
	TakenAt time.Time
	// Host is the host as last reported; nil before any snapshot.
	Host *sessionauditv1.Host

	logon  map[string]*sessionauditv1.LogonSession
	server map[source.ServerSessionKey]serverEntry
	// partIncomplete is the incomplete classes of the first part of the
	// snapshot in parts being applied.
	partIncomplete map[string]bool
}

// serverEntry is a server session as last carried by a report, with the
// start derived from that report (taken_at − ActiveTime).
type serverEntry struct {
	session  *sessionauditv1.ServerSession
	start    time.Time
	hasStart bool // ActiveTime was given
}

// NewState returns an empty State, before any report.
func NewState() *State {
	return &State{
		logon:  make(map[string]*sessionauditv1.LogonSession),
		server: make(map[source.ServerSessionKey]serverEntry),
	}
}

// ServerSessionStart returns the start of a server session derived from a
// snapshot taken at takenAt: takenAt − ActiveTime. ok is false when
// ActiveTime is absent.
func ServerSessionStart(takenAt time.Time, s *sessionauditv1.ServerSession) (start time.Time, ok bool) {
	if s.ActiveTime == nil {
		return time.Time{}, false
	}
	return takenAt.Add(-time.Duration(s.GetActiveTime()) * time.Second), true
}

func newServerEntry(takenAt time.Time, s *sessionauditv1.ServerSession) serverEntry {
	start, ok := ServerSessionStart(takenAt, s)
	return serverEntry{session: proto.Clone(s).(*sessionauditv1.ServerSession), start: start, hasStart: ok}
}

// Apply applies report r to the state, with the semantics the protocol gives
// reports:
//
//   - A Snapshot replaces the state, except the list of a class that the
//     snapshot's errors mark incomplete (QUERY_FAILED, TIMEOUT, DISABLED for
//     Win32_LogonSession or Win32_ServerSession), which keeps its previous
//     content.
//   - A Delta must have base_sequence equal to the state's StateSequence;
//     it replaces the host when it carries one, upserts and ends sessions.
//   - A Heartbeat must have base_sequence equal to the state's
//     StateSequence; it changes only TakenAt (and Sequence).
//
// r's sequence must be above the state's. On error the state is unchanged.
func (s *State) Apply(r *sessionauditv1.Report) error {
	seq := r.GetSequence()
	if seq == 0 || seq <= s.Sequence {
		return fmt.Errorf("change: apply report %d: sequence not above the last applied, %d", seq, s.Sequence)
	}
	switch c := r.GetContent().(type) {
	case *sessionauditv1.Report_Snapshot:
		snap := c.Snapshot
		if snap.GetHost() == nil || snap.GetTakenAt() == nil {
			return fmt.Errorf("change: apply report %d: snapshot without host or taken_at", seq)
		}
		takenAt := snap.GetTakenAt().AsTime()
		incomplete := source.IncompleteClasses(snap.GetErrors())
		// A snapshot in parts (Snapshot.part): the first part replaces the
		// lists, the others add to them; the errors are in the first.
		first := snap.GetPart() <= 1
		if first {
			s.partIncomplete = incomplete
		} else {
			incomplete = s.partIncomplete
		}
		s.Host = proto.Clone(snap.GetHost()).(*sessionauditv1.Host)
		if !incomplete[source.ClassLogonSession] && first {
			clear(s.logon)
		}
		if !incomplete[source.ClassLogonSession] {
			for _, ls := range snap.GetLogonSessions() {
				s.logon[ls.GetLogonId()] = proto.Clone(ls).(*sessionauditv1.LogonSession)
			}
		}
		if !incomplete[source.ClassServerSession] && first {
			clear(s.server)
		}
		if !incomplete[source.ClassServerSession] {
			for _, ss := range snap.GetServerSessions() {
				s.server[source.KeyOfServerSession(ss)] = newServerEntry(takenAt, ss)
			}
		}
		s.TakenAt = takenAt
	case *sessionauditv1.Report_Delta:
		d := c.Delta
		if d.GetBaseSequence() != s.StateSequence {
			return fmt.Errorf("change: apply report %d: delta on base %d, but the last snapshot or delta applied is %d", seq, d.GetBaseSequence(), s.StateSequence)
		}
		if d.GetTakenAt() == nil {
			return fmt.Errorf("change: apply report %d: delta without taken_at", seq)
		}
		takenAt := d.GetTakenAt().AsTime()
		if d.GetHost() != nil {
			s.Host = proto.Clone(d.GetHost()).(*sessionauditv1.Host)
		}
		for _, k := range d.GetLogonSessionsEnded() {
			delete(s.logon, k.GetLogonId())
		}
		for _, ls := range d.GetLogonSessionsUpserted() {
			s.logon[ls.GetLogonId()] = proto.Clone(ls).(*sessionauditv1.LogonSession)
		}
		for _, k := range d.GetServerSessionsEnded() {
			delete(s.server, source.ServerSessionKey{ComputerName: k.GetComputerName(), UserName: k.GetUserName()})
		}
		for _, ss := range d.GetServerSessionsUpserted() {
			s.server[source.KeyOfServerSession(ss)] = newServerEntry(takenAt, ss)
		}
		s.TakenAt = takenAt
	case *sessionauditv1.Report_Heartbeat:
		h := c.Heartbeat
		if h.GetBaseSequence() != s.StateSequence {
			return fmt.Errorf("change: apply report %d: heartbeat on base %d, but the last snapshot or delta applied is %d", seq, h.GetBaseSequence(), s.StateSequence)
		}
		if h.GetTakenAt() == nil {
			return fmt.Errorf("change: apply report %d: heartbeat without taken_at", seq)
		}
		s.TakenAt = h.GetTakenAt().AsTime()
	default:
		return fmt.Errorf("change: apply report %d: no content", seq)
	}
	if r.GetHeartbeat() == nil {
		s.StateSequence = seq
	}
	s.Sequence = seq
	return nil
}

// Snapshot returns the state as a Snapshot (taken_at is the last report's;
// no errors), sessions sorted as source.BuildSnapshot sorts them. Server
// sessions carry the values of the report that last upserted them.
func (s *State) Snapshot() *sessionauditv1.Snapshot {
	out := &sessionauditv1.Snapshot{TakenAt: timestamppb.New(s.TakenAt)}
	if s.Host != nil {
		out.Host = proto.Clone(s.Host).(*sessionauditv1.Host)
	}
	out.LogonSessions = s.LogonSessions()
	for _, k := range s.serverKeys() {
		out.ServerSessions = append(out.ServerSessions, proto.Clone(s.server[k].session).(*sessionauditv1.ServerSession))
	}
	return out
}

// LogonSessions returns copies of the logon sessions, sorted by LogonId.
func (s *State) LogonSessions() []*sessionauditv1.LogonSession {
	ids := make([]string, 0, len(s.logon))
	for id := range s.logon {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, source.CompareLogonIDs)
	out := make([]*sessionauditv1.LogonSession, len(ids))
	for i, id := range ids {
		out[i] = proto.Clone(s.logon[id]).(*sessionauditv1.LogonSession)
	}
	return out
}

// ServerSessionStarts returns each server session's derived start, as of the
// report that last carried it; sessions without ActiveTime are left out.
func (s *State) ServerSessionStarts() map[source.ServerSessionKey]time.Time {
	out := make(map[source.ServerSessionKey]time.Time, len(s.server))
	for k, e := range s.server {
		if e.hasStart {
			out[k] = e.start
		}
	}
	return out
}

func (s *State) serverKeys() []source.ServerSessionKey {
	keys := make([]source.ServerSessionKey, 0, len(s.server))
	for k := range s.server {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, source.CompareServerSessionKeys)
	return keys
}
