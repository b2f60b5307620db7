// Command storebench measures the store against a PostgreSQL database and
// prints a summary: ingest rate through the store's API against a raw COPY of
// the same rows, query latencies on a year of synthetic history, and bytes
// per stored interval.
//
// Usage:
//
//	DATABASE_URL=postgres://user:pass@host/db go run ./store/cmd/storebench [flags]
//
// With -floor it only measures the least an ingest call can cost on the
// machine (floor.go); with -close N, only the calls that close N sessions
// sharing one start time (close.go).
//
// The database should be dedicated to the benchmark: storebench migrates it,
// fills it with synthetic history (unless -reuse and it is already filled) and
// adds scratch tables, dropped at the end. Results are written to standard output as Markdown.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessionaudit/sessionaudit/store"
)

var (
	hosts        = flag.Int("hosts", 10000, "hosts of synthetic history")
	perHost      = flag.Int("logon-per-host", 920, "logon session intervals per host over the year")
	serverPer    = flag.Int("server-per-host", 100, "server session intervals per host over the year")
	accounts     = flag.Int("accounts", 20000, "user accounts")
	probes       = flag.Int("probes", 2000, "query probes per query kind")
	reuse        = flag.Bool("reuse", false, "keep synthetic history already loaded")
	ingestHosts  = flag.Int("ingest-hosts", 2000, "hosts of the ingest benchmark")
	ingestLogon  = flag.Int("ingest-logon", 100, "logon sessions per full snapshot in the ingest benchmark")
	ingestServer = flag.Int("ingest-server", 20, "server sessions per full snapshot in the ingest benchmark")
	workers      = flag.Int("workers", 4, "concurrent ingest callers")
	cpuProfile   = flag.String("cpuprofile", "", "write a CPU profile of the ingest benchmark (Go side) to this file")
	showVersion  = flag.Bool("version", false, "print storebench's version and exit")
	floorOnly    = flag.Bool("floor", false, "only measure the floor of an ingest call (the stripped protocol against a COPY per call; floor.go)")
	closeOnly    = flag.Int("close", 0, "only measure opening, closing and reopening this many logon and server sessions of one host sharing one start time (close.go; the collector's limit is 20000 per report)")
)

// now is the end of the synthetic year.
var now = time.Now().UTC().Truncate(time.Hour)

// version is this build's version, set with -ldflags "-X main.version=..."
// by the Makefile; "dev" in an unstamped build.
var version = "dev"

func main() {
	flag.Parse()
	if *showVersion {
		fmt.Printf("storebench %s\n", version)
		return
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		log.Fatal("storebench: set DATABASE_URL to a PostgreSQL database dedicated to the benchmark")
	}
	ctx := context.Background()
	if err := store.Migrate(ctx, url); err != nil {
		log.Fatal(err)
	}
	s, err := store.Open(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.EnsurePartitionsBetween(ctx, now.AddDate(-1, -1, 0), now.AddDate(0, store.PartitionsAhead+1, 0)); err != nil {
		log.Fatal(err)
	}
	var serverVersion, machine string
	if err := s.Pool().QueryRow(ctx, "SELECT version()").Scan(&serverVersion); err != nil {
		log.Fatal(err)
	}
	machine = fmt.Sprintf("%s/%s, %d CPUs (GOMAXPROCS %d)", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Printf("## storebench %s (build %s)\n\n- machine: %s\n- server: %s\n\n", now.Format("2006-01-02"), version, machine, serverVersion)

	if *floorOnly {
		floor(ctx, url)
		return
	}
	if *closeOnly > 0 {
		closeSameStart(ctx, s, *closeOnly)
		return
	}
	if !*reuse || !loaded(ctx, s) {
		start := time.Now()
		if err := generate(ctx, s); err != nil {
			log.Fatal(err)
		}
		log.Printf("storebench: synthetic history loaded in %s", time.Since(start).Round(time.Second))
	}
	storage(ctx, s)
	queries(ctx, s)
	ingest(ctx, s)
}

func loaded(ctx context.Context, s *store.Store) bool {
	var n int64
	_ = s.Pool().QueryRow(ctx, "SELECT count(*) FROM host WHERE machine_guid LIKE 'bench-%'").Scan(&n)
	return n >= int64(*hosts)
}

// generate writes a year of synthetic history with set-based SQL: it is the
// data an analyst queries, not a measure of the ingest path.
func generate(ctx context.Context, s *store.Store) error {
	steps := []string{
		`SET work_mem = '512MB'`,
		`SET maintenance_work_mem = '1GB'`,
		`TRUNCATE logon_session, server_session, ingest_note, agent, host, account, label RESTART IDENTITY`,
		`INSERT INTO host (machine_guid, hostname, domain, os_caption, os_version, os_build, agent_version, agent_id,
			boot_time, first_received, last_received, last_seen, logon_seen_at, server_seen_at)
		 SELECT 'bench-' || lpad(g::text, 6, '0'), 'ws' || lpad(g::text, 5, '0'), 'contoso.local',
			'Microsoft Windows 11 Enterprise', '10.0.22631', '22631', '1.0.0', 'agent-' || g,
			$1::timestamptz - interval '3 days', $1::timestamptz - interval '1 year', $1, $1, $1, $1
		 FROM generate_series(1, $2::int) g`,
		`INSERT INTO account (domain, name, sid) SELECT 'CONTOSO', 'user' || g, 'S-1-5-21-1-2-3-' || (1000 + g)
		 FROM generate_series(1, $3::int) g`,
		`INSERT INTO account (domain, name, sid) VALUES ('NT AUTHORITY', 'SYSTEM', 'S-1-5-18'),
			('NT AUTHORITY', 'LOCAL SERVICE', 'S-1-5-19'), ('NT AUTHORITY', 'NETWORK SERVICE', 'S-1-5-20')`,
		`INSERT INTO label (value) VALUES ('Kerberos'), ('NTLM'), ('Negotiate'), ('Windows 10'), ('\Device\NetbtSmb_{6C0DB8A2-4B43-4E7C-8A5B-16FAD8A6C8D5}')`,
		`INSERT INTO label (value) SELECT 'PC' || lpad(g::text, 5, '0') FROM generate_series(1, 5000) g`,
		`INSERT INTO label (value) SELECT 'user' || g FROM generate_series(1, $3::int) g`,
		// Logon sessions: each host has ~5 regular users; 10% are service
		// logons of the NT AUTHORITY accounts. Durations from 1 minute to
		// ~4 days, skewed short. Rows are inserted in end order, as the
		// ingest appends them.
		`INSERT INTO logon_session (boot_time, start_time, last_seen, end_before, logon_type, host_id, account_id,
			auth_package_id, logon_id)
		 SELECT boot, st, CASE WHEN en > $1 THEN NULL ELSE en - interval '60 seconds' END,
			CASE WHEN en > $1 THEN 'infinity' ELSE en END, lt, h, acct, auth, lid::text
		 FROM (
			SELECT h, date_trunc('week', st) AS boot, st, st + make_interval(secs => 60 + 345600 * power(random(), 4)) AS en,
				CASE WHEN r < 0.1 THEN 5 WHEN r < 0.6 THEN 3 ELSE 2 END AS lt,
				CASE WHEN r < 0.1 THEN $3 + 1 + (i % 3) ELSE 1 + ((h * 7 + (i % 5) * 13) % $3) END AS acct,
				1 + (i % 3) AS auth, 100000 + i AS lid
			FROM (SELECT h, i, random() AS r, $1::timestamptz - interval '1 year' + random() * interval '1 year' AS st
			      FROM generate_series(1, $2::int) h, generate_series(1, $4::int) i) x
		 ) y ORDER BY en`,
		`INSERT INTO server_session (start_time, last_seen, end_before, session_type, host_id, computer_label,
			user_label, client_type_label, transport_label)
		 SELECT st, CASE WHEN en > $1 THEN NULL ELSE en - interval '60 seconds' END,
			CASE WHEN en > $1 THEN 'infinity' ELSE en END, 1, h, 6 + ((h * 3 + i) % 5000), 5006 + ((h * 11 + i) % $3), 4, 5
		 FROM (SELECT h, i, st, st + make_interval(secs => 60 + 86400 * power(random(), 4)) AS en
		       FROM (SELECT h, i, $1::timestamptz - interval '1 year' + random() * interval '1 year' AS st
		             FROM generate_series(1, $2::int) h, generate_series(1, $5::int) i) x) y
		 ORDER BY en`,
		`ANALYZE`,
	}
	conn, err := s.Pool().Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	for _, q := range steps {
		t := time.Now()
		q = strings.NewReplacer("$1", "'"+now.Format(time.RFC3339)+"'", "$2", fmt.Sprint(*hosts), "$3", fmt.Sprint(*accounts),
			"$4", fmt.Sprint(*perHost), "$5", fmt.Sprint(*serverPer)).Replace(q)
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("generate: %.60s: %w", q, err)
		}
		log.Printf("storebench: %.70s... %s", q, time.Since(t).Round(time.Millisecond))
	}
	return nil
}

func storage(ctx context.Context, s *store.Store) {
	fmt.Printf("### Storage\n\n| table | intervals | bytes incl. indexes | bytes/interval |\n|---|---:|---:|---:|\n")
	var totalRows, totalBytes int64
	for _, table := range []string{"logon_session", "server_session"} {
		var rows, bytes int64
		if err := s.Pool().QueryRow(ctx, `SELECT (SELECT count(*) FROM `+table+`),
			(SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = $1::regclass)`, table).Scan(&rows, &bytes); err != nil {
			log.Fatal(err)
		}
		totalRows += rows
		totalBytes += bytes
		fmt.Printf("| %s | %d | %d | %.0f |\n", table, rows, bytes, float64(bytes)/float64(rows))
	}
	fmt.Printf("| **both** | %d | %d | **%.0f** |\n\n", totalRows, totalBytes, float64(totalBytes)/float64(totalRows))
}

func percentile(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[int(float64(len(d)-1)*p)]
}

func queries(ctx context.Context, s *store.Store) {
	rng := rand.New(rand.NewPCG(1, 2))
	probe := func(name string, f func() (int, error)) {
		for i := 0; i < *probes/10; i++ { // warm-up
			if _, err := f(); err != nil {
				log.Fatal(err)
			}
		}
		lat := make([]time.Duration, *probes)
		rows := 0
		for i := range lat {
			t := time.Now()
			n, err := f()
			if err != nil {
				log.Fatal(err)
			}
			lat[i] = time.Since(t)
			rows += n
		}
		fmt.Printf("| %s | %d | %.1f | %s | %s | %s |\n", name, *probes, float64(rows)/float64(*probes),
			percentile(lat, 0.5).Round(10*time.Microsecond), percentile(lat, 0.95).Round(10*time.Microsecond),
			percentile(lat, 0.99).Round(10*time.Microsecond))
	}
	fmt.Printf("### Queries (through the Go API, one connection at a time)\n\n| query | probes | rows/probe | p50 | p95 | p99 |\n|---|---:|---:|---:|---:|---:|\n")
	year := now.AddDate(-1, 0, 0)
	probe("who was on host X at T (by machine GUID)", func() (int, error) {
		at := year.Add(time.Duration(rng.Int64N(int64(365 * 24 * time.Hour))))
		p, err := s.WhoWasOn(ctx, store.WhoWasOnQuery{Host: fmt.Sprintf("bench-%06d", 1+rng.IntN(*hosts)), At: at})
		return len(p.Logon) + len(p.Server), err
	})
	probe("who was on host X at T (by host name)", func() (int, error) {
		at := year.Add(time.Duration(rng.Int64N(int64(365 * 24 * time.Hour))))
		p, err := s.WhoWasOn(ctx, store.WhoWasOnQuery{Host: fmt.Sprintf("WS%05d", 1+rng.IntN(*hosts)), At: at})
		return len(p.Logon) + len(p.Server), err
	})
	probe("timeline of account U over 30 days (first page, 100)", func() (int, error) {
		from := year.Add(time.Duration(rng.Int64N(int64(335 * 24 * time.Hour))))
		p, err := s.AccountTimeline(ctx, store.TimelineQuery{Account: fmt.Sprintf(`contoso\USER%d`, 1+rng.IntN(*accounts)),
			StartTime: from, EndTime: from.Add(30 * 24 * time.Hour)})
		return len(p.Items), err
	})
	probe("server sessions from computer Z over 30 days", func() (int, error) {
		from := year.Add(time.Duration(rng.Int64N(int64(335 * 24 * time.Hour))))
		p, err := s.ServerSessions(ctx, store.ServerSessionQuery{FromComputer: fmt.Sprintf("pc%05d", 1+rng.IntN(5000)),
			StartTime: from, EndTime: from.Add(30 * 24 * time.Hour)})
		return len(p.Items), err
	})
	probe("open sessions of host X", func() (int, error) {
		p, err := s.OpenSessions(ctx, store.OpenSessionsQuery{Host: fmt.Sprintf("bench-%06d", 1+rng.IntN(*hosts))})
		return len(p.Items), err
	})
	fmt.Println()
}

// ingest measures session changes stored per second through Store.Ingest and
// a raw COPY of the same rows into a bare table, in the same database.
func ingest(ctx context.Context, s *store.Store) {
	type job struct {
		host        int
		agent, guid string
		reports     []store.Report
		changes     int
	}
	base := now.Add(-time.Hour)
	boot := base.Add(-48 * time.Hour)
	snapshot := func(h, round int) ([]store.LogonSession, []store.ServerSession) {
		var ls []store.LogonSession
		// Round 0 has sessions 0..n-1; round 1 keeps the second half and adds
		// n/2 new ones: n/2 ends and n/2 starts.
		from := round * *ingestLogon / 2
		for i := from; i < from+*ingestLogon; i++ {
			lt := uint32(3)
			ls = append(ls, store.LogonSession{LogonID: fmt.Sprint(100000 + i), LogonType: &lt, AuthenticationPackage: "Kerberos",
				StartTime: ingestStart(base, i),
				Account:   &store.Account{Domain: "CONTOSO", Name: fmt.Sprintf("user%d", 1+(h*7+i)%*accounts)}})
		}
		var ss []store.ServerSession
		fromS := round * *ingestServer / 2
		for i := fromS; i < fromS+*ingestServer; i++ {
			at := uint32(3600 - i*10 + round*60)
			ss = append(ss, store.ServerSession{ComputerName: fmt.Sprintf("PC%05d", 1+(h+i)%5000), UserName: fmt.Sprintf("user%d", 1+(h+i)%*accounts),
				ActiveTime: &at, ClientType: "Windows 10", TransportName: `\Device\NetbtSmb_{6C0DB8A2-4B43-4E7C-8A5B-16FAD8A6C8D5}`})
		}
		return ls, ss
	}
	run := time.Now().UnixNano()
	var jobs [2][]job
	for round := 0; round < 2; round++ {
		for h := 0; h < *ingestHosts; h++ {
			ls, ss := snapshot(h, round)
			r := store.Report{Sequence: uint64(round + 1), Kind: store.KindSnapshot, TakenAt: base.Add(time.Duration(round) * time.Minute),
				Host:          &store.Host{Hostname: fmt.Sprintf("ing%05d", h), Domain: "contoso.local", LastBootTime: boot},
				LogonSessions: ls, ServerSessions: ss}
			changes := *ingestLogon + *ingestServer // round 0: all new
			if round == 1 {
				changes = 2 * (*ingestLogon/2 + *ingestServer/2) // half end, half start
			}
			jobs[round] = append(jobs[round], job{host: h, agent: fmt.Sprintf("ing-%d-%d", run, h), guid: ingestGUID(run, h),
				reports: []store.Report{r}, changes: changes})
		}
	}
	parallel := func(n int, f func(i int) error) time.Duration {
		t := time.Now()
		var wg sync.WaitGroup
		var mu sync.Mutex
		next := 0
		for w := 0; w < *workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					i := next
					next++
					mu.Unlock()
					if i >= n {
						return
					}
					if err := f(i); err != nil {
						log.Fatal(err)
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(t)
	}
	var apiChanges int
	var apiTime time.Duration
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer f.Close()
	}
	for round := 0; round < 2; round++ {
		js := jobs[round]
		d := parallel(len(js), func(i int) error {
			res, err := s.Ingest(ctx, js[i].agent, js[i].guid, js[i].reports)
			if err == nil && len(res.Applied) != 1 {
				err = fmt.Errorf("report not applied: %+v", res)
			}
			return err
		})
		apiTime += d
		n := 0
		for _, j := range js {
			n += j.changes
		}
		apiChanges += n
		log.Printf("storebench: ingest round %d: %d changes in %s", round, n, d.Round(time.Millisecond))
	}
	pprof.StopCPUProfile()
	// The same number of rows, with the same columns, COPYed per call into a
	// bare table (no index, no partitioning), then into a table with the
	// session table's indexes (what any store that keeps one row per change
	// and answers the queries pays), then in one single COPY.
	if _, err := s.Pool().Exec(ctx, `DROP TABLE IF EXISTS bench_raw, bench_idx; CREATE TABLE bench_raw (LIKE logon_session);
		CREATE TABLE bench_idx (LIKE logon_session INCLUDING INDEXES)`); err != nil {
		log.Fatal(err)
	}
	cols := []string{"id", "boot_time", "start_time", "last_seen", "end_before", "install_date", "logon_type",
		"host_id", "account_id", "auth_package_id", "logon_id", "caption", "description", "name", "status"}
	rowsFor := func(j job, round int) [][]any {
		rows := make([][]any, 0, j.changes)
		for i := 0; i < j.changes; i++ {
			end := pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
			rows = append(rows, []any{int64(i), boot, base.Add(time.Duration(i) * time.Second), nil, end, nil, int64(3),
				int32(1_000_000 + round*(*ingestHosts) + j.host), int32(1 + (j.host*7+i)%*accounts), int32(1), fmt.Sprint(100000 + i), nil, nil, nil, nil})
		}
		return rows
	}
	perCall := func(table string) (time.Duration, int) {
		var total time.Duration
		var n int
		for round := 0; round < 2; round++ {
			js := jobs[round]
			all := make([][][]any, len(js))
			for i, j := range js {
				all[i] = rowsFor(j, round)
				n += len(all[i])
			}
			d := parallel(len(js), func(i int) error {
				_, err := s.Pool().CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(all[i]))
				return err
			})
			total += d
			log.Printf("storebench: COPY into %s round %d: %s", table, round, d.Round(time.Millisecond))
		}
		return total, n
	}
	copyTime, copyRows := perCall("bench_raw")
	idxTime, idxRows := perCall("bench_idx")
	var big [][]any
	for round := 0; round < 2; round++ {
		for _, j := range jobs[round] {
			big = append(big, rowsFor(j, round)...)
		}
	}
	if _, err := s.Pool().Exec(ctx, `TRUNCATE bench_raw`); err != nil {
		log.Fatal(err)
	}
	t := time.Now()
	if _, err := s.Pool().CopyFrom(ctx, pgx.Identifier{"bench_raw"}, cols, pgx.CopyFromRows(big)); err != nil {
		log.Fatal(err)
	}
	bigTime := time.Since(t)
	if _, err := s.Pool().Exec(ctx, `DROP TABLE bench_raw, bench_idx`); err != nil {
		log.Fatal(err)
	}
	apiRate := float64(apiChanges) / apiTime.Seconds()
	copyRate := float64(copyRows) / copyTime.Seconds()
	bigRate := float64(len(big)) / bigTime.Seconds()
	fmt.Printf("### Ingest (%d hosts x 2 full snapshots of %d logon + %d server sessions, %d workers)\n\n",
		*ingestHosts, *ingestLogon, *ingestServer, *workers)
	fmt.Printf("| path | rows | time | rows/s | store API ÷ this |\n|---|---:|---:|---:|---:|\n")
	fmt.Printf("| Store.Ingest (session changes: starts + ends) | %d | %s | %.0f | |\n", apiChanges, apiTime.Round(time.Millisecond), apiRate)
	fmt.Printf("| raw COPY into a bare table, one COPY per call | %d | %s | %.0f | **%.2f** |\n", copyRows, copyTime.Round(time.Millisecond), copyRate, apiRate/copyRate)
	idxRate := float64(idxRows) / idxTime.Seconds()
	fmt.Printf("| raw COPY into a table with logon_session's indexes, one COPY per call | %d | %s | %.0f | %.2f |\n", idxRows, idxTime.Round(time.Millisecond), idxRate, apiRate/idxRate)
	fmt.Printf("| raw COPY into a bare table, one single COPY | %d | %s | %.0f | %.2f |\n\n", len(big), bigTime.Round(time.Millisecond), bigRate, apiRate/bigRate)
}

// ingestGUID is the machine GUID of host h of the ingest benchmark's run:
// a lower-case UUID, as the store requires.
func ingestGUID(run int64, h int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", h, uint64(run)&0xffffffffffff)
}

// ingestStart is when synthetic session i of the ingest benchmark started:
// the first snapshot's sessions before it was taken, the ones the second
// snapshot adds between the two snapshots.
func ingestStart(base time.Time, i int) time.Time {
	if i < *ingestLogon {
		return base.Add(-time.Duration(*ingestLogon-i) * 6 * time.Second)
	}
	return base.Add(time.Duration(i-*ingestLogon) * time.Second % time.Minute)
}
