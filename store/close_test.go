package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// planWork is what EXPLAIN ANALYZE says a statement did.
type planWork struct {
	// touched counts the rows every plan node produced or threw away
	// (filters, join filters, rechecks), over all its loops: the work of
	// a plan in rows, whatever its shape.
	touched float64
	// arraySearch lists the conditions that search a parameter array
	// ("= ANY ($n)"): PostgreSQL searches such an array linearly for every
	// row (it hashes only constant arrays).
	arraySearch []string
	text        string
}

// genericPlan runs sql with args under EXPLAIN (ANALYZE) in its generic
// plan, as the ingest transaction runs it (plan_cache_mode =
// force_generic_plan): a statement PREPAREd in SQL, executed with the
// arguments as literals (EXPLAIN of a statement with bound parameters would
// plan it for their values), after the statements in setup (as the ingest
// runs updatePlanOff before its UPDATEs). It runs inside tx, which the
// caller rolls back.
func genericPlan(t *testing.T, tx pgx.Tx, setup []string, sql string, args ...any) planWork {
	t.Helper()
	ctx := context.Background()
	sd, err := tx.Conn().Prepare(ctx, "", sql)
	if err != nil {
		t.Fatalf("prepare: %v\n%s", err, sql)
	}
	lits := make([]string, len(args))
	for i, a := range args {
		var typ string
		if err := tx.QueryRow(ctx, "SELECT format_type($1, NULL)", sd.ParamOIDs[i]).Scan(&typ); err != nil {
			t.Fatal(err)
		}
		var lit string
		if err := tx.QueryRow(ctx, "SELECT quote_literal($1::"+typ+"::text)", a).Scan(&lit); err != nil {
			t.Fatalf("argument $%d (%s): %v", i+1, typ, err)
		}
		lits[i] = lit + "::" + typ
	}
	for _, q := range append([]string{"SET LOCAL plan_cache_mode = force_generic_plan"}, setup...) {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Exec(ctx, "PREPARE plan_probe AS "+sql); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := tx.Exec(ctx, "DEALLOCATE plan_probe"); err != nil {
			t.Fatal(err)
		}
	}()
	var out []byte
	if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE plan_probe("+strings.Join(lits, ", ")+")").Scan(&out); err != nil {
		t.Fatalf("explain: %v", err)
	}
	var plans []struct{ Plan map[string]any }
	if err := json.Unmarshal(out, &plans); err != nil {
		t.Fatal(err)
	}
	var w planWork
	var walk func(n map[string]any, depth int)
	walk = func(n map[string]any, depth int) {
		num := func(k string) float64 { v, _ := n[k].(float64); return v }
		loops := num("Actual Loops")
		w.touched += loops * (num("Actual Rows") + num("Rows Removed by Filter") +
			num("Rows Removed by Join Filter") + num("Rows Removed by Index Recheck"))
		line := fmt.Sprintf("%s%v", strings.Repeat("  ", depth), n["Node Type"])
		if r, ok := n["Relation Name"]; ok {
			line += fmt.Sprintf(" on %v", r)
		}
		line += fmt.Sprintf(" (rows=%v loops=%v)", n["Actual Rows"], n["Actual Loops"])
		for _, k := range []string{"Filter", "Join Filter", "Index Cond", "TID Cond", "Hash Cond", "Recheck Cond"} {
			if c, ok := n[k].(string); ok {
				line += " " + k + ": " + c
				if strings.Contains(c, "ANY ($") {
					w.arraySearch = append(w.arraySearch, c)
				}
			}
		}
		w.text += line + "\n"
		sub, _ := n["Plans"].([]any)
		for _, s := range sub {
			walk(s.(map[string]any), depth+1)
		}
	}
	walk(plans[0].Plan, 0)
	return w
}

// TestClosedReadAndUpdatePlans checks the work of the statements that close,
// read and reopen the intervals of many sessions that started in the same
// second (a file server's burst of SMB sessions): it must grow with the
// number of rows, not with its square, nor with the host's history. The
// UPDATE that closed intervals used to join through (host_id, start_time)
// and filter by id, reading every same-start row for each row updated; the
// read of closed intervals searched its keys with "= ANY($3)", linearly for
// each row; and left to itself the planner may compare every row to update
// with every row of the host. Each statement is measured in its generic
// plan, as the ingest runs it, with partitions never analyzed (autovacuum
// off), then analyzed; the test counts rows and looks at the plan's
// conditions rather than time.
func TestClosedReadAndUpdatePlans(t *testing.T) {
	const n = 1000
	s, _ := newTestStore(t)
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `DO $$ DECLARE r record; BEGIN
		FOR r IN SELECT inhrelid::regclass AS part FROM pg_inherits
			WHERE inhparent IN ('logon_session'::regclass, 'server_session'::regclass) LOOP
			EXECUTE format('ALTER TABLE %s SET (autovacuum_enabled = false)', r.part);
		END LOOP; END $$`); err != nil {
		t.Fatal(err)
	}
	analyze := func() {
		t.Helper()
		if _, err := s.pool.Exec(ctx, "ANALYZE logon_session; ANALYZE server_session"); err != nil {
			t.Fatal(err)
		}
	}
	boot := at(-48 * time.Hour)
	start := at(-10 * time.Minute)
	sessions := func(obs time.Time) ([]LogonSession, []ServerSession) {
		ls := make([]LogonSession, n)
		ss := make([]ServerSession, n)
		for i := range n {
			ls[i] = logon(fmt.Sprintf("0x%x", 0x10000+i), start, "CONTOSO", fmt.Sprint("user", i%50))
			ss[i] = server(fmt.Sprintf("PC%05d", i), fmt.Sprint("user", i%50), uint32(obs.Sub(start)/time.Second))
		}
		return ls, ss
	}
	ls, ss := sessions(at(0))
	mustIngest(t, s, "agent-1", full(1, at(0), boot, ls, ss))

	var hostID int32
	if err := s.pool.QueryRow(ctx, `SELECT host_id FROM host WHERE machine_guid = $1`, guid).Scan(&hostID); err != nil {
		t.Fatal(err)
	}
	// The host's older history, in the months before: a plan that reads
	// it to update or read today's rows fails the test as well.
	const history = 20 * n
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO logon_session (boot_time, start_time, last_seen, end_before, host_id, logon_id)
			SELECT $2::timestamptz, $2::timestamptz + g * interval '10 minutes', $2::timestamptz + g * interval '10 minutes',
				$2::timestamptz + g * interval '10 minutes' + interval '1 minute', $1, 'old' || g FROM generate_series(1, $3::int) g`,
		hostID, at(-300*24*time.Hour), history); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO server_session (start_time, last_seen, end_before, host_id, computer_label, user_label)
			SELECT $2::timestamptz + g * interval '10 minutes', $2::timestamptz + g * interval '10 minutes',
				$2::timestamptz + g * interval '10 minutes' + interval '1 minute', $1, (SELECT min(label_id) FROM label),
				(SELECT min(label_id) FROM label) FROM generate_series(1, $3::int) g`,
		hostID, at(-300*24*time.Hour), history); err != nil {
		t.Fatal(err)
	}

	stored := func(tx pgx.Tx) ([]*logonRow, []*serverRow) {
		t.Helper()
		var lr []*logonRow
		rows, _ := tx.Query(ctx, `SELECT ctid, id, end_before, boot_time, coalesce(account_id, 0), logon_id FROM logon_session
			WHERE host_id = $1 AND start_time = $2 ORDER BY id`, hostID, start)
		for rows.Next() {
			r := &logonRow{}
			var end pgtype.Timestamptz
			if err := rows.Scan(&r.loc, &r.id, &end, &r.boot, &r.accountID, &r.sess.LogonID); err != nil {
				t.Fatal(err)
			}
			r.storedEnd = nullTime(end)
			lr = append(lr, r)
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		var sr []*serverRow
		rows, _ = tx.Query(ctx, `SELECT ctid, id, end_before, computer_label FROM server_session
			WHERE host_id = $1 AND start_time = $2 ORDER BY id`, hostID, start)
		for rows.Next() {
			r := &serverRow{}
			var end pgtype.Timestamptz
			if err := rows.Scan(&r.loc, &r.id, &end, &r.peer.computer); err != nil {
				t.Fatal(err)
			}
			r.storedEnd = nullTime(end)
			sr = append(sr, r)
		}
		if rows.Err() != nil {
			t.Fatal(rows.Err())
		}
		if len(lr) != n || len(sr) != n {
			t.Fatalf("stored %d logon and %d server rows, want %d each", len(lr), len(sr), n)
		}
		return lr, sr
	}
	// Work allowed per row: a few plan nodes each pass it on once (the
	// arguments, the row found, the row updated, the count); n² or the
	// host's history is far above.
	const perRow = 10
	check := func(what string, w planWork) {
		t.Helper()
		t.Logf("%s: %.0f rows touched for %d rows\n%s", what, w.touched, n, w.text)
		if w.touched > perRow*n {
			t.Errorf("%s: the plan touched %.0f rows for %d rows (more than %d per row): it searches the host's rows for every row, or reads its history\n%s",
				what, w.touched, n, perRow, w.text)
		}
		if len(w.arraySearch) > 0 {
			t.Errorf("%s: the plan searches a parameter array for every row: %v\n%s", what, w.arraySearch, w.text)
		}
	}
	withTx := func(f func(tx pgx.Tx)) {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		f(tx)
	}
	update := []string{updatePlanOff}

	// Close every open row (the full snapshot without them).
	closeAll := func(state string) {
		withTx(func(tx pgx.Tx) {
			lr, sr := stored(tx)
			for _, r := range lr {
				r.lastSeen, r.endBefore = at(0), at(time.Minute)
			}
			for _, r := range sr {
				r.lastSeen, r.endBefore = at(0), at(time.Minute)
			}
			check("close logon sessions, "+state, genericPlan(t, tx, update, logonUpdateSQL("'infinity'"), logonUpdateArgs(hostID, lr)...))
			check("close server sessions, "+state, genericPlan(t, tx, update, serverUpdateSQL("'infinity'"), serverUpdateArgs(hostID, sr)...))
		})
	}
	closeAll("partitions never analyzed")
	mustIngest(t, s, "agent-1", full(2, at(time.Minute), boot, nil, nil))

	// The sessions reappear: their closed intervals are read by key, then
	// reopened in their monthly partition.
	reappear := func(state string) {
		withTx(func(tx pgx.Tx) {
			lr, sr := stored(tx)
			ids, computers := make([]string, n), make([]int32, n)
			for i, r := range lr {
				ids[i], r.boot, r.lastSeen, r.endBefore = r.sess.LogonID, boot, time.Time{}, time.Time{}
			}
			for i, r := range sr {
				computers[i], r.lastSeen, r.endBefore = r.peer.computer, time.Time{}, time.Time{}
			}
			check("read closed logon sessions, "+state, genericPlan(t, tx, nil, closedLogonSQL, hostID, boot, ids))
			check("read closed server sessions, "+state, genericPlan(t, tx, nil, closedServerSQL, hostID, start.Add(-ServerStartJitter), computers))
			check("reopen logon sessions, "+state, genericPlan(t, tx, update, logonUpdateSQL("u.stored_end"), logonUpdateArgs(hostID, lr)...))
			check("reopen server sessions, "+state, genericPlan(t, tx, update, serverUpdateSQL("u.stored_end"), serverUpdateArgs(hostID, sr)...))
		})
	}
	reappear("partitions never analyzed")
	analyze()
	reappear("partitions analyzed")

	// And the ingest itself: reappear, close again; every interval kept.
	ls, ss = sessions(at(2 * time.Minute))
	mustIngest(t, s, "agent-1", full(3, at(2*time.Minute), boot, ls, ss))
	closeAll("open partition analyzed while it was empty")
	analyze()
	closeAll("partitions analyzed")
	mustIngest(t, s, "agent-1", full(4, at(3*time.Minute), boot, nil, nil))
	var logonN, serverN, closed int
	if err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM logon_session WHERE start_time = $2),
		(SELECT count(*) FROM server_session WHERE start_time = $2),
		(SELECT count(*) FROM logon_session WHERE end_before = $1) + (SELECT count(*) FROM server_session WHERE end_before = $1)`,
		at(3*time.Minute), start).Scan(&logonN, &serverN, &closed); err != nil {
		t.Fatal(err)
	}
	if logonN != n || serverN != n || closed != 2*n {
		t.Fatalf("after reappearing and closing again: %d logon and %d server intervals, %d ended at the last snapshot; want %d, %d, %d",
			logonN, serverN, closed, n, n, 2*n)
	}
}
