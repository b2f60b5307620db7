package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// unknownBoot stands for "boot time not known yet" in boot_time columns.
var unknownBoot = time.Unix(0, 0).UTC()

// Ingest stores the reports of one agent about one host, in one transaction.
//
// Reports are taken in the given order (the agent's spool order). A report
// numbered at or below the agent's high-water mark is a duplicate: it changes
// nothing and is acknowledged again. An invalid report is listed in
// IngestResult.Rejected and changes nothing. A Delta or Heartbeat whose
// BaseSequence is not the agent's high-water mark stops the call with a
// *ResyncError (errors.Is(err, ErrResyncRequired)); the reports before it are
// stored and the returned IngestResult says which. Any other error means
// nothing was stored.
//
// Concurrent calls for the same host take turns on the host's row lock; calls
// for different hosts run in parallel.
func (s *Store) Ingest(ctx context.Context, agentID, machineGUID string, reports []Report) (IngestResult, error) {
	var res IngestResult
	machineGUID = strings.ToLower(strings.Trim(machineGUID, "{}"))
	if err := validKey("machineGUID", machineGUID); err != nil {
		return res, err
	}
	if err := validKey("agentID", agentID); err != nil {
		return res, err
	}
	now := s.now()
	clean := make([]Report, 0, len(reports))
	notes := make(map[uint64][]Note)
	for _, r := range reports {
		c, n, err := cleanReport(r, machineGUID, now)
		if err != nil {
			res.Rejected = append(res.Rejected, RejectedReport{Sequence: r.Sequence, Err: err})
			continue
		}
		clean = append(clean, c)
		if len(n) > 0 {
			notes[c.Sequence] = append(notes[c.Sequence], n...)
		}
	}
	ids, err := s.resolve(ctx, clean)
	if err != nil {
		return res, err
	}

	// BEGIN travels in the first pipeline and COMMIT in the last, so that a
	// typical call costs two round trips.
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("store: ingest host %s: acquire a connection: %w", machineGUID, err)
	}
	defer pc.Release()
	tx := pc.Conn()
	committed := false
	defer func() {
		if !committed {
			_, _ = tx.Exec(context.Background(), "ROLLBACK")
		}
	}()

	needSessions := false
	for _, r := range clean {
		needSessions = needSessions || r.Kind != KindHeartbeat
	}
	st, err := loadState(ctx, tx, agentID, machineGUID, now, needSessions)
	if err != nil {
		return res, fmt.Errorf("store: ingest host %s agent %q: %w", machineGUID, agentID, err)
	}
	st.ids = ids
	if err := st.loadClosed(ctx, tx, clean); err != nil {
		return res, fmt.Errorf("store: ingest host %s agent %q: %w", machineGUID, agentID, err)
	}

	var resync error
	var applied []uint64
	for _, r := range clean {
		if r.Sequence <= st.hwm {
			res.Duplicates = append(res.Duplicates, r.Sequence)
			continue
		}
		if r.Kind != KindFull && r.BaseSequence != st.stateSeq {
			resync = &ResyncError{AgentID: agentID, MachineGUID: machineGUID,
				Sequence: r.Sequence, BaseSequence: r.BaseSequence, Stored: st.stateSeq}
			break
		}
		if st.lastSeen.IsZero() || r.ObservedAt.After(st.lastSeen) {
			st.applyLive(&r)
		} else {
			st.applyLate(&r)
			res.Late = append(res.Late, r.Sequence)
		}
		st.hwm = r.Sequence
		if r.Kind != KindHeartbeat {
			st.stateSeq = r.Sequence
			st.incomplete = st.incomplete[:0]
			for _, c := range []string{ClassLogonSession, ClassServerSession} {
				if r.incomplete(c) {
					st.incomplete = append(st.incomplete, c)
				}
			}
		}
		applied = append(applied, r.Sequence)
		res.Sanitized = append(res.Sanitized, notes[r.Sequence]...)
	}
	if err := st.flush(ctx, tx, agentID, now, res.Sanitized); err != nil {
		return IngestResult{Rejected: res.Rejected}, fmt.Errorf("store: ingest host %s agent %q: %w", machineGUID, agentID, err)
	}
	committed = true
	res.Applied = applied
	res.Acknowledged = st.hwm
	return res, resync
}

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

func (s *Store) resolve(ctx context.Context, reports []Report) (resolved, error) {
	var labels []string
	var accounts []*Account
	for i := range reports {
		r := &reports[i]
		for j := range r.LogonSessions {
			ls := &r.LogonSessions[j]
			if ls.AuthenticationPackage != "" {
				labels = append(labels, ls.AuthenticationPackage)
			}
			if ls.Account != nil {
				accounts = append(accounts, ls.Account)
			}
		}
		for _, ss := range r.ServerSessions {
			labels = append(labels, ss.ComputerName, ss.UserName)
			if ss.ClientType != "" {
				labels = append(labels, ss.ClientType)
			}
			if ss.TransportName != "" {
				labels = append(labels, ss.TransportName)
			}
		}
		for _, k := range r.EndedServerSessions {
			labels = append(labels, k.ComputerName, k.UserName)
		}
	}
	return s.dictionaryIDs(ctx, labels, accounts)
}

// logonKey identifies a logon session of a host: (boot, LogonId).
type logonKey struct {
	boot int64 // UnixMicro
	id   string
}

// peerKey identifies the remote end of a server session: (computer, user).
type peerKey struct{ computer, user int32 }

// logonRow is a logon session interval as the ingest sees it.
type logonRow struct {
	id        int64 // 0 until stored
	boot      time.Time
	sess      LogonSession // all properties for new rows; LogonID and StartTime for stored ones
	accountID int32
	authID    int32
	// lastSeen and endBefore are zero while open.
	lastSeen, endBefore time.Time
	// storedEnd is end_before as stored (zero for 'infinity'), to find the row.
	storedEnd time.Time
	dirty     bool
}

func (r *logonRow) open() bool { return r.endBefore.IsZero() }

// serverRow is a server session interval as the ingest sees it.
type serverRow struct {
	id                  int64
	start               time.Time
	sess                ServerSession
	peer                peerKey
	clientID, transport int32
	lastSeen, endBefore time.Time
	storedEnd           time.Time
	dirty               bool
}

func (r *serverRow) open() bool { return r.endBefore.IsZero() }

// ingestState is a host's state during one Ingest call: the rows the reports
// touch, changed in memory and written once at the end.
type ingestState struct {
	hostID       int32
	facts        Host
	factsChanged bool
	boot         time.Time
	// lastSeen is the newest observation applied; logonSeenAt and
	// serverSeenAt the newest complete one per class (zero: none yet).
	lastSeen, logonSeenAt, serverSeenAt time.Time
	hwm                                 uint64
	ids                                 resolved
	// stateSeq is the agent's last stored Snapshot or Delta, the base of its
	// next Delta or Heartbeat; incomplete lists the classes incomplete in it.
	stateSeq   uint64
	incomplete []string

	logonOpen    map[logonKey]*logonRow
	logonClosed  map[logonKey]*logonRow
	serverOpen   map[peerKey][]*serverRow
	serverClosed map[peerKey][]*serverRow
	logonRows    []*logonRow // every row loaded or created
	serverRows   []*serverRow
}

func lk(boot time.Time, id string) logonKey { return logonKey{boot: boot.UnixMicro(), id: id} }

func nullTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid || t.InfinityModifier != pgtype.Finite {
		return time.Time{}
	}
	return t.Time.UTC()
}

// loadState locks the host's row (creating it), then the agent's, and reads
// the host's open sessions.
func loadState(ctx context.Context, tx *pgx.Conn, agentID, guid string, now time.Time, sessions bool) (*ingestState, error) {
	st := &ingestState{
		logonOpen:    make(map[logonKey]*logonRow),
		logonClosed:  make(map[logonKey]*logonRow),
		serverOpen:   make(map[peerKey][]*serverRow),
		serverClosed: make(map[peerKey][]*serverRow),
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// Generic plans: the statements of the ingest are planned once per
	// connection. With custom plans PostgreSQL re-planned the read of
	// closed intervals at every call (its partitions are pruned by a
	// parameter), which cost more than executing it; a generic plan prunes
	// them when it starts.
	b.Queue("SET LOCAL plan_cache_mode = force_generic_plan")
	var lastSeen, logonSeen, serverSeen pgtype.Timestamptz
	b.Queue(`INSERT INTO host (machine_guid, first_received, last_received) VALUES ($1, $2, $2)
		ON CONFLICT (machine_guid) DO UPDATE SET last_received = greatest(host.last_received, excluded.last_received)
		RETURNING host_id, hostname, domain, os_caption, os_version, os_build, agent_version,
		          boot_time, last_seen, logon_seen_at, server_seen_at`, guid, now).
		QueryRow(func(row pgx.Row) error {
			return row.Scan(&st.hostID, &st.facts.Hostname, &st.facts.Domain, &st.facts.OSCaption,
				&st.facts.OSVersion, &st.facts.OSBuild, &st.facts.AgentVersion,
				&st.boot, &lastSeen, &logonSeen, &serverSeen)
		})
	var hwm, stateSeq int64
	b.Queue(`INSERT INTO agent (agent_id, host_id, first_received, last_received)
		VALUES ($1, (SELECT host_id FROM host WHERE machine_guid = $2), $3, $3)
		ON CONFLICT (agent_id) DO UPDATE SET host_id = excluded.host_id, last_received = excluded.last_received
		RETURNING applied_sequence, state_sequence, incomplete_classes`, agentID, guid, now).
		QueryRow(func(row pgx.Row) error { return row.Scan(&hwm, &stateSeq, &st.incomplete) })
	if sessions {
		b.Queue(`SELECT id, boot_time, logon_id, start_time, coalesce(account_id, 0) FROM logon_session
			WHERE end_before = 'infinity' AND host_id = (SELECT host_id FROM host WHERE machine_guid = $1)`, guid).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					r := &logonRow{}
					if err := rows.Scan(&r.id, &r.boot, &r.sess.LogonID, &r.sess.StartTime, &r.accountID); err != nil {
						return err
					}
					r.boot, r.sess.StartTime = r.boot.UTC(), r.sess.StartTime.UTC()
					st.logonOpen[lk(r.boot, r.sess.LogonID)] = r
					st.logonRows = append(st.logonRows, r)
				}
				return rows.Err()
			})
		b.Queue(`SELECT id, start_time, computer_label, user_label FROM server_session
			WHERE end_before = 'infinity' AND host_id = (SELECT host_id FROM host WHERE machine_guid = $1)`, guid).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					r := &serverRow{}
					if err := rows.Scan(&r.id, &r.start, &r.peer.computer, &r.peer.user); err != nil {
						return err
					}
					r.start = r.start.UTC()
					st.serverOpen[r.peer] = append(st.serverOpen[r.peer], r)
					st.serverRows = append(st.serverRows, r)
				}
				return rows.Err()
			})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("lock host and read its open sessions: %w", err)
	}
	st.hwm, st.stateSeq = uint64(hwm), uint64(stateSeq)
	st.boot = st.boot.UTC()
	st.lastSeen, st.logonSeenAt, st.serverSeenAt = nullTime(lastSeen), nullTime(logonSeen), nullTime(serverSeen)
	return st, nil
}

// loadClosed reads the closed intervals the reports may meet again: a
// logon session seen after it was taken as ended (WMI's stale or flickering
// rows), or sessions a late report mentions.
func (st *ingestState) loadClosed(ctx context.Context, tx *pgx.Conn, reports []Report) error {
	var logonIDs []string
	logonFrom := time.Time{}
	lower := func(t *time.Time, v time.Time) {
		if !v.IsZero() && (t.IsZero() || v.Before(*t)) {
			*t = v
		}
	}
	var computers []int32
	serverFrom := time.Time{}
	late := st.lastSeen
	bootFrom := st.currentBoot()
	openIDs := make(map[string]bool, len(st.logonOpen))
	for k := range st.logonOpen {
		openIDs[k.id] = true
	}
	for i := range reports {
		r := &reports[i]
		if r.Sequence <= st.hwm {
			continue
		}
		isLate := !late.IsZero() && !r.ObservedAt.After(late)
		if !isLate {
			late = r.ObservedAt
		}
		for _, ls := range r.LogonSessions {
			if !isLate && (openIDs[ls.LogonID] || ls.StartTime.After(st.logonSeenAt)) {
				// Open, or started after the last complete observation: it
				// cannot have been stored as ended.
				continue
			}
			logonIDs = append(logonIDs, ls.LogonID)
			lower(&logonFrom, ls.StartTime)
		}
		if r.Host != nil && !r.Host.LastBootTime.IsZero() {
			lower(&bootFrom, r.Host.LastBootTime)
		}
		if isLate {
			logonIDs = append(logonIDs, r.EndedLogonIDs...)
			if len(r.EndedLogonIDs) > 0 {
				lower(&logonFrom, Earliest)
			}
			for _, k := range r.EndedServerSessions {
				computers = append(computers, st.ids.label(k.ComputerName))
				lower(&serverFrom, Earliest)
			}
		}
		for _, ss := range r.ServerSessions {
			p := peerKey{st.ids.label(ss.ComputerName), st.ids.label(ss.UserName)}
			start, known := serverStart(&ss, r.ObservedAt)
			if !isLate && (matchOpen(st.serverOpen[p], start, known, nil) != nil ||
				(known && start.After(st.serverSeenAt.Add(ServerStartJitter)))) {
				continue
			}
			computers = append(computers, p.computer)
			if known {
				lower(&serverFrom, start.Add(-ServerStartJitter))
			} else {
				lower(&serverFrom, Earliest)
			}
		}
	}
	if len(logonIDs) == 0 && len(computers) == 0 {
		return nil
	}
	// A stored start is the session's StartTime, or the observation that
	// first saw it when StartTime was absent or clamped: never before its
	// boot (give or take a day for StartTimes stamped during boot).
	lower(&logonFrom, bootFrom.Add(-24*time.Hour))
	b := &pgx.Batch{}
	if len(logonIDs) > 0 {
		// end_before > start_time >= $2: the bound prunes the monthly
		// partitions before $2's month (when the generic plan starts).
		b.Queue(`SELECT id, boot_time, logon_id, start_time, last_seen, end_before, coalesce(account_id, 0) FROM logon_session
			WHERE host_id = $1 AND start_time >= $2 AND end_before > $2 AND logon_id = ANY($3) AND end_before < 'infinity'`,
			st.hostID, logonFrom, logonIDs).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					r := &logonRow{}
					if err := rows.Scan(&r.id, &r.boot, &r.sess.LogonID, &r.sess.StartTime, &r.lastSeen, &r.endBefore, &r.accountID); err != nil {
						return err
					}
					r.boot, r.sess.StartTime, r.lastSeen, r.endBefore = r.boot.UTC(), r.sess.StartTime.UTC(), r.lastSeen.UTC(), r.endBefore.UTC()
					r.storedEnd = r.endBefore
					k := lk(r.boot, r.sess.LogonID)
					if old, ok := st.logonClosed[k]; ok && old.endBefore.After(r.endBefore) {
						continue // keep the latest interval of a key
					}
					st.logonClosed[k] = r
					st.logonRows = append(st.logonRows, r)
				}
				return rows.Err()
			})
	}
	if len(computers) > 0 {
		b.Queue(`SELECT id, start_time, computer_label, user_label, last_seen, end_before FROM server_session
			WHERE host_id = $1 AND start_time >= $2 AND end_before > $2 AND computer_label = ANY($3) AND end_before < 'infinity'`,
			st.hostID, serverFrom, computers).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					r := &serverRow{}
					if err := rows.Scan(&r.id, &r.start, &r.peer.computer, &r.peer.user, &r.lastSeen, &r.endBefore); err != nil {
						return err
					}
					r.start, r.lastSeen, r.endBefore = r.start.UTC(), r.lastSeen.UTC(), r.endBefore.UTC()
					r.storedEnd = r.endBefore
					st.serverClosed[r.peer] = append(st.serverClosed[r.peer], r)
					st.serverRows = append(st.serverRows, r)
				}
				return rows.Err()
			})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("read closed sessions the reports mention: %w", err)
	}
	return nil
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
// belongs to: the start within ServerStartJitter, or any row when the start
// is not known. Rows in taken are skipped.
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
// gone at end: end_before is always after last_seen.
func closeBounds(start, seen, end time.Time) (time.Time, time.Time) {
	last := maxTime(seen, start)
	if !end.After(last) {
		end = last.Add(time.Microsecond)
	}
	return last, end
}

func (st *ingestState) closeLogon(r *logonRow, end time.Time) {
	r.lastSeen, r.endBefore = closeBounds(r.sess.StartTime, st.logonSeenAt, end)
	r.dirty = true
	k := lk(r.boot, r.sess.LogonID)
	delete(st.logonOpen, k)
	st.logonClosed[k] = r
}

func (st *ingestState) closeServer(r *serverRow, end time.Time) {
	r.lastSeen, r.endBefore = closeBounds(r.start, st.serverSeenAt, end)
	r.dirty = true
	st.serverOpen[r.peer] = slices.DeleteFunc(st.serverOpen[r.peer], func(x *serverRow) bool { return x == r })
	st.serverClosed[r.peer] = append(st.serverClosed[r.peer], r)
}

func (st *ingestState) currentBoot() time.Time {
	if st.boot.IsZero() {
		return unknownBoot
	}
	return st.boot
}

// applyFacts records the host's facts and handles a boot change: every open
// session of the old boot ends, before the new boot when that bound is
// tighter than the observation.
func (st *ingestState) applyFacts(h *Host, obs time.Time) {
	f := *h
	newBoot := f.LastBootTime
	f.LastBootTime = time.Time{}
	old := st.facts
	old.LastBootTime, old.MachineGUID = time.Time{}, f.MachineGUID
	if f != old {
		st.facts, st.factsChanged = f, true
	}
	if newBoot.IsZero() {
		return
	}
	cur := st.currentBoot()
	switch {
	case cur.Equal(unknownBoot):
		// The boot becomes known: the open sessions stored under "unknown"
		// belong to it.
		for k, r := range st.logonOpen {
			delete(st.logonOpen, k)
			r.boot, r.dirty = newBoot, true
			st.logonOpen[lk(newBoot, r.sess.LogonID)] = r
		}
		st.boot, st.factsChanged = newBoot, true
	case absDur(newBoot.Sub(cur)) > BootJitter:
		for _, r := range st.logonOpen {
			last := maxTime(st.logonSeenAt, r.sess.StartTime)
			end := obs
			if newBoot.After(last) && !newBoot.After(obs) {
				end = newBoot
			}
			st.closeLogon(r, end)
		}
		for _, rows := range st.serverOpen {
			for _, r := range slices.Clone(rows) {
				last := maxTime(st.serverSeenAt, r.start)
				end := obs
				if newBoot.After(last) && !newBoot.After(obs) {
					end = newBoot
				}
				st.closeServer(r, end)
			}
		}
		st.boot, st.factsChanged = newBoot, true
	}
}

// upsertLogon makes ls open: it is kept if already open, reopened if it was
// taken as ended, created otherwise.
func (st *ingestState) upsertLogon(ls *LogonSession, obs time.Time) *logonRow {
	boot := st.currentBoot()
	k := lk(boot, ls.LogonID)
	acct := st.ids.account(ls.Account)
	if r, ok := st.logonOpen[k]; ok {
		if r.accountID == 0 && acct != 0 {
			r.accountID, r.dirty = acct, true
		}
		return r
	}
	if r, ok := st.logonClosed[k]; ok {
		delete(st.logonClosed, k)
		r.lastSeen, r.endBefore, r.dirty = time.Time{}, time.Time{}, true
		if r.accountID == 0 && acct != 0 {
			r.accountID = acct
		}
		st.logonOpen[k] = r
		return r
	}
	r := &logonRow{boot: boot, sess: *ls, accountID: acct, authID: st.ids.optLabel(ls.AuthenticationPackage)}
	if r.sess.StartTime.IsZero() {
		r.sess.StartTime = obs
	}
	st.logonOpen[k] = r
	st.logonRows = append(st.logonRows, r)
	return r
}

// upsertServer finds or creates the open interval of ss. In a Delta, an open
// interval of the same peer with another start is a session that
// reconnected: it ends.
func (st *ingestState) upsertServer(ss *ServerSession, obs time.Time, delta bool, taken map[*serverRow]bool) *serverRow {
	p := peerKey{st.ids.label(ss.ComputerName), st.ids.label(ss.UserName)}
	start, known := serverStart(ss, obs)
	if r := matchOpen(st.serverOpen[p], start, known, taken); r != nil {
		return r
	}
	if known {
		if r := matchOpen(st.serverClosed[p], start, true, taken); r != nil {
			st.serverClosed[p] = slices.DeleteFunc(st.serverClosed[p], func(x *serverRow) bool { return x == r })
			r.lastSeen, r.endBefore, r.dirty = time.Time{}, time.Time{}, true
			st.serverOpen[p] = append(st.serverOpen[p], r)
			return r
		}
	}
	if delta {
		for _, r := range slices.Clone(st.serverOpen[p]) {
			st.closeServer(r, obs)
		}
	}
	r := &serverRow{start: start, sess: *ss, peer: p,
		clientID: st.ids.optLabel(ss.ClientType), transport: st.ids.optLabel(ss.TransportName)}
	st.serverOpen[p] = append(st.serverOpen[p], r)
	st.serverRows = append(st.serverRows, r)
	return r
}

// applyLive applies a report newer than everything applied for the host.
func (st *ingestState) applyLive(r *Report) {
	obs := r.ObservedAt
	if r.Host != nil {
		st.applyFacts(r.Host, obs)
	}
	logonDone := !r.incomplete(ClassLogonSession)
	serverDone := !r.incomplete(ClassServerSession)
	if r.Kind == KindHeartbeat {
		// A heartbeat confirms the state it names, errors included.
		logonDone = !slices.Contains(st.incomplete, ClassLogonSession)
		serverDone = !slices.Contains(st.incomplete, ClassServerSession)
	}
	switch r.Kind {
	case KindFull:
		seen := make(map[*logonRow]bool, len(r.LogonSessions))
		for i := range r.LogonSessions {
			seen[st.upsertLogon(&r.LogonSessions[i], obs)] = true
		}
		if logonDone {
			for _, row := range st.logonOpen {
				if !seen[row] {
					st.closeLogon(row, obs)
				}
			}
		}
		taken := make(map[*serverRow]bool, len(r.ServerSessions))
		for i := range r.ServerSessions {
			taken[st.upsertServer(&r.ServerSessions[i], obs, false, taken)] = true
		}
		if serverDone {
			for _, rows := range st.serverOpen {
				for _, row := range slices.Clone(rows) {
					if !taken[row] {
						st.closeServer(row, obs)
					}
				}
			}
		}
	case KindDelta:
		for i := range r.LogonSessions {
			st.upsertLogon(&r.LogonSessions[i], obs)
		}
		for _, id := range r.EndedLogonIDs {
			if row, ok := st.logonOpen[lk(st.currentBoot(), id)]; ok {
				st.closeLogon(row, obs)
			}
		}
		taken := make(map[*serverRow]bool, len(r.ServerSessions))
		for i := range r.ServerSessions {
			taken[st.upsertServer(&r.ServerSessions[i], obs, true, taken)] = true
		}
		for _, k := range r.EndedServerSessions {
			p := peerKey{st.ids.label(k.ComputerName), st.ids.label(k.UserName)}
			for _, row := range slices.Clone(st.serverOpen[p]) {
				st.closeServer(row, obs)
			}
		}
	}
	if logonDone {
		st.logonSeenAt = obs
	}
	if serverDone {
		st.serverSeenAt = obs
	}
	st.lastSeen = obs
}

// applyLate applies a report not newer than the host's newest observation. It
// only adds what does not conflict with newer knowledge: a session that was
// never stored becomes a closed interval ending before the host's next
// complete observation, and a closed interval's end bounds are tightened.
// Open intervals, the host's facts, boot and last-seen times are left alone.
func (st *ingestState) applyLate(r *Report) {
	obs := r.ObservedAt
	boot := st.currentBoot()
	switch {
	case r.Host != nil && !r.Host.LastBootTime.IsZero():
		if absDur(r.Host.LastBootTime.Sub(boot)) > BootJitter {
			boot = r.Host.LastBootTime
		}
	case obs.Before(boot):
		boot = time.Time{} // from an earlier boot we cannot name
	}
	// The next knowledge the store has after obs.
	nextLogon, nextServer := st.logonSeenAt, st.serverSeenAt
	if st.boot.After(obs) {
		if st.boot.Before(nextLogon) {
			nextLogon = st.boot
		}
		if st.boot.Before(nextServer) {
			nextServer = st.boot
		}
	}
	if !boot.IsZero() {
		for i := range r.LogonSessions {
			ls := &r.LogonSessions[i]
			k := lk(boot, ls.LogonID)
			if _, ok := st.logonOpen[k]; ok {
				continue
			}
			if row, ok := st.logonClosed[k]; ok {
				if row.lastSeen.Before(obs) && obs.Before(row.endBefore) {
					row.lastSeen, row.dirty = obs, true
				}
				continue
			}
			if !nextLogon.After(obs) {
				continue // nothing newer to bound its end
			}
			row := &logonRow{boot: boot, sess: *ls, accountID: st.ids.account(ls.Account),
				authID: st.ids.optLabel(ls.AuthenticationPackage)}
			if row.sess.StartTime.IsZero() {
				row.sess.StartTime = obs
			}
			row.lastSeen, row.endBefore = closeBounds(row.sess.StartTime, obs, nextLogon)
			st.logonClosed[k] = row
			st.logonRows = append(st.logonRows, row)
		}
		for _, id := range r.EndedLogonIDs {
			if row, ok := st.logonClosed[lk(boot, id)]; ok && row.lastSeen.Before(obs) && obs.Before(row.endBefore) {
				row.endBefore, row.dirty = obs, true
			}
		}
	}
	for i := range r.ServerSessions {
		ss := &r.ServerSessions[i]
		p := peerKey{st.ids.label(ss.ComputerName), st.ids.label(ss.UserName)}
		start, known := serverStart(ss, obs)
		if !known {
			continue // cannot be placed in time
		}
		if matchOpen(st.serverOpen[p], start, true, nil) != nil {
			continue
		}
		if row := matchOpen(st.serverClosed[p], start, true, nil); row != nil {
			if row.lastSeen.Before(obs) && obs.Before(row.endBefore) {
				row.lastSeen, row.dirty = obs, true
			}
			continue
		}
		if !nextServer.After(obs) {
			continue
		}
		row := &serverRow{start: start, sess: *ss, peer: p,
			clientID: st.ids.optLabel(ss.ClientType), transport: st.ids.optLabel(ss.TransportName)}
		row.lastSeen, row.endBefore = closeBounds(start, obs, nextServer)
		st.serverClosed[p] = append(st.serverClosed[p], row)
		st.serverRows = append(st.serverRows, row)
	}
	for _, k := range r.EndedServerSessions {
		p := peerKey{st.ids.label(k.ComputerName), st.ids.label(k.UserName)}
		for _, row := range st.serverClosed[p] {
			if row.lastSeen.Before(obs) && obs.Before(row.endBefore) && !row.start.After(obs) {
				row.endBefore, row.dirty = obs, true
			}
		}
	}
}

var infinity = pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}

func tsEnd(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return infinity
	}
	return pgtype.Timestamptz{Time: t, Valid: true}
}

func tsOpt(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t, Valid: true}
}

func textOpt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func int4Opt(v int32) *int32 {
	if v == 0 {
		return nil
	}
	return &v
}

func int8Opt(v *uint32) *int64 {
	if v == nil {
		return nil
	}
	x := int64(*v)
	return &x
}

// flush writes the call's net changes in one pipeline ending with COMMIT:
// new intervals by INSERT ... SELECT FROM unnest (sorted by key), changed
// ones by one UPDATE per table (sorted by id), the host, agent and notes.
func (st *ingestState) flush(ctx context.Context, tx *pgx.Conn, agentID string, now time.Time, notes []Note) error {
	var newLogon, updLogon []*logonRow
	for _, r := range st.logonRows {
		if r.id == 0 {
			newLogon = append(newLogon, r)
		} else if r.dirty {
			updLogon = append(updLogon, r)
		}
	}
	var newServer, updServer []*serverRow
	for _, r := range st.serverRows {
		if r.id == 0 {
			newServer = append(newServer, r)
		} else if r.dirty {
			updServer = append(updServer, r)
		}
	}
	b := &pgx.Batch{}
	if n := len(newLogon); n > 0 {
		slices.SortFunc(newLogon, func(a, b *logonRow) int {
			if c := a.boot.Compare(b.boot); c != 0 {
				return c
			}
			return strings.Compare(a.sess.LogonID, b.sess.LogonID)
		})
		boots, starts, lasts, ends, installs := make([]time.Time, n), make([]time.Time, n),
			make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
		types, accts, auths := make([]*int64, n), make([]*int32, n), make([]*int32, n)
		ids, captions, descs, names, statuses := make([]string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		for i, r := range newLogon {
			boots[i], starts[i], lasts[i], ends[i], installs[i] = r.boot, r.sess.StartTime, tsOpt(r.lastSeen), tsEnd(r.endBefore), tsOpt(r.sess.InstallDate)
			types[i], accts[i], auths[i] = int8Opt(r.sess.LogonType), int4Opt(r.accountID), int4Opt(r.authID)
			ids[i], captions[i], descs[i], names[i], statuses[i] = r.sess.LogonID, textOpt(r.sess.Caption), textOpt(r.sess.Description), textOpt(r.sess.Name), textOpt(r.sess.Status)
		}
		b.Queue(`INSERT INTO logon_session (boot_time, start_time, last_seen, end_before, install_date, logon_type,
				host_id, account_id, auth_package_id, logon_id, caption, description, name, status)
			SELECT u.boot_time, u.start_time, u.last_seen, u.end_before, u.install_date, u.logon_type,
				$1, u.account_id, u.auth_package_id, u.logon_id, u.caption, u.description, u.name, u.status
			FROM unnest($2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[],
				$7::bigint[], $8::int[], $9::int[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[])
				AS u(boot_time, start_time, last_seen, end_before, install_date, logon_type, account_id, auth_package_id,
				     logon_id, caption, description, name, status)`,
			st.hostID, boots, starts, lasts, ends, installs, types, accts, auths, ids, captions, descs, names, statuses)
	}
	if n := len(newServer); n > 0 {
		slices.SortFunc(newServer, func(a, b *serverRow) int {
			if c := a.start.Compare(b.start); c != 0 {
				return c
			}
			if a.peer.computer != b.peer.computer {
				return int(a.peer.computer - b.peer.computer)
			}
			return int(a.peer.user - b.peer.user)
		})
		starts, lasts, ends, installs := make([]time.Time, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
		types, computers, users, clients, transports := make([]*int64, n), make([]int32, n), make([]int32, n), make([]*int32, n), make([]*int32, n)
		captions, descs, names, statuses := make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		for i, r := range newServer {
			starts[i], lasts[i], ends[i], installs[i] = r.start, tsOpt(r.lastSeen), tsEnd(r.endBefore), tsOpt(r.sess.InstallDate)
			types[i], computers[i], users[i], clients[i], transports[i] = int8Opt(r.sess.SessionType), r.peer.computer, r.peer.user, int4Opt(r.clientID), int4Opt(r.transport)
			captions[i], descs[i], names[i], statuses[i] = textOpt(r.sess.Caption), textOpt(r.sess.Description), textOpt(r.sess.Name), textOpt(r.sess.Status)
		}
		b.Queue(`INSERT INTO server_session (start_time, last_seen, end_before, install_date, session_type, host_id,
				computer_label, user_label, client_type_label, transport_label, caption, description, name, status)
			SELECT u.start_time, u.last_seen, u.end_before, u.install_date, u.session_type, $1,
				u.computer_label, u.user_label, u.client_type_label, u.transport_label, u.caption, u.description, u.name, u.status
			FROM unnest($2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::bigint[],
				$7::int[], $8::int[], $9::int[], $10::int[], $11::text[], $12::text[], $13::text[], $14::text[])
				AS u(start_time, last_seen, end_before, install_date, session_type, computer_label, user_label,
				     client_type_label, transport_label, caption, description, name, status)`,
			st.hostID, starts, lasts, ends, installs, types, computers, users, clients, transports, captions, descs, names, statuses)
	}
	// Updates are split by where the row is stored: the rows still in _open
	// (stored end 'infinity', the common case: a session ends) are updated
	// with that end as a constant, so that the planner prunes every other
	// partition (a generic plan over a join key would lock and open every
	// partition of the table and probe each at run time).
	openLogon, closedLogon := splitStored(updLogon, func(r *logonRow) bool { return r.storedEnd.IsZero() })
	queueLogonUpdates(b, st.hostID, openLogon, "'infinity'")
	queueLogonUpdates(b, st.hostID, closedLogon, "u.stored_end")
	openServer, closedServer := splitStored(updServer, func(r *serverRow) bool { return r.storedEnd.IsZero() })
	queueServerUpdates(b, st.hostID, openServer, "'infinity'")
	queueServerUpdates(b, st.hostID, closedServer, "u.stored_end")
	if st.factsChanged {
		f := st.facts
		b.Queue(`UPDATE host SET hostname = $2, domain = $3, os_caption = $4, os_version = $5, os_build = $6,
			agent_version = $7, boot_time = $8 WHERE host_id = $1`,
			st.hostID, f.Hostname, f.Domain, f.OSCaption, f.OSVersion, f.OSBuild, f.AgentVersion, st.currentBoot())
	}
	b.Queue(`UPDATE host SET last_seen = $2, logon_seen_at = $3, server_seen_at = $4, agent_id = $5 WHERE host_id = $1`,
		st.hostID, tsOpt(st.lastSeen), tsOpt(st.logonSeenAt), tsOpt(st.serverSeenAt), agentID)
	if st.hwm > math.MaxInt64 {
		return errors.New("high-water mark overflows bigint")
	}
	if st.incomplete == nil {
		st.incomplete = []string{}
	}
	b.Queue(`UPDATE agent SET applied_sequence = greatest(applied_sequence, $2), state_sequence = $3,
		incomplete_classes = $4 WHERE agent_id = $1`, agentID, int64(st.hwm), int64(st.stateSeq), st.incomplete)
	if len(notes) > 0 {
		seqs, fields, changes := make([]int64, len(notes)), make([]string, len(notes)), make([]string, len(notes))
		for i, n := range notes {
			seqs[i], fields[i], changes[i] = int64(n.Sequence), n.Field, n.Change
		}
		b.Queue(`INSERT INTO ingest_note (recorded_at, host_id, agent_id, sequence, field, note)
			SELECT $1, $2, $3, * FROM unnest($4::bigint[], $5::text[], $6::text[])`,
			now, st.hostID, agentID, seqs, fields, changes)
	}
	b.Queue("COMMIT")
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write sessions, host and agent, and commit: %w", err)
	}
	return nil
}

// splitStored splits rows into those for which open is true and the others.
func splitStored[T any](rows []T, open func(T) bool) (yes, no []T) {
	for _, r := range rows {
		if open(r) {
			yes = append(yes, r)
		} else {
			no = append(no, r)
		}
	}
	return yes, no
}

// queueLogonUpdates queues one UPDATE of the given stored logon rows; stored
// is the SQL expression of their stored end_before ('infinity' for rows in
// _open, so that the other partitions are pruned when planning).
func queueLogonUpdates(b *pgx.Batch, hostID int32, rows []*logonRow, stored string) {
	n := len(rows)
	if n == 0 {
		return
	}
	slices.SortFunc(rows, func(a, b *logonRow) int { return int(a.id - b.id) })
	ids, starts, storeds, lasts, ends, boots := make([]int64, n), make([]time.Time, n), make([]pgtype.Timestamptz, n),
		make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]time.Time, n)
	accts := make([]int32, n)
	for i, r := range rows {
		ids[i], starts[i], storeds[i], lasts[i], ends[i], boots[i], accts[i] =
			r.id, r.sess.StartTime, tsEnd(r.storedEnd), tsOpt(r.lastSeen), tsEnd(r.endBefore), r.boot, r.accountID
	}
	b.Queue(`WITH upd AS (UPDATE logon_session s
		SET last_seen = u.last_seen, end_before = u.end_before, boot_time = u.boot_time,
		    account_id = nullif(u.account_id, 0)
		FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[],
		            $7::timestamptz[], $8::int[]) AS u(id, start_time, stored_end, last_seen, end_before, boot_time, account_id)
		WHERE s.host_id = $1 AND s.start_time = u.start_time AND s.end_before = `+stored+` AND s.end_before = u.stored_end AND s.id = u.id
		RETURNING 1)
		SELECT assert_updated($9, count(*), 'logon sessions') FROM upd`,
		hostID, ids, starts, storeds, lasts, ends, boots, accts, n)
}

// queueServerUpdates is queueLogonUpdates for server sessions.
func queueServerUpdates(b *pgx.Batch, hostID int32, rows []*serverRow, stored string) {
	n := len(rows)
	if n == 0 {
		return
	}
	slices.SortFunc(rows, func(a, b *serverRow) int { return int(a.id - b.id) })
	ids, starts, storeds, lasts, ends := make([]int64, n), make([]time.Time, n), make([]pgtype.Timestamptz, n),
		make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
	for i, r := range rows {
		ids[i], starts[i], storeds[i], lasts[i], ends[i] = r.id, r.start, tsEnd(r.storedEnd), tsOpt(r.lastSeen), tsEnd(r.endBefore)
	}
	b.Queue(`WITH upd AS (UPDATE server_session s SET last_seen = u.last_seen, end_before = u.end_before
		FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[])
		     AS u(id, start_time, stored_end, last_seen, end_before)
		WHERE s.host_id = $1 AND s.start_time = u.start_time AND s.end_before = `+stored+` AND s.end_before = u.stored_end AND s.id = u.id
		RETURNING 1)
		SELECT assert_updated($7, count(*), 'server sessions') FROM upd`,
		hostID, ids, starts, storeds, lasts, ends, n)
}
