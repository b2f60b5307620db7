package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"
)

// Snapshots in parts (docs/design/0002-storage.md, "Snapshots in parts").
//
// An agent splits a snapshot too large for one report in parts: Fulls with
// consecutive sequences, the same stamped TakenAt, Part 1..PartsTotal. A
// part other than the last is held: acknowledged (the agent's high-water
// mark moves past it) but not applied, and kept in table snapshot_part when
// the call ends before its last part. The last part is applied as one Full
// with the sessions and errors of every held part of its set; when one of
// them is missing (lost, or never sent), it is applied with both session
// lists marked incomplete, so that its sessions are facts but absences end
// nothing. Parts held by an earlier call are read back under the agent's
// row lock; a report applied after them that completes nothing (another
// snapshot) discards them.

// partMissing is the message of the CollectionErrors the store adds to the
// last part of an incomplete set.
const partMissing = "snapshot in parts: a part is missing; absences end nothing"

// heldPart is a part of a snapshot held by the store (snapshot_part).
type heldPart struct {
	r       Report
	stamped int64 // the stamped TakenAt, in microseconds
}

// hasLaterParts says whether reports hold a part other than the first, which
// needs the parts held before it.
func hasLaterParts(reports []Report) bool {
	for i := range reports {
		if reports[i].Part > 1 {
			return true
		}
	}
	return false
}

// loadParts reads the parts held for the agent in its current incarnation.
func (st *ingestState) loadParts(ctx context.Context, tx *pgx.Conn, agentID string) (map[uint64]heldPart, error) {
	rows, err := tx.Query(ctx, `SELECT report FROM snapshot_part WHERE agent_id = $1 AND incarnation = $2 ORDER BY sequence`,
		agentID, int64(st.incarnation))
	if err != nil {
		return nil, fmt.Errorf("read the held parts of snapshots: %w", err)
	}
	defer rows.Close()
	held := make(map[uint64]heldPart)
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("read the held parts of snapshots: %w", err)
		}
		var p partJSON
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("decode a held part of a snapshot: %w", err)
		}
		r := p.Report
		r.stamped = p.Stamped
		held[r.Sequence] = heldPart{r: r, stamped: r.stampedTakenAt().UnixMicro()}
	}
	return held, rows.Err()
}

// partJSON is a held part as stored: the clean report, and the TakenAt the
// agent stamped when the store corrected it.
type partJSON struct {
	Report  Report
	Stamped time.Time `json:",omitzero"`
}

// assembleParts marks the parts of reports other than the last of their
// set as held, and gives each last part the sessions and errors of its
// set's held parts (from held, those of earlier calls, and from reports),
// or, when one is missing, both classes incomplete. It returns the parts
// of earlier calls it merged, whose labels and accounts the call must
// resolve too.
func assembleParts(reports []Report, held map[uint64]heldPart, hwm uint64) (merged []Report) {
	if held == nil {
		held = make(map[uint64]heldPart)
	}
	fromCall := make(map[uint64]bool)
	for i := range reports {
		r := &reports[i]
		if r.Kind != KindSnapshot || r.PartsTotal == 0 || r.Sequence <= hwm {
			continue
		}
		if r.Part < r.PartsTotal {
			r.held = true
			held[r.Sequence] = heldPart{r: *r, stamped: r.stampedTakenAt().UnixMicro()}
			fromCall[r.Sequence] = true
			continue
		}
		stamped := r.stampedTakenAt().UnixMicro()
		complete := uint64(r.PartsTotal-1) < r.Sequence
		var set []Report
		for k := uint32(1); complete && k < r.PartsTotal; k++ {
			p, ok := held[r.Sequence-uint64(r.PartsTotal-k)]
			if !ok || p.r.Part != k || p.r.PartsTotal != r.PartsTotal || p.stamped != stamped {
				complete = false
				break
			}
			set = append(set, p.r)
		}
		if !complete {
			// Keep what arrived of the set: its sessions are facts.
			set = set[:0]
			for k := uint32(1); k < r.PartsTotal && uint64(r.PartsTotal-k) < r.Sequence; k++ {
				if p, ok := held[r.Sequence-uint64(r.PartsTotal-k)]; ok && p.r.PartsTotal == r.PartsTotal && p.stamped == stamped {
					set = append(set, p.r)
				}
			}
		}
		var logon []LogonSession
		var server []ServerSession
		var errs []CollectionError
		for _, p := range set {
			logon = append(logon, p.LogonSessions...)
			server = append(server, p.ServerSessions...)
			errs = append(errs, p.CollectionErrors...)
			if !fromCall[p.Sequence] {
				merged = append(merged, p)
			}
		}
		r.LogonSessions = append(logon, r.LogonSessions...)
		r.ServerSessions = append(server, r.ServerSessions...)
		r.CollectionErrors = append(errs, r.CollectionErrors...)
		if !complete {
			r.CollectionErrors = append(r.CollectionErrors,
				CollectionError{Class: ClassLogonSession, Message: partMissing},
				CollectionError{Class: ClassServerSession, Message: partMissing})
		}
	}
	return merged
}

// resolveMore adds to ids the labels and accounts of reports.
func (s *Store) resolveMore(ctx context.Context, ids *resolved, reports []Report) error {
	if len(reports) == 0 {
		return nil
	}
	more, err := s.resolve(ctx, reports)
	if err != nil {
		return err
	}
	maps.Copy(ids.labels, more.labels)
	maps.Copy(ids.accounts, more.accounts)
	return nil
}

// queueParts queues the writes of the held parts: those the call held and
// did not complete are kept; the ones before the last report the call
// applied that was not held are deleted (completed, or of a set that will
// never be complete), and so are those of another incarnation.
func (st *ingestState) queueParts(b *pgx.Batch, agentID string) error {
	if st.lastUnheld > 0 {
		b.Queue(`DELETE FROM snapshot_part WHERE agent_id = $1 AND (sequence <= $2 OR incarnation <> $3)`,
			agentID, int64(st.lastUnheld), int64(st.incarnation))
	}
	for _, r := range st.heldNow {
		if r.Sequence <= st.lastUnheld {
			continue
		}
		raw, err := json.Marshal(partJSON{Report: r, Stamped: r.stamped})
		if err != nil {
			return fmt.Errorf("encode a part of a snapshot: %w", err)
		}
		b.Queue(`INSERT INTO snapshot_part (agent_id, sequence, incarnation, taken_at, part, parts_total, report)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
			agentID, int64(r.Sequence), int64(st.incarnation), r.stampedTakenAt(), int32(r.Part), int32(r.PartsTotal), string(raw))
	}
	return nil
}
