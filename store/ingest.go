package store

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// IngestIncarnation stores the reports of one agent about one host, numbered
// in incarnation, the agent's spool incarnation (0 when the agent sends
// none), in one transaction. An incarnation other than 0 and than the one
// stored for the agent starts its chain again (IngestResult.Restart; see
// incarnation.go).
//
// Reports are taken in the given order (the agent's spool order). A report
// numbered at or below the agent's high-water mark is a duplicate: it changes
// nothing and is acknowledged again; unless it is numbered at the mark and
// is not the report stored there (another taken_at), which stops the call
// with a *DivergedError (errors.Is(err, ErrResyncRequired)). An invalid report is listed in
// IngestResult.Rejected and changes nothing. A Delta or Heartbeat whose
// BaseSequence is not the agent's high-water mark stops the call with a
// *ResyncError (errors.Is(err, ErrResyncRequired)); the reports before it are
// stored and the returned IngestResult says which. Any other error means
// nothing was stored.
//
// Concurrent calls for the same host take turns on the host's row lock; calls
// for different hosts run in parallel.
func (s *Store) IngestIncarnation(ctx context.Context, agentID, machineGUID string, incarnation uint64, reports []Report) (IngestResult, error) {
	var res IngestResult
	machineGUID, err := validMachineGUID("machineGUID", machineGUID)
	if err != nil {
		return res, err
	}
	if err := validKey("agentID", agentID); err != nil {
		return res, err
	}
	now := s.now()
	clean, notes := cleanReports(reports, machineGUID, now, &res)
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
	var first uint64
	if len(clean) > 0 {
		first = clean[0].Sequence
	}
	st.adoptIncarnation(incarnation, first, now)
	if hasLaterParts(clean) { // parts.go: a snapshot in parts
		held, err := st.loadParts(ctx, tx, agentID)
		if err != nil {
			return res, fmt.Errorf("store: ingest host %s agent %q: %w", machineGUID, agentID, err)
		}
		if err := s.resolveMore(ctx, &st.ids, assembleParts(clean, held, st.hwm)); err != nil {
			return res, err
		}
	} else {
		assembleParts(clean, nil, st.hwm)
	}
	if err := st.loadClosed(ctx, tx, clean); err != nil {
		return res, fmt.Errorf("store: ingest host %s agent %q: %w", machineGUID, agentID, err)
	}
	st.gapAtRestart(agentID, machineGUID, clean) // gaps.go: a new incarnation of the spool
	applied, resync := st.applyReports(agentID, machineGUID, clean, notes, &res)
	res.Anomalies, res.Renamed = st.anomalies, st.renamed()
	if err := st.flush(ctx, tx, agentID, now, append(append(res.Sanitized, st.chainNotes...), res.Anomalies...)); err != nil {
		return IngestResult{Rejected: res.Rejected}, fmt.Errorf("store: ingest host %s agent %q: %w", machineGUID, agentID, err)
	}
	committed = true
	res.Applied = applied
	res.Acknowledged = st.hwm
	res.Restart = st.restart
	res.Gaps = st.gaps
	return res, resync
}

// cleanReports validates and sanitizes reports (sanitize.go): the invalid
// ones are listed in res.Rejected and left out, the notes of the others are
// returned by sequence.
func cleanReports(reports []Report, machineGUID string, now time.Time, res *IngestResult) ([]Report, map[uint64][]Note) {
	clean := make([]Report, 0, len(reports))
	notes := make(map[uint64][]Note)
	var prev time.Time // the clean TakenAt before r: a corrected one stays after it (clockskew.go)
	for _, r := range reports {
		c, n, err := cleanReportAfter(r, machineGUID, now, prev)
		if err != nil {
			res.Rejected = append(res.Rejected, RejectedReport{Sequence: r.Sequence, Err: err})
			continue
		}
		prev = c.TakenAt
		clean = append(clean, c)
		if len(n) > 0 {
			notes[c.Sequence] = append(notes[c.Sequence], n...)
		}
	}
	return clean, notes
}

// applyReports applies the reports in order with the interval rules
// (hostIntervals.apply) and records in res what happened to each: a report
// at or below the high-water mark is a duplicate; a Delta or Heartbeat that
// does not apply to the agent's stored state stops the call with the
// *ResyncError returned. applied lists the sequences applied before.
func (st *ingestState) applyReports(agentID, machineGUID string, reports []Report, notes map[uint64][]Note, res *IngestResult) (applied []uint64, resync error) {
	for _, r := range reports {
		if r.Sequence <= st.hwm {
			if err := st.diverged(agentID, machineGUID, &r); err != nil {
				return applied, err // incarnation.go: not the report stored at the mark
			}
			res.Duplicates = append(res.Duplicates, r.Sequence)
			continue
		}
		gap := st.gapBefore(agentID, machineGUID, &r) // gaps.go: lost reports before r
		// parts.go: a part of a snapshot before its last is held.
		if r.held {
			st.hwm, st.appliedTakenAt = r.Sequence, r.stampedTakenAt()
			st.heldNow = append(st.heldNow, r)
			applied = append(applied, r.Sequence)
			res.Sanitized = append(res.Sanitized, notes[r.Sequence]...)
			continue
		}
		if r.Kind != KindSnapshot && r.BaseSequence != st.stateSeq && !gap {
			return applied, &ResyncError{AgentID: agentID, MachineGUID: machineGUID,
				Sequence: r.Sequence, BaseSequence: r.BaseSequence, Stored: st.stateSeq}
		}
		unsettled := st.unsettled()
		if st.apply(&r) {
			res.Late = append(res.Late, r.Sequence)
		}
		st.settle(unsettled, &r)
		st.hwm, st.appliedTakenAt = r.Sequence, r.stampedTakenAt()
		st.lastUnheld = r.Sequence
		if r.Kind != KindHeartbeat {
			st.stateSeq = r.Sequence
		}
		applied = append(applied, r.Sequence)
		res.Sanitized = append(res.Sanitized, notes[r.Sequence]...)
	}
	return applied, nil
}

// resolve returns the ids of the labels and accounts the reports name,
// interning the missing ones.
func (s *Store) resolve(ctx context.Context, reports []Report) (resolved, error) {
	labels, accounts := dictionaryKeys(reports)
	return s.dictionaryIDs(ctx, labels, accounts)
}

// dictionaryKeys lists the labels (with repeats) and accounts the reports
// name: authentication packages, SMB computer and user names, client types
// and transports.
func dictionaryKeys(reports []Report) (labels []string, accounts []*Account) {
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
	return labels, accounts
}

// ingestState is a host's state during one Ingest call: what the interval
// rules work on (hostIntervals), and what only the transaction needs.
type ingestState struct {
	hostIntervals
	hostID int32
	// hwm is the agent's high-water mark; stateSeq its last stored Snapshot
	// or Delta, the base of its next Delta or Heartbeat.
	hwm, stateSeq uint64
	// chainState is the rest of the agent's chain: its incarnation and the
	// taken_at of the report at hwm (incarnation.go).
	chainState
	// gapState holds the coverage gaps the call records (gaps.go).
	gapState
	// heldNow lists the parts of snapshots the call held; lastUnheld is the
	// last report it applied that was not one (parts.go).
	heldNow    []Report
	lastUnheld uint64
}

// nullTime is t as a time.Time: the zero time for NULL and the infinities.
func nullTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid || t.InfinityModifier != pgtype.Finite {
		return time.Time{}
	}
	return t.Time.UTC()
}

// loadState locks the host's row (creating it), then the agent's, and reads
// the host's open sessions.
func loadState(ctx context.Context, tx *pgx.Conn, agentID, guid string, now time.Time, sessions bool) (*ingestState, error) {
	st := &ingestState{hostIntervals: newHostIntervals()}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// Generic plans: the statements of the ingest are planned once per
	// connection. With custom plans PostgreSQL re-planned the read of
	// closed intervals at every call (its partitions are pruned by a
	// parameter), which cost more than executing it; a generic plan prunes
	// them when it starts.
	b.Queue("SET LOCAL plan_cache_mode = force_generic_plan")
	var lastSeen, logonSeen, serverSeen, bootSince pgtype.Timestamptz
	b.Queue(`INSERT INTO host (machine_guid, first_received, last_received) VALUES ($1, $2, $2)
		ON CONFLICT (machine_guid) DO UPDATE SET last_received = greatest(host.last_received, excluded.last_received)
		RETURNING host_id, hostname, domain, os_caption, os_version, os_build, agent_version,
		          boot_time, last_seen, logon_seen_at, server_seen_at, boot_since`, guid, now).
		QueryRow(func(row pgx.Row) error {
			return row.Scan(&st.hostID, &st.facts.Hostname, &st.facts.Domain, &st.facts.OSCaption,
				&st.facts.OSVersion, &st.facts.OSBuild, &st.facts.AgentVersion,
				&st.boot, &lastSeen, &logonSeen, &serverSeen, &bootSince)
		})
	var hwm, stateSeq, incarnation int64
	var appliedTakenAt pgtype.Timestamptz
	b.Queue(`INSERT INTO agent (agent_id, host_id, first_received, last_received)
		VALUES ($1, (SELECT host_id FROM host WHERE machine_guid = $2), $3, $3)
		ON CONFLICT (agent_id) DO UPDATE SET host_id = excluded.host_id, last_received = excluded.last_received
		RETURNING applied_sequence, state_sequence, incomplete_classes, coalesce(incarnation, 0), applied_taken_at`, agentID, guid, now).
		QueryRow(func(row pgx.Row) error {
			return row.Scan(&hwm, &stateSeq, &st.incomplete, &incarnation, &appliedTakenAt)
		})
	if sessions {
		st.queueOpenReads(b, guid)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("lock host and read its open sessions: %w", err)
	}
	st.hwm, st.stateSeq = uint64(hwm), uint64(stateSeq)
	st.incarnation, st.appliedTakenAt = uint64(incarnation), nullTime(appliedTakenAt)
	st.boot = st.boot.UTC()
	st.lastSeen, st.logonSeenAt, st.serverSeenAt = nullTime(lastSeen), nullTime(logonSeen), nullTime(serverSeen)
	st.bootSince = nullTime(bootSince)
	return st, nil
}

// queueOpenReads queues the reads of the host's open intervals.
func (st *ingestState) queueOpenReads(b *pgx.Batch, guid string) {
	b.Queue(`SELECT ctid, id, boot_time, logon_id, start_time, coalesce(account_id, 0), lingering_since FROM logon_session
		WHERE end_before = 'infinity' AND host_id = (SELECT host_id FROM host WHERE machine_guid = $1)`, guid).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				r := &logonRow{}
				var lingering pgtype.Timestamptz
				if err := rows.Scan(&r.loc, &r.id, &r.boot, &r.sess.LogonID, &r.sess.StartTime, &r.accountID, &lingering); err != nil {
					return err
				}
				r.boot, r.sess.StartTime = r.boot.UTC(), r.sess.StartTime.UTC()
				r.sess.LingeringSince = nullTime(lingering)
				st.addLogon(r)
			}
			return rows.Err()
		})
	b.Queue(`SELECT ctid, id, start_time, computer_label, user_label FROM server_session
		WHERE end_before = 'infinity' AND host_id = (SELECT host_id FROM host WHERE machine_guid = $1)`, guid).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				r := &serverRow{}
				if err := rows.Scan(&r.loc, &r.id, &r.start, &r.peer.computer, &r.peer.user); err != nil {
					return err
				}
				r.start = r.start.UTC()
				st.addServer(r)
			}
			return rows.Err()
		})
}

// The reads of closed intervals by key (loadClosed): $1 the host, $2 the
// earliest start that matters, $3 the distinct keys (LogonIds, or SMB
// computer label ids).
//
// The bound end_before > start_time >= $2 prunes the monthly partitions
// before $2's month (when the generic plan starts). The keys are matched by
// "IN (SELECT unnest($3)) OR false", which PostgreSQL does not turn into a
// join (it pulls up only a sublink that is a whole condition; the OR is
// folded away later): it becomes a hashed SubPlan, the keys hashed once and
// every row read probing them, whatever the estimates. The two forms that
// read the same are quadratic in the generic plan, which knows neither the
// keys nor their number (it estimates 10): "= ANY($3)" searches the array
// linearly for every row read (PostgreSQL hashes only constant arrays):
// 8.8 s to read the closed intervals of 20,000 logon sessions that
// reappeared; and a plain "IN (SELECT unnest($3))" is a semi-join for which
// the planner may pick a nested loop over the keys: 24 s for the same read
// once the partition had statistics. TestClosedReadAndUpdatePlans checks
// the plans.
const (
	closedLogonSQL = `SELECT s.ctid, s.id, s.boot_time, s.logon_id, s.start_time, s.last_seen, s.end_before, coalesce(s.account_id, 0),
		s.lingering_since
		FROM logon_session s
		WHERE s.host_id = $1 AND s.start_time >= $2 AND s.end_before > $2 AND s.end_before < 'infinity'
		  AND (s.logon_id IN (SELECT unnest($3::text[])) OR false)`
	closedServerSQL = `SELECT s.ctid, s.id, s.start_time, s.computer_label, s.user_label, s.last_seen, s.end_before
		FROM server_session s
		WHERE s.host_id = $1 AND s.start_time >= $2 AND s.end_before > $2 AND s.end_before < 'infinity'
		  AND (s.computer_label IN (SELECT unnest($3::int[])) OR false)`
)

// loadClosed reads the closed intervals the reports may meet again
// (hostIntervals.closedQuery says which).
func (st *ingestState) loadClosed(ctx context.Context, tx *pgx.Conn, reports []Report) error {
	q := st.closedQuery(reports, st.hwm)
	if q.empty() {
		return nil
	}
	b := &pgx.Batch{}
	if len(q.logonIDs) > 0 {
		b.Queue(closedLogonSQL, st.hostID, q.logonFrom, distinct(q.logonIDs)).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					r := &logonRow{}
					var lingering pgtype.Timestamptz
					if err := rows.Scan(&r.loc, &r.id, &r.boot, &r.sess.LogonID, &r.sess.StartTime, &r.lastSeen, &r.endBefore, &r.accountID, &lingering); err != nil {
						return err
					}
					r.sess.LingeringSince = nullTime(lingering)
					r.boot, r.sess.StartTime, r.lastSeen, r.endBefore = r.boot.UTC(), r.sess.StartTime.UTC(), r.lastSeen.UTC(), r.endBefore.UTC()
					r.storedEnd = r.endBefore
					st.addLogon(r)
				}
				return rows.Err()
			})
	}
	if len(q.computers) > 0 {
		b.Queue(closedServerSQL, st.hostID, q.serverFrom, distinct(q.computers)).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					r := &serverRow{}
					if err := rows.Scan(&r.loc, &r.id, &r.start, &r.peer.computer, &r.peer.user, &r.lastSeen, &r.endBefore); err != nil {
						return err
					}
					r.start, r.lastSeen, r.endBefore = r.start.UTC(), r.lastSeen.UTC(), r.endBefore.UTC()
					r.storedEnd = r.endBefore
					st.addServer(r)
				}
				return rows.Err()
			})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("read closed sessions the reports mention: %w", err)
	}
	return nil
}

// distinct returns the distinct values of vs, sorted (a copy).
func distinct[T cmp.Ordered](vs []T) []T {
	out := slices.Clone(vs)
	slices.Sort(out)
	return slices.Compact(out)
}

// rowLoc is where a stored session row was read: its ctid, which the
// writer's UPDATE looks up directly (a TID scan) instead of searching the
// host's rows. It stays valid until the call writes the row: the reads run
// under the host's row lock, which every writer of the host's session rows
// holds (Ingest); a live row's ctid changes only when the row is updated
// or deleted (VACUUM keeps it; VACUUM FULL and CLUSTER wait for the
// transaction's locks); and a call updates each stored row at most once,
// after all its reads. The UPDATEs check the row's id and host as well,
// and assert_updated aborts the call if a row was not found there.
type rowLoc = pgtype.TID

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

// flush writes the rules' decisions (hostIntervals.changes) and the host's
// and agent's new state in one pipeline ending with COMMIT: new intervals by
// INSERT ... SELECT FROM unnest (sorted by key), changed ones by one UPDATE
// per table and partition kind (sorted by id), the host, agent and notes.
func (st *ingestState) flush(ctx context.Context, tx *pgx.Conn, agentID string, now time.Time, notes []Note) error {
	c := st.changes()
	b := &pgx.Batch{}
	queueLogonInserts(b, st.hostID, c.newLogon)
	queueServerInserts(b, st.hostID, c.newServer)
	// Updates are split by where the row is stored: the rows still in _open
	// (stored end 'infinity', the common case: a session ends) are updated
	// with that end as a constant, so that the planner prunes every other
	// partition (a generic plan over a join key would lock and open every
	// partition of the table and probe each at run time).
	// Each is planned under updatePlanSettings (below).
	if len(c.updLogon)+len(c.updServer) > 0 {
		openLogon, closedLogon := splitStored(c.updLogon, func(r *logonRow) bool { return r.storedEnd.IsZero() })
		openServer, closedServer := splitStored(c.updServer, func(r *serverRow) bool { return r.storedEnd.IsZero() })
		b.Queue(updatePlanOff)
		queueLogonUpdates(b, st.hostID, openLogon, "'infinity'")
		queueLogonUpdates(b, st.hostID, closedLogon, "u.stored_end")
		queueServerUpdates(b, st.hostID, openServer, "'infinity'")
		queueServerUpdates(b, st.hostID, closedServer, "u.stored_end")
		b.Queue(updatePlanOn)
	}
	if err := st.queueHostAndAgent(b, agentID); err != nil {
		return err
	}
	queueNotes(b, now, st.hostID, agentID, notes)
	st.queueGaps(b, agentID, now)
	if err := st.queueParts(b, agentID); err != nil {
		return err
	}
	b.Queue("COMMIT")
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write sessions, host and agent, and commit: %w", err)
	}
	return nil
}

// queueLogonInserts queues one INSERT of the new logon intervals.
func queueLogonInserts(b *pgx.Batch, hostID int32, rows []*logonRow) {
	n := len(rows)
	if n == 0 {
		return
	}
	boots, starts, lasts, ends, installs := make([]time.Time, n), make([]time.Time, n),
		make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
	types, accts, auths := make([]*int64, n), make([]*int32, n), make([]*int32, n)
	ids, captions, descs, names, statuses := make([]string, n), make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
	lingering := make([]pgtype.Timestamptz, n)
	for i, r := range rows {
		lingering[i] = tsOpt(r.sess.LingeringSince)
		boots[i], starts[i], lasts[i], ends[i], installs[i] = r.boot, r.sess.StartTime, tsOpt(r.lastSeen), tsEnd(r.endBefore), tsOpt(r.sess.InstallDate)
		types[i], accts[i], auths[i] = int8Opt(r.sess.LogonType), int4Opt(r.accountID), int4Opt(r.authID)
		ids[i], captions[i], descs[i], names[i], statuses[i] = r.sess.LogonID, textOpt(r.sess.Caption), textOpt(r.sess.Description), textOpt(r.sess.Name), textOpt(r.sess.Status)
	}
	b.Queue(`INSERT INTO logon_session (boot_time, start_time, last_seen, end_before, install_date, logon_type,
			host_id, account_id, auth_package_id, logon_id, caption, description, name, status, lingering_since)
		SELECT u.boot_time, u.start_time, u.last_seen, u.end_before, u.install_date, u.logon_type,
			$1, u.account_id, u.auth_package_id, u.logon_id, u.caption, u.description, u.name, u.status, u.lingering_since
		FROM unnest($2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[],
			$7::bigint[], $8::int[], $9::int[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
			$15::timestamptz[])
			AS u(boot_time, start_time, last_seen, end_before, install_date, logon_type, account_id, auth_package_id,
			     logon_id, caption, description, name, status, lingering_since)`,
		hostID, boots, starts, lasts, ends, installs, types, accts, auths, ids, captions, descs, names, statuses, lingering)
}

// queueServerInserts queues one INSERT of the new server intervals.
func queueServerInserts(b *pgx.Batch, hostID int32, rows []*serverRow) {
	n := len(rows)
	if n == 0 {
		return
	}
	starts, lasts, ends, installs := make([]time.Time, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
	types, computers, users, clients, transports := make([]*int64, n), make([]int32, n), make([]int32, n), make([]*int32, n), make([]*int32, n)
	captions, descs, names, statuses := make([]*string, n), make([]*string, n), make([]*string, n), make([]*string, n)
	for i, r := range rows {
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
		hostID, starts, lasts, ends, installs, types, computers, users, clients, transports, captions, descs, names, statuses)
}

// queueHostAndAgent queues the updates of the host's facts and times and of
// the agent's high-water mark and state.
func (st *ingestState) queueHostAndAgent(b *pgx.Batch, agentID string) error {
	if st.factsChanged {
		f := st.facts
		b.Queue(`UPDATE host SET hostname = $2, domain = $3, os_caption = $4, os_version = $5, os_build = $6,
			agent_version = $7, boot_time = $8, boot_since = $9 WHERE host_id = $1`,
			st.hostID, f.Hostname, f.Domain, f.OSCaption, f.OSVersion, f.OSBuild, f.AgentVersion, st.currentBoot(), tsOpt(st.bootSince))
	}
	b.Queue(`UPDATE host SET last_seen = $2, logon_seen_at = $3, server_seen_at = $4, agent_id = $5 WHERE host_id = $1`,
		st.hostID, tsOpt(st.lastSeen), tsOpt(st.logonSeenAt), tsOpt(st.serverSeenAt), agentID)
	if st.hwm > math.MaxInt64 {
		return fmt.Errorf("agent %q: high-water mark %d does not fit in applied_sequence (bigint)", agentID, st.hwm)
	}
	if st.incomplete == nil {
		st.incomplete = []string{}
	}
	// A new incarnation ($5) sets the mark back; otherwise it only grows.
	// SET reads the row as it was: incarnation_since moves when the
	// incarnation changes, applied_taken_at with the mark.
	b.Queue(`UPDATE agent SET applied_sequence = CASE WHEN $5 THEN $2 ELSE greatest(applied_sequence, $2) END,
		applied_taken_at = CASE WHEN $5 OR $2 >= applied_sequence THEN $6 ELSE applied_taken_at END,
		incarnation_since = CASE WHEN incarnation IS DISTINCT FROM $7 THEN $8 ELSE incarnation_since END,
		incarnation = $7, state_sequence = $3, incomplete_classes = $4 WHERE agent_id = $1`,
		agentID, int64(st.hwm), int64(st.stateSeq), st.incomplete, st.restart != nil, tsOpt(st.appliedTakenAt),
		incarnationParam(st.incarnation), st.since)
	return nil
}

// queueNotes queues the insert of the sanitizer's notes.
func queueNotes(b *pgx.Batch, now time.Time, hostID int32, agentID string, notes []Note) {
	if len(notes) == 0 {
		return
	}
	seqs, fields, changes := make([]int64, len(notes)), make([]string, len(notes)), make([]string, len(notes))
	for i, n := range notes {
		seqs[i], fields[i], changes[i] = int64(n.Sequence), n.Field, n.Change
	}
	b.Queue(`INSERT INTO ingest_note (recorded_at, host_id, agent_id, sequence, field, note)
		SELECT $1, $2, $3, * FROM unnest($4::bigint[], $5::text[], $6::text[])`,
		now, hostID, agentID, seqs, fields, changes)
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

// updatePlanSettings are the planner methods turned off (SET LOCAL, by
// updatePlanOff) while the UPDATEs of stored rows are planned and run, and
// turned on again after them (updatePlanOn). They leave the planner one
// plan: a nested loop over the rows to update, each looked up by its ctid
// (a TID scan) in the partitions its stored end_before leaves (pruned at
// run time, row by row, for the rows of the monthly partitions). The
// planner would not always choose it: the generic plan estimates 10 rows
// to update whatever their number, and a partition never analyzed yet
// estimates the host's rows at a few dozen, so that it may take the
// host's rows once and compare each with every row to update (a nested
// loop over a materialized scan: 2 min 21 s to reopen 20,000 sessions,
// seen), or hash them (reading all of the host's history to update one
// row). The generic plan is made at the statement's first execution on a
// connection, under these settings, and kept until an invalidation, after
// which it is made again here. "on" is these settings' default: the store
// assumes a server that does not turn planner methods off.
var updatePlanSettings = []string{"enable_seqscan", "enable_indexscan", "enable_bitmapscan",
	"enable_material", "enable_hashjoin", "enable_mergejoin"}

var updatePlanOff, updatePlanOn = setPlanSettings("off"), setPlanSettings("on")

// setPlanSettings is a statement that sets every updatePlanSettings to
// value, for the rest of the transaction.
func setPlanSettings(value string) string {
	calls := make([]string, len(updatePlanSettings))
	for i, name := range updatePlanSettings {
		calls[i] = "set_config('" + name + "', '" + value + "', true)"
	}
	return "SELECT " + strings.Join(calls, ", ")
}

// queueLogonUpdates queues one UPDATE of the given stored logon rows (sorted
// by id, as hostIntervals.changes returns them); stored is the SQL
// expression of their stored end_before ('infinity' for rows in _open, so
// that the other partitions are pruned when planning; u.stored_end for the
// others, which prunes the partitions at run time, row by row).
func queueLogonUpdates(b *pgx.Batch, hostID int32, rows []*logonRow, stored string) {
	if len(rows) > 0 {
		b.Queue(logonUpdateSQL(stored), logonUpdateArgs(hostID, rows)...)
	}
}

// logonUpdateSQL is the UPDATE of queueLogonUpdates.
//
// Each row is found by its ctid (rowLoc): a TID scan, one row read per row
// updated, then checked by id and host. The statement used to join through
// the (host_id, start_time) index and check the id afterwards: every row
// updated read every row of the host with the same start time, so that
// closing n sessions that started in the same second read n² rows (12 s for
// 8,000 SMB sessions, over the collector's 15 s for 11,000; 69 s for 20,000
// logon and 20,000 SMB sessions, docs/benchmarks.md). start_time is left
// out of the condition on purpose: with it, the planner may go back to that
// index.
func logonUpdateSQL(stored string) string {
	return `WITH upd AS (UPDATE logon_session s
		SET last_seen = u.last_seen, end_before = u.end_before, boot_time = u.boot_time,
		    account_id = nullif(u.account_id, 0), lingering_since = u.lingering_since
		FROM unnest($2::tid[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[],
		            $7::timestamptz[], $8::int[], $10::timestamptz[])
		     AS u(loc, id, stored_end, last_seen, end_before, boot_time, account_id, lingering_since)
		WHERE s.end_before = ` + stored + ` AND s.end_before = u.stored_end AND s.ctid = u.loc AND s.id = u.id AND s.host_id = $1
		RETURNING 1)
		SELECT assert_updated($9, count(*), 'logon sessions') FROM upd`
}

// logonUpdateArgs are the arguments of logonUpdateSQL for rows.
func logonUpdateArgs(hostID int32, rows []*logonRow) []any {
	n := len(rows)
	locs, ids, storeds, lasts, ends, boots := make([]rowLoc, n), make([]int64, n), make([]pgtype.Timestamptz, n),
		make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n), make([]time.Time, n)
	accts, lingering := make([]int32, n), make([]pgtype.Timestamptz, n)
	for i, r := range rows {
		locs[i], ids[i], storeds[i], lasts[i], ends[i], boots[i], accts[i] =
			r.loc, r.id, tsEnd(r.storedEnd), tsOpt(r.lastSeen), tsEnd(r.endBefore), r.boot, r.accountID
		lingering[i] = tsOpt(r.sess.LingeringSince)
	}
	return []any{hostID, locs, ids, storeds, lasts, ends, boots, accts, n, lingering}
}

// queueServerUpdates is queueLogonUpdates for server sessions.
func queueServerUpdates(b *pgx.Batch, hostID int32, rows []*serverRow, stored string) {
	if len(rows) > 0 {
		b.Queue(serverUpdateSQL(stored), serverUpdateArgs(hostID, rows)...)
	}
}

// serverUpdateSQL is logonUpdateSQL for server sessions.
func serverUpdateSQL(stored string) string {
	return `WITH upd AS (UPDATE server_session s SET last_seen = u.last_seen, end_before = u.end_before
		FROM unnest($2::tid[], $3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[])
		     AS u(loc, id, stored_end, last_seen, end_before)
		WHERE s.end_before = ` + stored + ` AND s.end_before = u.stored_end AND s.ctid = u.loc AND s.id = u.id AND s.host_id = $1
		RETURNING 1)
		SELECT assert_updated($7, count(*), 'server sessions') FROM upd`
}

// serverUpdateArgs are the arguments of serverUpdateSQL for rows.
func serverUpdateArgs(hostID int32, rows []*serverRow) []any {
	n := len(rows)
	locs, ids, storeds, lasts, ends := make([]rowLoc, n), make([]int64, n), make([]pgtype.Timestamptz, n),
		make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
	for i, r := range rows {
		locs[i], ids[i], storeds[i], lasts[i], ends[i] = r.loc, r.id, tsEnd(r.storedEnd), tsOpt(r.lastSeen), tsEnd(r.endBefore)
	}
	return []any{hostID, locs, ids, storeds, lasts, ends, n}
}
