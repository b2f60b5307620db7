package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// floor measures the least an ingest call can cost (flag -floor): the
// per-call protocol of Store.Ingest stripped to its transaction (lock the
// host and its agent, read the host's open sessions, write, commit), with
// open sessions kept in the cheapest form there is, one row of arrays per
// host, and none of the store's work (no sanitizing, dictionaries, interval
// rules or indexes for open sessions). It runs on one connection,
// sequentially, against a COPY per call of the same number of rows into a
// bare table, and prints the ratio: no store can do better than that on the
// machine. Scratch tables and rows are removed afterwards.
func floor(ctx context.Context, url string) {
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close(ctx)
	must := func(_ any, err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	cleanup := `DROP TABLE IF EXISTS floor_raw, floor_open;
		DELETE FROM logon_session WHERE host_id >= 900000000;
		DELETE FROM agent WHERE agent_id LIKE 'floor-%'; DELETE FROM host WHERE machine_guid LIKE 'floor-%'`
	must(c.Exec(ctx, cleanup))
	defer func() { must(c.Exec(ctx, cleanup)) }()
	must(c.Exec(ctx, `CREATE TABLE floor_raw (LIKE logon_session INCLUDING DEFAULTS);
		CREATE TABLE floor_open (host_id int PRIMARY KEY, ids bigint[], boots timestamptz[], starts timestamptz[],
			types bigint[], accounts int[], auths int[], logon_ids text[], s_ids bigint[], s_starts timestamptz[],
			s_computers int[], s_users int[], s_clients int[], s_transports int[])`))
	const n, sn, iters = 100, 20, 1000
	base := now.Add(-time.Hour)
	boot := base.Add(-48 * time.Hour)
	infinity := pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	cols := []string{"boot_time", "start_time", "last_seen", "end_before", "install_date", "logon_type", "host_id",
		"account_id", "auth_package_id", "logon_id"}
	copyCall := func(h int) error {
		rows := make([][]any, n+sn)
		for i := range rows {
			rows[i] = []any{boot, base.Add(time.Duration(i) * time.Second), nil, infinity, nil, int64(3),
				int32(900000000 + h), int32(1 + (h*7+i)%20000), int32(1), fmt.Sprint(100000 + i)}
		}
		_, err := c.CopyFrom(ctx, pgx.Identifier{"floor_raw"}, cols, pgx.CopyFromRows(rows))
		return err
	}
	// protoCall is one call of the stripped protocol: round 0 stores 100
	// logon + 20 server sessions as the host's open set; round 1 also ends
	// half of the logon sessions, inserting them as closed intervals.
	protoCall := func(round int) func(h int) error {
		return func(h int) error {
			guid := fmt.Sprintf("floor-%06d", h)
			b := &pgx.Batch{}
			b.Queue("BEGIN")
			var hostID int32
			b.Queue(`INSERT INTO host (machine_guid, first_received, last_received) VALUES ($1, $2, $2)
				ON CONFLICT (machine_guid) DO UPDATE SET last_received = greatest(host.last_received, excluded.last_received)
				RETURNING host_id`, guid, time.Now()).QueryRow(func(r pgx.Row) error { return r.Scan(&hostID) })
			b.Queue(`INSERT INTO agent (agent_id, host_id, first_received, last_received)
				VALUES ($1, (SELECT host_id FROM host WHERE machine_guid = $2), $3, $3)
				ON CONFLICT (agent_id) DO UPDATE SET host_id = excluded.host_id, last_received = excluded.last_received
				RETURNING applied_sequence`, guid, guid, time.Now())
			var ids []int64
			var starts []time.Time
			var lids []string
			b.Queue(`SELECT ids, starts, logon_ids FROM floor_open WHERE host_id = (SELECT host_id FROM host WHERE machine_guid = $1)`,
				guid).Query(func(rows pgx.Rows) error {
				for rows.Next() {
					if err := rows.Scan(&ids, &starts, &lids); err != nil {
						return err
					}
				}
				return rows.Err()
			})
			if err := c.SendBatch(ctx, b).Close(); err != nil {
				return err
			}
			b = &pgx.Batch{}
			if round == 1 {
				m := n / 2
				boots, st, lasts, ends := make([]time.Time, m), make([]time.Time, m), make([]time.Time, m), make([]time.Time, m)
				accts, lid := make([]int32, m), make([]string, m)
				for i := range m {
					boots[i], st[i], lasts[i], ends[i] = boot, base.Add(time.Duration(i)*time.Second), base, base.Add(time.Minute)
					accts[i], lid[i] = int32(1+(h*7+i)%20000), fmt.Sprint(100000+i)
				}
				b.Queue(`INSERT INTO logon_session (boot_time, start_time, last_seen, end_before, logon_type, host_id,
						account_id, auth_package_id, logon_id)
					SELECT u.boot_time, u.start_time, u.last_seen, u.end_before, 3, $1, u.account_id, 1, u.logon_id
					FROM unnest($2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::int[], $7::text[])
						AS u(boot_time, start_time, last_seen, end_before, account_id, logon_id)`,
					int32(900000000+h), boots, st, lasts, ends, accts, lid)
			}
			boots, st, oids := make([]time.Time, n), make([]time.Time, n), make([]int64, n)
			types, accts, auths, lid := make([]int64, n), make([]int32, n), make([]int32, n), make([]string, n)
			for i := range n {
				boots[i], st[i], oids[i] = boot, base.Add(time.Duration(i)*time.Second), int64(h*1000+i)
				types[i], accts[i], auths[i], lid[i] = 3, int32(1+(h*7+i)%20000), 1, fmt.Sprint(100000+i)
			}
			sids, sst, sc, su, scl, str := make([]int64, sn), make([]time.Time, sn), make([]int32, sn), make([]int32, sn), make([]int32, sn), make([]int32, sn)
			for i := range sn {
				sids[i], sst[i], sc[i], su[i], scl[i], str[i] = int64(i), base, int32(i), int32(i), 1, 2
			}
			b.Queue(`INSERT INTO floor_open VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
				ON CONFLICT (host_id) DO UPDATE SET ids = excluded.ids, boots = excluded.boots, starts = excluded.starts,
				types = excluded.types, accounts = excluded.accounts, auths = excluded.auths, logon_ids = excluded.logon_ids,
				s_ids = excluded.s_ids, s_starts = excluded.s_starts, s_computers = excluded.s_computers,
				s_users = excluded.s_users, s_clients = excluded.s_clients, s_transports = excluded.s_transports`,
				hostID, oids, boots, st, types, accts, auths, lid, sids, sst, sc, su, scl, str)
			b.Queue(`UPDATE host SET last_seen = $2, logon_seen_at = $2, server_seen_at = $2, agent_id = $3 WHERE host_id = $1`,
				hostID, base, guid)
			b.Queue(`UPDATE agent SET applied_sequence = greatest(applied_sequence, $2) WHERE agent_id = $1`, guid, int64(round+1))
			b.Queue("COMMIT")
			return c.SendBatch(ctx, b).Close()
		}
	}
	run := func(f func(h int) error) time.Duration {
		t := time.Now()
		for h := 0; h < iters; h++ {
			if err := f(h); err != nil {
				log.Fatal(err)
			}
		}
		return time.Since(t)
	}
	copyTime := run(copyCall) + run(copyCall)
	protoTime := run(protoCall(0)) + run(protoCall(1))
	fmt.Printf("### Floor of an ingest call (%d hosts x 2 calls of %d changes, one connection)\n\n", iters, n+sn)
	fmt.Printf("| path | time per call | stripped protocol's rate ÷ this |\n|---|---:|---:|\n")
	fmt.Printf("| stripped ingest protocol (lock, read open set, write, commit) | %s | |\n", (protoTime / (2 * iters)).Round(time.Microsecond))
	fmt.Printf("| raw COPY into a bare table | %s | **%.2f** |\n\n", (copyTime / (2 * iters)).Round(time.Microsecond),
		copyTime.Seconds()/protoTime.Seconds())
}
