package store

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// This file and intervals_late.go hold the interval rules of
// docs/design/0002-storage.md ("Interval rules", "Late reports"): how a
// host's reports become logon and server session intervals. They work on
// plain values in memory and never touch the database. ingest.go loads a
// host's state into a hostIntervals (loadState, then loadClosed for the
// closed intervals that intervals_closed.go names), applies the reports with
// hostIntervals.apply, and writes hostIntervals.changes. intervals_test.go
// tests each rule without a database.

// unknownBoot stands for "boot time not known yet" in boot_time columns.
var unknownBoot = time.Unix(0, 0).UTC()

// logonKey identifies a logon session of a host: (boot, LogonId).
type logonKey struct {
	boot int64 // UnixMicro
	id   string
}

func lk(boot time.Time, id string) logonKey { return logonKey{boot: boot.UnixMicro(), id: id} }

// peerKey identifies the remote end of a server session: (computer, user),
// as label ids.
type peerKey struct{ computer, user int32 }

// logonRow is a logon session interval as the rules see it.
type logonRow struct {
	id        int64 // 0 until stored
	boot      time.Time
	sess      LogonSession // all properties for new rows; LogonID, StartTime and LingeringSince for stored ones
	accountID int32
	authID    int32
	// lastSeen and endBefore are zero while open.
	lastSeen, endBefore time.Time
	// storedEnd is end_before as stored (zero for 'infinity'), for the
	// writer to find the row; the rules never change it.
	storedEnd time.Time
	// loc is where the stored row was read (its ctid), for the writer to
	// update it without searching (ingest.go); the rules never use it.
	loc rowLoc
	// dirty says that a stored row changed and must be written.
	dirty bool
}

func (r *logonRow) open() bool { return r.endBefore.IsZero() }

// serverRow is a server session interval as the rules see it; its fields
// are those of logonRow.
type serverRow struct {
	id                  int64
	start               time.Time
	sess                ServerSession
	peer                peerKey
	clientID, transport int32
	lastSeen, endBefore time.Time
	storedEnd           time.Time
	loc                 rowLoc
	dirty               bool
}

func (r *serverRow) open() bool { return r.endBefore.IsZero() }

// resolved maps interned strings and accounts to their ids.
type resolved struct {
	labels   map[string]int32
	accounts map[string]int32
}

func (r resolved) label(v string) int32 { return r.labels[v] }

// optLabel is the label of v, or 0 (stored as NULL) when v is empty.
func (r resolved) optLabel(v string) int32 {
	if v == "" {
		return 0
	}
	return r.labels[v]
}

func (r resolved) account(a *Account) int32 {
	if a == nil {
		return 0
	}
	return r.accounts[accountKey(a)]
}

// hostIntervals is what the rules know of one host during an Ingest call:
// its facts and observation times, the open intervals, the closed ones the
// reports may meet again, and every row loaded or created. The rules change
// it in memory; changes says what to write.
type hostIntervals struct {
	facts        Host
	factsChanged bool
	boot         time.Time // zero: unknown
	// bootSince is the observation from which boot is the host's boot: the
	// report that changed the boot to it (zero when not known: the boot has
	// not changed since the host's first report, or since before migration
	// 005). An interval that ended by then is immutable (frozen).
	bootSince time.Time
	// rename is the host's change of name in this call; nil when none.
	rename *HostRename
	// anomalies are the notes of what the rules refused to take as reported
	// (IngestResult.Anomalies).
	anomalies []Note
	// frozenMet lists, per session class, the sessions of the report being
	// applied that met a frozen interval, for its note.
	frozenMet [2][]string
	// lastSeen is the newest observation applied; logonSeenAt and
	// serverSeenAt the newest complete one per class (zero: none yet).
	lastSeen, logonSeenAt, serverSeenAt time.Time
	// incomplete lists the classes incomplete in the agent's last Snapshot
	// or Delta: those a Heartbeat does not confirm as complete.
	incomplete []string
	ids        resolved

	logonOpen    map[logonKey]*logonRow
	logonClosed  map[logonKey]*logonRow
	serverOpen   map[peerKey][]*serverRow
	serverClosed map[peerKey][]*serverRow
	logonRows    []*logonRow // every row loaded or created
	serverRows   []*serverRow
}

func newHostIntervals() hostIntervals {
	return hostIntervals{
		logonOpen:    make(map[logonKey]*logonRow),
		logonClosed:  make(map[logonKey]*logonRow),
		serverOpen:   make(map[peerKey][]*serverRow),
		serverClosed: make(map[peerKey][]*serverRow),
	}
}

// addLogon adds a stored logon interval. Of several closed intervals of one
// key only the one that ended last is kept for matching.
func (h *hostIntervals) addLogon(r *logonRow) {
	k := lk(r.boot, r.sess.LogonID)
	if r.open() {
		h.logonOpen[k] = r
	} else {
		if old, ok := h.logonClosed[k]; ok && old.endBefore.After(r.endBefore) {
			return
		}
		h.logonClosed[k] = r
	}
	h.logonRows = append(h.logonRows, r)
}

// addServer adds a stored server interval.
func (h *hostIntervals) addServer(r *serverRow) {
	if r.open() {
		h.serverOpen[r.peer] = append(h.serverOpen[r.peer], r)
	} else {
		h.serverClosed[r.peer] = append(h.serverClosed[r.peer], r)
	}
	h.serverRows = append(h.serverRows, r)
}

func (h *hostIntervals) currentBoot() time.Time {
	if h.boot.IsZero() {
		return unknownBoot
	}
	return h.boot
}

func (h *hostIntervals) peer(computer, user string) peerKey {
	return peerKey{h.ids.label(computer), h.ids.label(user)}
}

// isLate says whether a report observed at obs is late: not after the
// host's newest observation lastSeen (zero: none yet).
func isLate(lastSeen, obs time.Time) bool {
	return !lastSeen.IsZero() && !obs.After(lastSeen)
}

// apply applies one report (already validated and in sequence) and says
// whether it was late. A Snapshot or Delta also becomes the state the
// agent's next Heartbeat confirms.
func (h *hostIntervals) apply(r *Report) (late bool) {
	late = isLate(h.lastSeen, r.TakenAt)
	if late {
		h.applyLate(r)
	} else {
		h.applyLive(r)
	}
	if r.Kind != KindHeartbeat {
		h.incomplete = h.incompleteAfter(r, late) // gaps.go
	}
	return late
}

// completeClasses says which session lists r gives completely: those no
// CollectionError names; for a Heartbeat, those complete in the state it
// confirms.
func (h *hostIntervals) completeClasses(r *Report) (logon, server bool) {
	if r.Kind != KindSnapshot && h.unsettled() {
		return false, false // after a coverage gap, until a Snapshot (gaps.go)
	}
	if r.Kind == KindHeartbeat {
		return !slices.Contains(h.incomplete, ClassLogonSession), !slices.Contains(h.incomplete, ClassServerSession)
	}
	return !r.incomplete(ClassLogonSession), !r.incomplete(ClassServerSession)
}

// applyLive applies a report newer than everything applied for the host.
func (h *hostIntervals) applyLive(r *Report) {
	obs := r.TakenAt
	if r.Host != nil {
		h.applyFacts(r.Sequence, r.Host, obs)
	}
	logonDone, serverDone := h.completeClasses(r)
	switch r.Kind {
	case KindSnapshot:
		h.applyFull(r, logonDone, serverDone)
	case KindDelta:
		h.applyDelta(r)
	}
	h.noteFrozenMet(r.Sequence)
	if logonDone {
		h.logonSeenAt = obs
	}
	if serverDone {
		h.serverSeenAt = obs
	}
	h.lastSeen = obs
}

// applyFull applies a full snapshot: its sessions are open, and the open
// sessions of a complete list that it lacks end.
func (h *hostIntervals) applyFull(r *Report, logonDone, serverDone bool) {
	obs := r.TakenAt
	seen := make(map[*logonRow]bool, len(r.LogonSessions))
	for i := range r.LogonSessions {
		seen[h.upsertLogon(&r.LogonSessions[i], obs)] = true
	}
	if logonDone {
		for _, row := range h.logonOpen {
			if !seen[row] {
				h.closeLogon(row, obs)
			}
		}
	}
	taken := make(map[*serverRow]bool, len(r.ServerSessions))
	for i := range r.ServerSessions {
		taken[h.upsertServer(&r.ServerSessions[i], obs, false, taken)] = true
	}
	if serverDone {
		for _, rows := range h.serverOpen {
			for _, row := range slices.Clone(rows) {
				if !taken[row] {
					h.closeServer(row, obs)
				}
			}
		}
	}
}

// applyDelta applies a Delta: its sessions are open, the ones it names as
// ended end.
func (h *hostIntervals) applyDelta(r *Report) {
	obs := r.TakenAt
	for i := range r.LogonSessions {
		h.upsertLogon(&r.LogonSessions[i], obs)
	}
	for _, id := range r.EndedLogonIDs {
		if row, ok := h.logonOpen[lk(h.currentBoot(), id)]; ok {
			h.closeLogon(row, obs)
		}
	}
	taken := make(map[*serverRow]bool, len(r.ServerSessions))
	for i := range r.ServerSessions {
		taken[h.upsertServer(&r.ServerSessions[i], obs, true, taken)] = true
	}
	for _, k := range r.EndedServerSessions {
		p := h.peer(k.ComputerName, k.UserName)
		for _, row := range slices.Clone(h.serverOpen[p]) {
			h.closeServer(row, obs)
		}
	}
}

// applyFacts records the host's facts (and a change of its name) and
// handles a boot change: a boot becoming known re-keys the open logon
// sessions; a new boot ends every open session of the old one, and the
// intervals that ended by then become immutable. A boot earlier than the
// current one is noted as an anomaly, and taken as a new boot all the same.
func (h *hostIntervals) applyFacts(seq uint64, host *Host, obs time.Time) {
	f := *host
	newBoot := f.LastBootTime
	f.LastBootTime = time.Time{}
	old := h.facts
	old.LastBootTime, old.MachineGUID = time.Time{}, f.MachineGUID
	if f != old {
		h.noteRename(old, f)
		h.facts, h.factsChanged = f, true
	}
	if newBoot.IsZero() {
		return
	}
	cur := h.currentBoot()
	switch {
	case cur.Equal(unknownBoot):
		// The open sessions stored under "unknown" belong to this boot.
		h.rekeyOpen(newBoot)
	case absDur(newBoot.Sub(cur)) > BootJitter:
		if newBoot.Before(cur) {
			h.note(seq, "Host.LastBootTime", fmt.Sprintf("moved back from %s to %s (a virtual machine restored from a snapshot, "+
				"a clock stepped back, or a forged report): taken as a new boot from this observation; the intervals that "+
				"ended before it are kept as stored, never reopened", cur.UTC().Format(time.RFC3339Nano), newBoot.UTC().Format(time.RFC3339Nano)))
		}
		h.endBoot(newBoot, obs)
		h.bootSince = obs
	default:
		return // the same boot
	}
	h.boot, h.factsChanged = newBoot, true
}

// noteRename records that the host's name (host name and domain) changed
// from old's to f's.
func (h *hostIntervals) noteRename(old, f Host) {
	if old.Hostname == f.Hostname && old.Domain == f.Domain {
		return
	}
	if h.rename == nil {
		h.rename = &HostRename{From: HostName{Hostname: old.Hostname, Domain: old.Domain}}
	}
	h.rename.To = HostName{Hostname: f.Hostname, Domain: f.Domain}
}

// renamed returns the host's change of name over the reports applied, nil
// when its name is what it was before them.
func (h *hostIntervals) renamed() *HostRename {
	if h.rename == nil || h.rename.From == h.rename.To {
		return nil
	}
	r := *h.rename
	return &r
}

// note records an anomaly of report seq.
func (h *hostIntervals) note(seq uint64, field, change string) {
	h.anomalies = append(h.anomalies, Note{Sequence: seq, Field: field, Change: change})
}

// frozen says whether a closed interval that ended before endBefore is
// immutable: it ended before the host's current stay in its boot began
// (bootSince; when not known, the boot itself), so it belongs to an earlier
// boot, or to an earlier stay in this one that the host left. A frozen
// interval is never reopened: a session seen again gets a new interval
// (docs/design/0002-storage.md, "Closed intervals are immutable").
func (h *hostIntervals) frozen(endBefore time.Time) bool {
	since := h.bootSince
	if since.IsZero() {
		since = h.boot
	}
	return !since.IsZero() && !endBefore.After(since)
}

// Classes of frozenMet.
const (
	frozenLogon = iota
	frozenServer
)

// noteFrozenMet notes the sessions of report seq that met a frozen
// interval, one note per class.
func (h *hostIntervals) noteFrozenMet(seq uint64) {
	for class, field := range [2]string{"LogonSessions", "ServerSessions"} {
		met := h.frozenMet[class]
		if len(met) == 0 {
			continue
		}
		list := met
		if len(list) > 10 {
			list = list[:10]
		}
		more := ""
		if len(met) > len(list) {
			more = fmt.Sprintf(" and %d more", len(met)-len(list))
		}
		h.note(seq, field, fmt.Sprintf("%d seen again after their intervals ended before the host's current boot began "+
			"(a boot it had left, or another boot): each got a new interval, and the ended ones are kept as stored: %s%s",
			len(met), strings.Join(list, ", "), more))
		h.frozenMet[class] = met[:0]
	}
}

// rekeyOpen moves the open logon sessions to boot.
func (h *hostIntervals) rekeyOpen(boot time.Time) {
	for k, r := range h.logonOpen {
		delete(h.logonOpen, k)
		r.boot, r.dirty = boot, true
		h.logonOpen[lk(boot, r.sess.LogonID)] = r
	}
}

// endBoot ends every open session when the host booted at newBoot, seen
// at obs.
func (h *hostIntervals) endBoot(newBoot, obs time.Time) {
	for _, r := range h.logonOpen {
		h.closeLogon(r, bootEnd(newBoot, maxTime(h.logonSeenAt, r.sess.StartTime), obs))
	}
	for _, rows := range h.serverOpen {
		for _, r := range slices.Clone(rows) {
			h.closeServer(r, bootEnd(newBoot, maxTime(h.serverSeenAt, r.start), obs))
		}
	}
}

// bootEnd is end_before of a session last seen at last that a new boot at
// newBoot, observed at obs, ended: the boot when it lies in (last, obs] (the
// machine was down before it booted: the tightest correct bound), else obs.
func bootEnd(newBoot, last, obs time.Time) time.Time {
	if newBoot.After(last) && !newBoot.After(obs) {
		return newBoot
	}
	return obs
}

// newLogonRow is a new interval of ls in boot; its start is StartTime, or
// obs, the first observation, when StartTime is absent.
func (h *hostIntervals) newLogonRow(boot time.Time, ls *LogonSession, obs time.Time) *logonRow {
	r := &logonRow{boot: boot, sess: *ls, accountID: h.ids.account(ls.Account),
		authID: h.ids.optLabel(ls.AuthenticationPackage)}
	if r.sess.StartTime.IsZero() {
		r.sess.StartTime = obs
	}
	return r
}

// newServerRow is a new interval of ss with peer p, started at start.
func (h *hostIntervals) newServerRow(p peerKey, start time.Time, ss *ServerSession) *serverRow {
	return &serverRow{start: start, sess: *ss, peer: p,
		clientID: h.ids.optLabel(ss.ClientType), transport: h.ids.optLabel(ss.TransportName)}
}

// upsertLogon makes ls open: it is kept if already open, reopened if it was
// taken as ended, created otherwise. An account learnt later fills in a
// missing one.
func (h *hostIntervals) upsertLogon(ls *LogonSession, obs time.Time) *logonRow {
	boot := h.currentBoot()
	k := lk(boot, ls.LogonID)
	acct := h.ids.account(ls.Account)
	if r, ok := h.logonOpen[k]; ok {
		if r.accountID == 0 && acct != 0 {
			r.accountID, r.dirty = acct, true
		}
		if !r.sess.LingeringSince.Equal(ls.LingeringSince) {
			r.sess.LingeringSince, r.dirty = ls.LingeringSince, true
		}
		return r
	}
	r, ok := h.logonClosed[k]
	if ok && !h.frozen(r.endBefore) {
		delete(h.logonClosed, k)
		r.lastSeen, r.endBefore, r.dirty = time.Time{}, time.Time{}, true
		if r.accountID == 0 && acct != 0 {
			r.accountID = acct
		}
		r.sess.LingeringSince = ls.LingeringSince
		h.logonOpen[k] = r
		return r
	}
	frozen := ok
	r = h.newLogonRow(boot, ls, obs)
	if frozen {
		// Seen again after its interval was frozen: a new interval from
		// this observation, which does not overlap the frozen one.
		r.sess.StartTime = obs
		h.frozenMet[frozenLogon] = append(h.frozenMet[frozenLogon], "LogonId "+ls.LogonID)
	}
	h.logonOpen[k] = r
	h.logonRows = append(h.logonRows, r)
	return r
}

// upsertServer finds or creates the open interval of ss, reopening a closed
// one it matches. In a Delta, an open interval of the same peer with another
// start is a session that reconnected: it ends. Rows in taken are already
// matched by another session of this report.
func (h *hostIntervals) upsertServer(ss *ServerSession, obs time.Time, delta bool, taken map[*serverRow]bool) *serverRow {
	p := h.peer(ss.ComputerName, ss.UserName)
	start, known := serverStart(ss, obs)
	if r := matchOpen(h.serverOpen[p], start, known, taken); r != nil {
		return r
	}
	if known {
		r := matchOpen(h.serverClosed[p], start, true, taken)
		if r != nil && h.frozen(r.endBefore) {
			// Never reopened; an unfrozen interval within reach may be.
			r = matchOpen(slices.DeleteFunc(slices.Clone(h.serverClosed[p]), func(x *serverRow) bool { return h.frozen(x.endBefore) }),
				start, true, taken)
			if r == nil {
				h.frozenMet[frozenServer] = append(h.frozenMet[frozenServer], "ComputerName "+ss.ComputerName+" UserName "+ss.UserName)
			}
		}
		if r != nil {
			h.serverClosed[p] = slices.DeleteFunc(h.serverClosed[p], func(x *serverRow) bool { return x == r })
			r.lastSeen, r.endBefore, r.dirty = time.Time{}, time.Time{}, true
			h.serverOpen[p] = append(h.serverOpen[p], r)
			return r
		}
	}
	if delta {
		for _, r := range slices.Clone(h.serverOpen[p]) {
			h.closeServer(r, obs)
		}
	}
	r := h.newServerRow(p, start, ss)
	h.serverOpen[p] = append(h.serverOpen[p], r)
	h.serverRows = append(h.serverRows, r)
	return r
}

// closeLogon ends an open logon interval: last seen at the host's last
// complete observation of logon sessions, gone at end.
func (h *hostIntervals) closeLogon(r *logonRow, end time.Time) {
	r.lastSeen, r.endBefore = closeBounds(r.sess.StartTime, h.logonSeenAt, end)
	r.dirty = true
	k := lk(r.boot, r.sess.LogonID)
	delete(h.logonOpen, k)
	h.logonClosed[k] = r
}

// closeServer is closeLogon for a server interval.
func (h *hostIntervals) closeServer(r *serverRow, end time.Time) {
	r.lastSeen, r.endBefore = closeBounds(r.start, h.serverSeenAt, end)
	r.dirty = true
	h.serverOpen[r.peer] = slices.DeleteFunc(h.serverOpen[r.peer], func(x *serverRow) bool { return x == r })
	h.serverClosed[r.peer] = append(h.serverClosed[r.peer], r)
}

// serverStart is the start of a server session observed at obs: obs minus
// ActiveTime, and whether ActiveTime was known.
func serverStart(ss *ServerSession, obs time.Time) (time.Time, bool) {
	if ss.ActiveTime == nil {
		return obs, false
	}
	return obs.Add(-time.Duration(*ss.ActiveTime) * time.Second), true
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// matchOpen finds among rows the interval a server session starting at start
// belongs to: the nearest start within ServerStartJitter, or the nearest row
// when the start is not known. Rows in taken are skipped.
func matchOpen(rows []*serverRow, start time.Time, known bool, taken map[*serverRow]bool) *serverRow {
	var best *serverRow
	for _, r := range rows {
		if taken[r] {
			continue
		}
		d := absDur(r.start.Sub(start))
		if known && d > ServerStartJitter {
			continue
		}
		if best == nil || d < absDur(best.start.Sub(start)) {
			best = r
		}
	}
	return best
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// closeBounds returns (last_seen, end_before) for an interval that started at
// start, was last seen (as far as the host's state says) at seen, and was
// gone at end: end_before > last_seen >= start always holds.
func closeBounds(start, seen, end time.Time) (time.Time, time.Time) {
	last := maxTime(seen, start)
	if !end.After(last) {
		end = last.Add(time.Microsecond)
	}
	return last, end
}

// intervalChanges are the rules' decisions for one Ingest call, net of
// every report applied: the intervals to insert (open, or already closed
// when they ended within the call or came from a late report) and the stored
// ones to update (ended, reopened, re-keyed to a boot, bounds tightened,
// account filled in).
type intervalChanges struct {
	newLogon, updLogon   []*logonRow  // new sorted by (boot, LogonID), updated by id
	newServer, updServer []*serverRow // new sorted by (start, peer), updated by id
}

// changes returns what the reports applied so far require writing.
func (h *hostIntervals) changes() intervalChanges {
	var c intervalChanges
	for _, r := range h.logonRows {
		if r.id == 0 {
			c.newLogon = append(c.newLogon, r)
		} else if r.dirty {
			c.updLogon = append(c.updLogon, r)
		}
	}
	for _, r := range h.serverRows {
		if r.id == 0 {
			c.newServer = append(c.newServer, r)
		} else if r.dirty {
			c.updServer = append(c.updServer, r)
		}
	}
	slices.SortFunc(c.newLogon, func(a, b *logonRow) int {
		if c := a.boot.Compare(b.boot); c != 0 {
			return c
		}
		return strings.Compare(a.sess.LogonID, b.sess.LogonID)
	})
	slices.SortFunc(c.newServer, func(a, b *serverRow) int {
		if c := a.start.Compare(b.start); c != 0 {
			return c
		}
		if c := cmp.Compare(a.peer.computer, b.peer.computer); c != 0 {
			return c
		}
		return cmp.Compare(a.peer.user, b.peer.user)
	})
	slices.SortFunc(c.updLogon, func(a, b *logonRow) int { return cmp.Compare(a.id, b.id) })
	slices.SortFunc(c.updServer, func(a, b *serverRow) int { return cmp.Compare(a.id, b.id) })
	return c
}
