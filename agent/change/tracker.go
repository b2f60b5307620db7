package change

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/source"
	"github.com/sessionaudit/sessionaudit/proto/limits"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// DefaultResyncInterval is how often a Tracker sends a full Snapshot when
// Options.ResyncInterval is zero.
const DefaultResyncInterval = 6 * time.Hour

// DefaultStartTolerance is how far a server session's derived start
// (taken_at − ActiveTime) may move before the Tracker takes it for a
// reconnect, when Options.StartTolerance is zero. It absorbs the seconds'
// truncation of ActiveTime and the time between taken_at and the moment the
// Win32_ServerSession query actually ran (seconds on a busy host).
const DefaultStartTolerance = 15 * time.Second

// Options configures a Tracker.
type Options struct {
	// FirstSequence is the sequence number of the first report; at least 1.
	// The caller persists NextSequence and passes it back here after a
	// restart, so that sequences increase over the agent's life.
	FirstSequence uint64
	// ResyncInterval is the longest time between two full Snapshots, by
	// Clock. Zero means DefaultResyncInterval; negative means never (only
	// at start, on request and on the events listed on Next).
	ResyncInterval time.Duration
	// StartTolerance: see DefaultStartTolerance. Zero means the default.
	StartTolerance time.Duration
	// Clock times the resync interval. Nil means clock.System.
	Clock clock.Clock
}

// Tracker turns successive complete snapshots of one host into the reports
// the agent spools: a Snapshot, a Delta against the previous report, or a
// Heartbeat. It is not safe for concurrent use.
//
// What counts as a change:
//   - Host: any field differs (facts of a class whose query failed are
//     carried over from the previous report, so a failure is not a change).
//     The last boot time is the first value seen for the boot: a later one
//     within limits.BootJitter of it is reported as that first value, so
//     that a clock adjustment or a virtual machine's wobble of
//     LastBootUpTime is neither a change nor a reboot.
//   - Logon session: new LogonId, or any property differs (proto equality).
//     A session's account cannot change during its life, so a session that
//     comes without an account (Win32_LoggedOnUser failed, or the link
//     raced with the session query) keeps the account last reported for its
//     LogonId.
//   - Server session: new key (ComputerName, UserName), or a change of any
//     property other than ActiveTime, IdleTime and ResourcesOpened, or a
//     derived start (taken_at − ActiveTime) that moved by more than
//     StartTolerance, which is a reconnect, or ActiveTime becoming absent or
//     present. IdleTime and ResourcesOpened are volatile and never a change
//     on their own: the collector holds them as of the last report that
//     carried the session. The same holds for their sources in the
//     MSFT_SmbSession mirror (smb.seconds_exists, smb.seconds_idle,
//     smb.num_opens).
//   - Errors: the set of collection errors differs from the last Snapshot
//     or Delta's (compared by kind, class, property, instance key and raw
//     value; not by message). Errors alone give a Delta with no upserts,
//     so that new problems are not hidden behind heartbeats.
//
// A class whose list is incomplete in a snapshot (QUERY_FAILED, TIMEOUT or
// DISABLED for Win32_LogonSession or Win32_ServerSession) produces neither
// upserts nor ended entries: its previous state is kept.
type Tracker struct {
	opts     Options
	next     uint64
	state    *State
	lastFull time.Time
	resync   bool
	// unknown lists the session classes that were incomplete in the last
	// full Snapshot: the collector's list for them is not known to be the
	// tracker's, so their next complete collection is sent as a Snapshot.
	unknown map[string]bool
	// lastErrs is the error set of the last Snapshot or Delta.
	lastErrs []errorKey
}

// NewTracker returns a Tracker whose first report will be a Snapshot
// numbered opts.FirstSequence.
func NewTracker(opts Options) (*Tracker, error) {
	if opts.FirstSequence == 0 {
		return nil, errors.New("change: new tracker: FirstSequence must be at least 1")
	}
	if opts.ResyncInterval == 0 {
		opts.ResyncInterval = DefaultResyncInterval
	}
	if opts.StartTolerance <= 0 {
		opts.StartTolerance = DefaultStartTolerance
	}
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	return &Tracker{opts: opts, next: opts.FirstSequence, state: NewState(), unknown: map[string]bool{}}, nil
}

// NextSequence returns the sequence number the next report will carry. Persist
// it (after spooling a report) and pass it as FirstSequence after a restart.
func (t *Tracker) NextSequence() uint64 { return t.next }

// SetResyncInterval changes Options.ResyncInterval (same meaning: zero is
// DefaultResyncInterval, negative never) from the next report on, measured
// from the last Snapshot: a policy change takes effect without a restart.
func (t *Tracker) SetResyncInterval(d time.Duration) {
	if d == 0 {
		d = DefaultResyncInterval
	}
	t.opts.ResyncInterval = d
}

// Renumber makes the next report carry next, if that is above the sequence
// it would carry, and makes it a full Snapshot: call it when the spool moved
// past the tracker's numbering (spool.Rebase, after the collector
// acknowledged a sequence above every one the agent assigned).
func (t *Tracker) Renumber(next uint64) {
	t.next = max(t.next, next)
	t.resync = true
}

// RequestResync makes the next report a full Snapshot: call it after the
// collector asked for one (IngestResponse.resync_required), after the spool
// dropped reports, or when a report returned by Next could not be kept.
func (t *Tracker) RequestResync() { t.resync = true }

// Next returns the report for snap, the next complete snapshot of the host,
// and commits it: the following report is relative to this one. If the
// caller cannot keep the report (the spool write failed), it must call
// RequestResync.
//
// The report is a full Snapshot when it is the first; after RequestResync;
// when ResyncInterval has passed since the last Snapshot by the Clock (or
// the clock went back before it); when the host's last boot time moved by
// more than limits.BootJitter (5 s) or its machine GUID changed (logon IDs
// are reused across boots, so a delta could not say which "999" ended); or when a session class that was incomplete in the
// last Snapshot is complete again. Otherwise it is a Delta if anything
// changed (see Tracker), else a Heartbeat.
//
// snap must have a host and taken_at; Next does not modify it.
func (t *Tracker) Next(snap *sessionauditv1.Snapshot) (*sessionauditv1.Report, error) {
	if snap == nil || snap.GetHost() == nil || snap.GetTakenAt() == nil {
		return nil, errors.New("change: next report: snapshot without host or taken_at")
	}
	if err := snap.GetTakenAt().CheckValid(); err != nil {
		return nil, fmt.Errorf("change: next report: snapshot taken_at: %w", err)
	}
	cur := t.normalize(snap)
	cur.Errors = CapErrors(cur.GetErrors()) // split.go: at most limits.MaxCollectionErrors
	incomplete := source.IncompleteClasses(cur.GetErrors())
	errs := errorKeys(cur.GetErrors())

	report := &sessionauditv1.Report{Sequence: t.next}
	var d *sessionauditv1.Delta
	full := t.needFull(cur, incomplete)
	if !full {
		d = t.delta(cur, incomplete)
		// A delta too large for one report is sent as a snapshot, which
		// NextReports splits in parts: it gives the same state.
		full = d != nil && (deltaSessions(d) > limits.MaxPartSessions || proto.Size(d) > limits.MaxPartBytes)
	}
	if full {
		report.Content = &sessionauditv1.Report_Snapshot{Snapshot: cur}
	} else if d != nil || !slices.Equal(errs, t.lastErrs) {
		if d == nil {
			d = &sessionauditv1.Delta{}
		}
		d.BaseSequence = t.state.StateSequence
		d.TakenAt = cur.GetTakenAt()
		d.Errors = cur.GetErrors()
		d.ServerSessionBuild = cur.GetServerSessionBuild()
		report.Content = &sessionauditv1.Report_Delta{Delta: d}
	} else {
		report.Content = &sessionauditv1.Report_Heartbeat{Heartbeat: &sessionauditv1.Heartbeat{
			BaseSequence: t.state.StateSequence, TakenAt: cur.GetTakenAt(),
		}}
	}
	if err := t.state.Apply(report); err != nil {
		// Cannot happen for a report built here; keep the tracker usable.
		t.resync = true
		return nil, fmt.Errorf("change: next report %d: %w", report.GetSequence(), err)
	}
	if _, full := report.Content.(*sessionauditv1.Report_Snapshot); full {
		t.lastFull = t.opts.Clock.Now()
		t.resync = false
		clear(t.unknown)
		for _, class := range []string{source.ClassLogonSession, source.ClassServerSession} {
			if incomplete[class] {
				t.unknown[class] = true
			}
		}
	}
	if _, hb := report.Content.(*sessionauditv1.Report_Heartbeat); !hb {
		t.lastErrs = errs
	}
	t.next++
	return report, nil
}

// normalize returns a copy of snap with what cannot have changed carried over
// from the state: host facts of a failed class or an unreadable boot time,
// and accounts of sessions reported without one.
func (t *Tracker) normalize(snap *sessionauditv1.Snapshot) *sessionauditv1.Snapshot {
	cur := proto.Clone(snap).(*sessionauditv1.Snapshot)
	prev := t.state.Host
	if prev == nil {
		return cur
	}
	incomplete := source.IncompleteClasses(cur.GetErrors())
	h := cur.Host
	if incomplete[source.ClassOperatingSystem] {
		h.OsCaption, h.OsVersion, h.OsBuild = prev.GetOsCaption(), prev.GetOsVersion(), prev.GetOsBuild()
	}
	if prev.LastBootTime != nil && (h.LastBootTime == nil || sameBoot(prev.LastBootTime, h.LastBootTime)) {
		// Unreadable, or the same boot moved by a clock adjustment or a
		// virtual machine's wobble: the first value seen stays, so that
		// the report is no change and the collector keys the boot's
		// sessions by one value.
		h.LastBootTime = proto.Clone(prev.LastBootTime).(*timestamppb.Timestamp)
	}
	if incomplete[source.ClassComputerSystem] {
		h.Hostname, h.Domain = prev.GetHostname(), prev.GetDomain()
	}
	if t.bootChanged(cur) {
		return cur // logon IDs of another boot name other sessions
	}
	for _, ls := range cur.GetLogonSessions() {
		if ls.Account == nil {
			if old := t.state.logon[ls.GetLogonId()]; old != nil && old.Account != nil {
				ls.Account = proto.Clone(old.Account).(*sessionauditv1.Account)
			}
		}
	}
	return cur
}

// bootChanged reports whether cur is of another boot, or another machine,
// than the state: a last boot time more than limits.BootJitter from the
// state's.
func (t *Tracker) bootChanged(cur *sessionauditv1.Snapshot) bool {
	prev := t.state.Host
	if prev == nil {
		return false
	}
	if prev.GetMachineGuid() != cur.GetHost().GetMachineGuid() {
		return true
	}
	pb, cb := prev.GetLastBootTime(), cur.GetHost().GetLastBootTime()
	return pb != nil && cb != nil && !sameBoot(pb, cb)
}

// sameBoot reports whether two last boot times are of one boot: at most
// limits.BootJitter apart, the collector's tolerance (Windows derives
// LastBootUpTime from the clock, so it moves with every clock adjustment).
func sameBoot(a, b *timestamppb.Timestamp) bool {
	d := a.AsTime().Sub(b.AsTime())
	return d <= limits.BootJitter && d >= -limits.BootJitter
}

func (t *Tracker) needFull(cur *sessionauditv1.Snapshot, incomplete map[string]bool) bool {
	if t.state.Sequence == 0 || t.resync || t.bootChanged(cur) {
		return true
	}
	if t.opts.ResyncInterval > 0 {
		now := t.opts.Clock.Now()
		if now.Before(t.lastFull) || now.Sub(t.lastFull) >= t.opts.ResyncInterval {
			return true
		}
	}
	for class := range t.unknown {
		if !incomplete[class] {
			return true
		}
	}
	return false
}

// delta returns the changes from the state to cur, or nil when there is none.
// Errors, base and taken_at are left for the caller.
func (t *Tracker) delta(cur *sessionauditv1.Snapshot, incomplete map[string]bool) *sessionauditv1.Delta {
	d := &sessionauditv1.Delta{}
	changed := false
	if !proto.Equal(cur.GetHost(), t.state.Host) {
		d.Host = cur.GetHost()
		changed = true
	}
	if !incomplete[source.ClassLogonSession] {
		seen := make(map[string]bool, len(cur.GetLogonSessions()))
		for _, ls := range cur.GetLogonSessions() {
			seen[ls.GetLogonId()] = true
			if old := t.state.logon[ls.GetLogonId()]; old == nil || !proto.Equal(old, ls) {
				d.LogonSessionsUpserted = append(d.LogonSessionsUpserted, ls)
				changed = true
			}
		}
		// The ended, in logon ID order; without copying the state (this
		// runs at every poll).
		var ended []string
		for id := range t.state.logon {
			if !seen[id] {
				ended = append(ended, id)
			}
		}
		slices.SortFunc(ended, source.CompareLogonIDs)
		for _, id := range ended {
			d.LogonSessionsEnded = append(d.LogonSessionsEnded, &sessionauditv1.LogonSessionKey{LogonId: id})
			changed = true
		}
	}
	if !incomplete[source.ClassServerSession] {
		takenAt := cur.GetTakenAt().AsTime()
		seen := make(map[source.ServerSessionKey]bool, len(cur.GetServerSessions()))
		for _, ss := range cur.GetServerSessions() {
			k := source.KeyOfServerSession(ss)
			seen[k] = true
			if old, ok := t.state.server[k]; !ok || t.serverChanged(old, takenAt, ss) {
				d.ServerSessionsUpserted = append(d.ServerSessionsUpserted, ss)
				changed = true
			}
		}
		for _, k := range t.state.serverKeys() {
			if !seen[k] {
				d.ServerSessionsEnded = append(d.ServerSessionsEnded, &sessionauditv1.ServerSessionKey{ComputerName: k.ComputerName, UserName: k.UserName})
				changed = true
			}
		}
	}
	if !changed {
		return nil
	}
	return d
}

// serverChanged reports whether cur, observed at takenAt, differs from old in
// a way that counts (see Tracker).
func (t *Tracker) serverChanged(old serverEntry, takenAt time.Time, cur *sessionauditv1.ServerSession) bool {
	if !proto.Equal(stable(old.session), stable(cur)) {
		return true
	}
	start, ok := ServerSessionStart(takenAt, cur)
	if ok != old.hasStart {
		return true
	}
	if !ok {
		return false
	}
	moved := start.Sub(old.start)
	return moved > t.opts.StartTolerance || moved < -t.opts.StartTolerance
}

// stable returns a copy of s without its volatile properties.
func stable(s *sessionauditv1.ServerSession) *sessionauditv1.ServerSession {
	c := proto.Clone(s).(*sessionauditv1.ServerSession)
	c.ActiveTime, c.IdleTime, c.ResourcesOpened = nil, nil, nil
	if c.Smb != nil {
		// The mirror of MSFT_SmbSession: SecondsExists is ActiveTime,
		// SecondsIdle IdleTime, NumOpens ResourcesOpened.
		c.Smb.SecondsExists, c.Smb.SecondsIdle, c.Smb.NumOpens = nil, nil, nil
	}
	return c
}

// errorKey is what identifies a collection error for change detection.
type errorKey struct {
	kind                                   sessionauditv1.CollectionErrorKind
	class, property, instanceKey, rawValue string
}

// errorKeys returns the sorted, de-duplicated keys of errs.
func errorKeys(errs []*sessionauditv1.CollectionError) []errorKey {
	out := make([]errorKey, 0, len(errs))
	for _, e := range errs {
		out = append(out, errorKey{e.GetKind(), e.GetWmiClass(), e.GetProperty(), e.GetInstanceKey(), e.GetRawValue()})
	}
	slices.SortFunc(out, func(a, b errorKey) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.class, b.class), cmp.Compare(a.property, b.property),
			cmp.Compare(a.instanceKey, b.instanceKey), cmp.Compare(a.rawValue, b.rawValue))
	})
	return slices.Compact(out)
}

// deltaSessions is the number of sessions d carries, upserted and ended.
func deltaSessions(d *sessionauditv1.Delta) int {
	return len(d.GetLogonSessionsUpserted()) + len(d.GetLogonSessionsEnded()) +
		len(d.GetServerSessionsUpserted()) + len(d.GetServerSessionsEnded())
}
