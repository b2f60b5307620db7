package store

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Coverage gaps (docs/design/0002-storage.md, "Coverage gaps"): the
// stretches of time over which a host's stored history is known to be
// incomplete, recorded as facts in coverage_gap (migration 007).
//
// The sources: an agent that lost reports before it delivered them
// (Report.LostBefore: its spool found them damaged, dropped them on
// overflow, or could not write them), an agent whose spool was replaced (a
// new incarnation: the reports the old spool still held are lost, how many
// is not known), and a batch the store set aside (quarantine.go). The
// reports after the loss are applied although their base is missing: their
// upserted sessions and ended keys are facts. What the lost reports held is not
// known: sessions that started and ended within the gap are missing, and
// sessions open before it may have ended within it. So, until the next
// complete Snapshot, the host's state is "unsettled": no report may claim
// that the host's open sessions were all still there, and the last complete
// observation of each class (logon_seen_at, server_seen_at, the "last seen"
// of every open session) stays where it was before the gap. The interval
// bounds written meanwhile are wider than usual, never wrong: a session the
// store had open and a later report ends is last seen before the gap (or at
// its start, if it started after). The Snapshot settles the gap
// (settled_at): it closes what ended within it, adds what started within
// it and lasted, and the usual rules resume.

// GapReason says why a host's history has a coverage gap: a lower-case
// word, stored in coverage_gap.reason.
type GapReason string

const (
	// GapSpoolDamage: the agent's spool found reports damaged on disk
	// (LOST_REPORTS_REASON_SPOOL_DAMAGE).
	GapSpoolDamage GapReason = "spool_damage"
	// GapLostReports: the agent lost reports for a reason it did not name.
	GapLostReports GapReason = "lost_reports"
	// GapSpoolOverflow: the agent's spool dropped its oldest reports to
	// stay within its bound (SpoolMaxMB) while the collector could not
	// take them (LOST_REPORTS_REASON_SPOOL_OVERFLOW).
	GapSpoolOverflow GapReason = "spool_overflow"
	// GapSpoolWriteFailed: the agent could not write reports to its spool,
	// a full disk say (LOST_REPORTS_REASON_SPOOL_WRITE_FAILED).
	GapSpoolWriteFailed GapReason = "spool_write_failed"
	// GapSpoolReplaced: the agent's spool was deleted or lost and made anew
	// (a new incarnation, incarnation.go). The reports the old spool held
	// beyond the store's high-water mark are lost; how many is not known,
	// so the gap names no sequences.
	GapSpoolReplaced GapReason = "spool_replaced"
)

var gapReasonPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// CoverageGap is a stretch of a host's history the store knows to be
// incomplete.
type CoverageGap struct {
	// ID is the store's identifier (0 in IngestResult.Gaps).
	ID   int64
	Host HostRef
	// AgentID is the agent whose reports revealed the gap; empty when none.
	AgentID string
	Reason  GapReason
	// StartTime is the host's last observation the store holds before the
	// gap, EndTime the first after it (the host's clock). Sessions may be
	// missing between them.
	StartTime, EndTime time.Time
	// SettledAt is the first complete snapshot after the gap (the host's
	// clock): from then on the host's picture is whole again. Until then,
	// sessions that started within the gap and lasted are not stored yet,
	// and the ends of those open before it are bounded by it only. Zero
	// while not settled.
	SettledAt time.Time
	// FirstSequence..LastSequence are the reports lost, both included; 0
	// when not known (GapSpoolReplaced: the old spool's reports after the
	// store's high-water mark, if it held any) or for a gap of another
	// reason.
	FirstSequence, LastSequence uint64
	// RecordedAt is when the store recorded the gap (its clock).
	RecordedAt time.Time
}

// LostReports returns how many reports were lost (0 when not known, or for
// a gap of another reason).
func (g CoverageGap) LostReports() uint64 {
	if g.FirstSequence == 0 {
		return 0
	}
	return g.LastSequence - g.FirstSequence + 1
}

// CoverageGapsQuery asks for coverage gaps, of one host or of the fleet,
// ordered by StartTime then ID.
type CoverageGapsQuery struct {
	// Host keeps only this host (name or machine GUID); empty: every host.
	Host string
	// StartTime and EndTime, when given (both), keep the gaps that overlap
	// [StartTime, EndTime); both zero: every gap.
	StartTime, EndTime time.Time
	PageSize           int
	Cursor             string
}

// afterGap, in agent.incomplete_classes, marks the agent's state as
// unsettled by a coverage gap; the classes are then listed too, so that
// IngestHeartbeats, which reads only those, keeps the seen-at times as well.
const afterGap = "after_coverage_gap"

// unsettled says whether the host's state is unsettled by a coverage gap
// (no complete Snapshot since).
func (h *hostIntervals) unsettled() bool { return slices.Contains(h.incomplete, afterGap) }

// openGap makes the host's state unsettled: every class incomplete until a
// complete Snapshot.
func (h *hostIntervals) openGap() {
	for _, c := range []string{ClassLogonSession, ClassServerSession, afterGap} {
		if !slices.Contains(h.incomplete, c) {
			h.incomplete = append(h.incomplete, c)
		}
	}
}

// incompleteAfter returns the classes incomplete in the state after r, a
// Snapshot or Delta applied (late or not): those r's errors name, and, while
// the state is unsettled, every class and the mark. Only a Snapshot applied
// live with both lists complete settles the state.
func (h *hostIntervals) incompleteAfter(r *Report, late bool) []string {
	unsettled := h.unsettled() &&
		(r.Kind != KindSnapshot || late || r.incomplete(ClassLogonSession) || r.incomplete(ClassServerSession))
	out := h.incomplete[:0]
	for _, c := range []string{ClassLogonSession, ClassServerSession} {
		if unsettled || r.incomplete(c) {
			out = append(out, c)
		}
	}
	if unsettled {
		out = append(out, afterGap)
	}
	return out
}

// gapState is what an Ingest call learns of coverage gaps.
type gapState struct {
	// gaps are the gaps recorded by the call, in order.
	gaps []CoverageGap
	// settledStored is when a Snapshot of the call settled the gaps stored
	// before it (zero: none did).
	settledStored time.Time
}

// gapBefore is called before report r is applied. It reports whether r may
// be applied although it does not apply to the stored state: r carries
// LostBefore, reports it names as lost are missing from the store, and r is
// a Snapshot or its base is one of them. It then records the coverage gap
// (from the host's last observation to r's) and makes the state unsettled.
// Lost reports the chain did not need (r's base is the stored state: only
// Heartbeats were lost) are no gap; a base that is neither stored nor
// declared lost is not excused (the caller asks for a resync).
func (st *ingestState) gapBefore(agentID, machineGUID string, r *Report) bool {
	lb := r.LostBefore
	if lb == nil {
		return false
	}
	if r.Kind != KindSnapshot && (r.BaseSequence == st.stateSeq ||
		r.BaseSequence < lb.FirstSequence || r.BaseSequence > lb.LastSequence) {
		return false
	}
	first := max(lb.FirstSequence, st.hwm+1)
	if first > lb.LastSequence {
		return false // the store has them all
	}
	st.openGap()
	if st.lastSeen.IsZero() {
		return true // nothing stored before: no coverage to have a gap in
	}
	reason := lb.Reason
	if reason == "" {
		reason = GapLostReports
	}
	st.gaps = append(st.gaps, CoverageGap{
		Host:    HostRef{MachineGUID: machineGUID, Hostname: st.facts.Hostname, Domain: st.facts.Domain},
		AgentID: agentID, Reason: reason, StartTime: st.lastSeen, EndTime: maxTime(st.lastSeen, r.TakenAt),
		FirstSequence: first, LastSequence: lb.LastSequence,
	})
	return true
}

// gapAtRestart is called before the reports of a call that took a new
// incarnation of the agent's spool (st.restart, incarnation.go) are
// applied; the gap ends at the first of reports, the call's valid ones. The
// old spool's reports after the store's high-water mark, if it held any,
// are lost, and how many is not known: the host's history has a coverage
// gap (GapSpoolReplaced, no sequences) from its last observation to that
// report, and its state is unsettled until the next complete Snapshot, as
// after lost reports. The new spool's first report is a Snapshot (a new
// chain needs one), which settles the gap at once when it is complete. A
// host with no observation before has no coverage to have a gap in.
func (st *ingestState) gapAtRestart(agentID, machineGUID string, reports []Report) {
	if st.restart == nil || st.lastSeen.IsZero() {
		return
	}
	end := st.lastSeen
	if len(reports) > 0 {
		end = maxTime(end, reports[0].TakenAt)
	}
	st.openGap()
	st.gaps = append(st.gaps, CoverageGap{
		Host:    HostRef{MachineGUID: machineGUID, Hostname: st.facts.Hostname, Domain: st.facts.Domain},
		AgentID: agentID, Reason: GapSpoolReplaced, StartTime: st.lastSeen, EndTime: end,
	})
}

// settle is called after report r was applied; unsettled says whether the
// state was unsettled before. A Snapshot that settled it settles every gap
// open: those of this call, and those stored before.
func (st *ingestState) settle(unsettled bool, r *Report) {
	if !unsettled || st.unsettled() {
		return
	}
	for i := range st.gaps {
		if st.gaps[i].SettledAt.IsZero() {
			st.gaps[i].SettledAt = maxTime(r.TakenAt, st.gaps[i].EndTime)
		}
	}
	if st.settledStored.IsZero() {
		st.settledStored = r.TakenAt
	}
}

// queueGaps queues the writes of the call's gaps: the settling of those
// stored before (first, so that it does not touch the new ones), then the
// new ones.
func (st *ingestState) queueGaps(b *pgx.Batch, agentID string, now time.Time) {
	if !st.settledStored.IsZero() {
		b.Queue(`UPDATE coverage_gap SET settled_at = greatest($2, end_time) WHERE host_id = $1 AND settled_at IS NULL`,
			st.hostID, st.settledStored)
	}
	n := len(st.gaps)
	if n == 0 {
		return
	}
	reasons, starts, ends, settled := make([]string, n), make([]time.Time, n), make([]time.Time, n), make([]pgtype.Timestamptz, n)
	firsts, lasts := make([]*int64, n), make([]*int64, n) // NULL: not known
	for i := range st.gaps {
		g := &st.gaps[i]
		g.RecordedAt = now
		reasons[i], starts[i], ends[i], settled[i] = string(g.Reason), g.StartTime, g.EndTime, tsOpt(g.SettledAt)
		if g.FirstSequence != 0 {
			f, l := int64(g.FirstSequence), int64(g.LastSequence)
			firsts[i], lasts[i] = &f, &l
		}
	}
	b.Queue(`INSERT INTO coverage_gap (host_id, agent_id, reason, start_time, end_time, settled_at,
			first_sequence, last_sequence, recorded_at)
		SELECT $1, $2, u.reason, u.start_time, u.end_time, u.settled_at, u.first_sequence, u.last_sequence, $3
		FROM unnest($4::text[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::bigint[], $9::bigint[])
			AS u(reason, start_time, end_time, settled_at, first_sequence, last_sequence)`,
		st.hostID, agentID, now, reasons, starts, ends, settled, firsts, lasts)
}

// checkLostBefore validates r.LostBefore (nil is valid).
func checkLostBefore(r *Report) error {
	lb := r.LostBefore
	if lb == nil {
		return nil
	}
	fail := func(field, format string, args ...any) error {
		return &FieldError{Sequence: r.Sequence, Field: "LostBefore." + field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case lb.FirstSequence == 0:
		return fail("FirstSequence", "0 is not a sequence (they start at 1)")
	case lb.LastSequence < lb.FirstSequence:
		return fail("LastSequence", "%d is before FirstSequence %d", lb.LastSequence, lb.FirstSequence)
	case lb.LastSequence >= r.Sequence:
		return fail("LastSequence", "%d is not before the report's sequence %d", lb.LastSequence, r.Sequence)
	case lb.Reason != "" && !gapReasonPattern.MatchString(string(lb.Reason)):
		return fail("Reason", "%q is not a lower-case word", lb.Reason)
	}
	return nil
}

// CoverageGaps returns the coverage gaps of a host, or of the fleet, that
// overlap [StartTime, EndTime) (all of them without a range), ordered by
// StartTime then ID.
func (s *Store) CoverageGaps(ctx context.Context, q CoverageGapsQuery) (Page[CoverageGap], error) {
	var none Page[CoverageGap]
	n, err := pageSize(q.PageSize)
	if err != nil {
		return none, err
	}
	c, err := decodeCursor(q.Cursor)
	if err != nil {
		return none, err
	}
	ct, cid := c.after(0)
	where := []string{"(g.start_time, g.id) > ($1, $2)"}
	args := []any{ct, cid}
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if !q.StartTime.IsZero() || !q.EndTime.IsZero() {
		if err := checkRange(q.StartTime, q.EndTime); err != nil {
			return none, err
		}
		add("g.end_time >= $%d", q.StartTime)
		add("g.start_time < $%d", q.EndTime)
	}
	var ambiguous []HostRef
	if q.Host != "" {
		m, err := s.hostIDs(ctx, q.Host)
		if err != nil || len(m.ids) == 0 {
			return none, err
		}
		ambiguous = m.ambiguous
		add("g.host_id = ANY($%d)", m.ids)
	}
	args = append(args, n+1)
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT g.id, h.machine_guid, h.hostname, h.domain, coalesce(g.agent_id, ''),
			g.reason, g.start_time, g.end_time, g.settled_at, coalesce(g.first_sequence, 0), coalesce(g.last_sequence, 0),
			g.recorded_at
		FROM coverage_gap g JOIN host h USING (host_id)
		WHERE %s ORDER BY g.start_time, g.id LIMIT $%d`, strings.Join(where, " AND "), len(args)), args...)
	if err != nil {
		return none, fmt.Errorf("store: list coverage gaps: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (CoverageGap, error) {
		var g CoverageGap
		var settled pgtype.Timestamptz
		var first, last int64
		err := row.Scan(&g.ID, &g.Host.MachineGUID, &g.Host.Hostname, &g.Host.Domain, &g.AgentID, &g.Reason,
			&g.StartTime, &g.EndTime, &settled, &first, &last, &g.RecordedAt)
		g.StartTime, g.EndTime, g.RecordedAt, g.SettledAt = g.StartTime.UTC(), g.EndTime.UTC(), g.RecordedAt.UTC(), nullTime(settled)
		g.FirstSequence, g.LastSequence = uint64(first), uint64(last)
		return g, err
	})
	if err != nil {
		return none, fmt.Errorf("store: list coverage gaps: %w", err)
	}
	p := Page[CoverageGap]{Items: items, AmbiguousHosts: ambiguous}
	if len(items) > n {
		p.Items = items[:n]
		l := p.Items[n-1]
		p.NextCursor = cursor{l.StartTime.UnixMicro(), 0, l.ID}.encode()
	}
	return p, nil
}
