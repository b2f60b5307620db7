package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Heartbeat is one agent's heartbeat, the most common report of a fleet at
// rest, for IngestHeartbeats.
type Heartbeat struct {
	AgentID      string
	MachineGUID  string
	Sequence     uint64
	BaseSequence uint64
	TakenAt      time.Time
	// Incarnation is the batch's spool incarnation (0: none sent). A
	// heartbeat of another incarnation than the stored one is left to
	// Ingest, which starts the chain again.
	Incarnation uint64
}

// IngestHeartbeats stores the heartbeats of many agents in one statement,
// one commit for all of them, where Ingest would take one transaction each:
// a fleet at rest sends little else, and a commit per heartbeat is what
// bounds how many agents one database serves (docs/benchmarks.md).
//
// It applies only the plain case: the agent's row exists for the host, of
// the heartbeat's incarnation (or neither has one), the
// heartbeat is the next report after the stored state (BaseSequence is the
// agent's last Snapshot or Delta, Sequence above its high-water mark) and
// newer than the host's latest observation. Then it has exactly Ingest's
// effect: the host's last-seen times move to TakenAt (the session lists
// the stored state says were incomplete keep their time) and the agent's
// high-water mark to Sequence. Anything else (a duplicate, a resync, a late
// heartbeat, a first report, an invalid value, a TakenAt so far ahead that
// the store corrects it, a second heartbeat of the same agent or host in the
// call) is left alone and reported false: the
// caller passes it to Ingest, which gives the full answer. applied[i] says
// whether hbs[i] was stored. An error means none was.
func (s *Store) IngestHeartbeats(ctx context.Context, hbs []Heartbeat) (applied []bool, err error) {
	applied = make([]bool, len(hbs))
	now := s.now()
	n := len(hbs)
	agents, guids := make([]string, 0, n), make([]string, 0, n)
	seqs, bases, obs := make([]int64, 0, n), make([]int64, 0, n), make([]time.Time, 0, n)
	incs := make([]int64, 0, n)
	index := make(map[string]int, n) // agent id → position in hbs
	seenGUID := make(map[string]bool, n)
	for i, h := range hbs {
		guid, err := validMachineGUID("machineGUID", h.MachineGUID)
		if err != nil || validKey("agentID", h.AgentID) != nil {
			continue
		}
		c, notes, err := cleanReport(Report{Kind: KindHeartbeat, Sequence: h.Sequence, BaseSequence: h.BaseSequence, TakenAt: h.TakenAt}, guid, now)
		if err != nil || len(notes) > 0 {
			continue // Ingest stores the notes (a TakenAt far ahead, corrected)
		}
		if _, dup := index[h.AgentID]; dup || seenGUID[guid] {
			continue
		}
		index[h.AgentID], seenGUID[guid] = i, true
		agents, guids = append(agents, h.AgentID), append(guids, guid)
		seqs, bases, obs = append(seqs, int64(c.Sequence)), append(bases, int64(c.BaseSequence)), append(obs, c.TakenAt)
		incs = append(incs, int64(h.Incarnation))
	}
	if len(agents) == 0 {
		return applied, nil
	}
	// Hosts are locked first and in host_id order, as Ingest locks a host
	// before its agent: concurrent calls and Ingest cannot deadlock.
	rows, err := s.pool.Query(ctx, `WITH v AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[], $9::bigint[])
				AS v(agent_id, guid, seq, base, obs, inc)
		), h AS (
			SELECT host.host_id, host.last_seen, v.agent_id, v.seq, v.base, v.obs, v.inc
			FROM host JOIN v ON host.machine_guid = v.guid
			ORDER BY host.host_id FOR UPDATE OF host
		), a AS (
			UPDATE agent SET applied_sequence = h.seq, applied_taken_at = h.obs, last_received = $6
			FROM h
			WHERE agent.agent_id = h.agent_id AND agent.host_id = h.host_id
			  AND agent.applied_sequence < h.seq AND agent.state_sequence = h.base
			  AND coalesce(agent.incarnation, 0) = h.inc
			  AND h.last_seen IS NOT NULL AND h.obs > h.last_seen
			RETURNING agent.agent_id, agent.host_id, agent.incomplete_classes, h.obs
		), u AS (
			UPDATE host SET last_seen = a.obs, last_received = greatest(host.last_received, $6), agent_id = a.agent_id,
				logon_seen_at = CASE WHEN $7 = ANY(a.incomplete_classes) THEN host.logon_seen_at ELSE a.obs END,
				server_seen_at = CASE WHEN $8 = ANY(a.incomplete_classes) THEN host.server_seen_at ELSE a.obs END
			FROM a WHERE host.host_id = a.host_id
			RETURNING a.agent_id
		)
		SELECT agent_id FROM u`, agents, guids, seqs, bases, obs, now, ClassLogonSession, ClassServerSession, incs)
	if err != nil {
		return applied, fmt.Errorf("store: ingest %d heartbeats: %w", len(agents), err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return make([]bool, len(hbs)), fmt.Errorf("store: ingest %d heartbeats: %w", len(agents), err)
	}
	for _, id := range done {
		applied[index[id]] = true
	}
	return applied, nil
}
