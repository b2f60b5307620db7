package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/migrations"
	"github.com/sessionaudit/sessionaudit/proto/limits"

	"github.com/jackc/pgx/v5"
)

const guid2 = "11111111-2222-3333-4444-555555555555"

// seedFleet stores two hosts: ws01 (guid) and srv02 (guid2).
func seedFleet(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	alice := func(id string, start time.Time) LogonSession { return logon(id, start, "CONTOSO", "alice") }
	mustIngest(t, s, "agent-1",
		full(1, at(0), boot1, []LogonSession{alice("1001", at(-time.Hour)), logon("1002", at(-time.Hour), "CONTOSO", "bob")},
			[]ServerSession{server("PC7", "alice", 600)}),
		full(2, at(time.Hour), boot1, []LogonSession{alice("1001", at(-time.Hour))}, nil))
	srv := Host{MachineGUID: guid2, Hostname: "SRV02", Domain: "contoso.local", LastBootTime: boot1}
	ntlm := alice("7", at(10*time.Minute))
	ntlm.AuthenticationPackage = "NTLM"
	ntlm.LogonType = u32(3)
	if _, err := s.Ingest(ctx, "agent-2", guid2, []Report{
		{Sequence: 1, Kind: KindSnapshot, TakenAt: at(30 * time.Minute), Host: &srv,
			LogonSessions: []LogonSession{ntlm}, ServerSessions: []ServerSession{server("pc7", "ALICE", 60), server("PC9", "bob", 60)}},
	}); err != nil {
		t.Fatal(err)
	}
}

func TestWhoWasOn(t *testing.T) {
	s, _ := newTestStore(t)
	seedFleet(t, s)
	ctx := context.Background()
	for _, tc := range []struct {
		host   string
		at     time.Time
		logon  string
		server string
	}{
		{guid, at(0), "1001,1002", "PC7"},
		{"WS01", at(30 * time.Minute), "1001,1002", "PC7"}, // bob's and PC7's end is uncertain at +30m: included
		{"ws01.contoso.local", at(2 * time.Hour), "1001", ""},
		{"{" + strings.ToUpper(guid) + "}", at(-2 * time.Hour), "", ""},
		{"srv02", at(31 * time.Minute), "7", "PC9,pc7"}, // same start: by id
		{"nosuchhost", at(0), "", ""},
	} {
		p, err := s.WhoWasOn(ctx, WhoWasOnQuery{Host: tc.host, At: tc.at})
		if err != nil {
			t.Fatal(err)
		}
		var l, sv []string
		for _, x := range p.Logon {
			l = append(l, x.Session.LogonID)
		}
		for _, x := range p.Server {
			sv = append(sv, x.Session.ComputerName)
		}
		if strings.Join(l, ",") != tc.logon || strings.Join(sv, ",") != tc.server {
			t.Errorf("WhoWasOn(%s, %v) = logon %v server %v; want %s / %s", tc.host, tc.at.Sub(t0), l, sv, tc.logon, tc.server)
		}
	}
	// Pagination with one item per page walks the merged order.
	var seen []string
	cur := ""
	for i := 0; i < 10; i++ {
		p, err := s.WhoWasOn(ctx, WhoWasOnQuery{Host: guid, At: at(0), PageSize: 1, Cursor: cur})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range p.Logon {
			seen = append(seen, "L"+x.Session.LogonID)
		}
		for _, x := range p.Server {
			seen = append(seen, "S"+x.Session.ComputerName)
		}
		if cur = p.NextCursor; cur == "" {
			break
		}
	}
	if got := strings.Join(seen, ","); got != "L1001,L1002,SPC7" {
		t.Errorf("paged WhoWasOn = %s, want L1001,L1002,SPC7", got)
	}
}

func TestAccountTimelineAndOpenSessions(t *testing.T) {
	s, _ := newTestStore(t)
	seedFleet(t, s)
	ctx := context.Background()
	p, err := s.AccountTimeline(ctx, TimelineQuery{Account: `contoso\ALICE`, StartTime: at(-24 * time.Hour), EndTime: at(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range p.Items {
		got = append(got, x.Host.Hostname+"/"+x.Session.LogonID)
	}
	if strings.Join(got, ",") != "ws01/1001,SRV02/7" {
		t.Errorf("timeline = %v", got)
	}
	// Paging.
	p1, err := s.AccountTimeline(ctx, TimelineQuery{Account: `CONTOSO\alice`, StartTime: at(-24 * time.Hour), EndTime: at(24 * time.Hour), PageSize: 1})
	if err != nil || len(p1.Items) != 1 || p1.NextCursor == "" {
		t.Fatalf("page 1 = %+v, %v", p1, err)
	}
	p2, err := s.AccountTimeline(ctx, TimelineQuery{Account: `CONTOSO\alice`, StartTime: at(-24 * time.Hour), EndTime: at(24 * time.Hour), PageSize: 1, Cursor: p1.NextCursor})
	if err != nil || len(p2.Items) != 1 || p2.Items[0].Session.LogonID != "7" || p2.NextCursor != "" {
		t.Fatalf("page 2 = %+v, %v", p2, err)
	}
	// A range before everything is empty.
	p, err = s.AccountTimeline(ctx, TimelineQuery{Account: `CONTOSO\bob`, StartTime: at(2 * time.Hour), EndTime: at(3 * time.Hour)})
	if err != nil || len(p.Items) != 0 {
		t.Errorf("bob after his end: %+v, %v", p.Items, err)
	}

	day := func(q LogonSessionsQuery) LogonSessionsQuery {
		q.StartTime, q.EndTime = at(-24*time.Hour), at(24*time.Hour)
		return q
	}
	for _, tc := range []struct {
		q    LogonSessionsQuery
		want string
	}{
		{day(LogonSessionsQuery{}), "ws01/1001,ws01/1002,SRV02/7"},
		{day(LogonSessionsQuery{Host: "WS01"}), "ws01/1001,ws01/1002"},
		{day(LogonSessionsQuery{Host: "ws01", Account: `contoso\bob`}), "ws01/1002"},
		{day(LogonSessionsQuery{LogonTypes: []uint32{3}}), "SRV02/7"},
		{day(LogonSessionsQuery{AuthenticationPackage: "nosuch"}), ""},
		{LogonSessionsQuery{StartTime: at(2 * time.Hour), EndTime: at(3 * time.Hour)}, "ws01/1001,SRV02/7"}, // bob had ended
	} {
		p, err := s.LogonSessions(ctx, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, x := range p.Items {
			got = append(got, x.Host.Hostname+"/"+x.Session.LogonID)
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("LogonSessions(%+v) = %v, want %s", tc.q, got, tc.want)
		}
	}

	for _, tc := range []struct {
		q    OpenSessionsQuery
		want string
	}{
		{OpenSessionsQuery{}, "1001,7"},
		{OpenSessionsQuery{LogonTypes: []uint32{3}}, "7"},
		{OpenSessionsQuery{AuthenticationPackage: "ntlm"}, "7"},
		{OpenSessionsQuery{Host: "ws01"}, "1001"},
		{OpenSessionsQuery{Account: `CONTOSO\bob`}, ""},
		{OpenSessionsQuery{Account: `CONTOSO\alice`, Host: guid2}, "7"},
	} {
		p, err := s.OpenSessions(ctx, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, x := range p.Items {
			ids = append(ids, x.Session.LogonID)
			if !x.End.Open {
				t.Errorf("OpenSessions returned a closed session %+v", x)
			}
		}
		if strings.Join(ids, ",") != tc.want {
			t.Errorf("OpenSessions(%+v) = %v, want %s", tc.q, ids, tc.want)
		}
	}
}

func TestServerSessionsAndHosts(t *testing.T) {
	s, _ := newTestStore(t)
	seedFleet(t, s)
	ctx := context.Background()
	r := func(q ServerSessionQuery) string {
		t.Helper()
		q.StartTime, q.EndTime = at(-24*time.Hour), at(24*time.Hour)
		p, err := s.ServerSessions(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, x := range p.Items {
			out = append(out, x.Host.Hostname+"<"+x.Session.ComputerName+"/"+x.Session.UserName)
		}
		return strings.Join(out, ",")
	}
	eq(t, r(ServerSessionQuery{FromComputer: "pc7"}), "ws01<PC7/alice,SRV02<pc7/ALICE")
	eq(t, r(ServerSessionQuery{UserName: "bob"}), "SRV02<PC9/bob")
	eq(t, r(ServerSessionQuery{FromComputer: "PC7", ToHost: "srv02"}), "SRV02<pc7/ALICE")
	eq(t, r(ServerSessionQuery{FromComputer: "nobody"}), "")
	eq(t, r(ServerSessionQuery{}), "ws01<PC7/alice,SRV02<PC9/bob,SRV02<pc7/ALICE") // everything: an export

	p, err := s.Hosts(ctx, HostsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 2 {
		t.Fatalf("Hosts = %+v", p.Items)
	}
	ws := p.Items[1] // ordered by machine GUID: 1111... then 4c4c...
	if ws.Host.Hostname != "ws01" || ws.OpenLogonSessions != 1 || ws.OpenServerSessions != 0 || !ws.LastSeen.Equal(at(time.Hour)) || ws.AgentID != "agent-1" || !ws.Host.LastBootTime.Equal(boot1) {
		t.Errorf("ws01 status = %+v", ws)
	}
	if p.Items[0].OpenServerSessions != 2 {
		t.Errorf("srv02 status = %+v", p.Items[0])
	}
	p, err = s.Hosts(ctx, HostsQuery{PageSize: 1})
	if err != nil || p.NextCursor == "" {
		t.Fatal(p, err)
	}
	p, err = s.Hosts(ctx, HostsQuery{PageSize: 1, Cursor: p.NextCursor})
	if err != nil || len(p.Items) != 1 || p.Items[0].Host.MachineGUID != guid {
		t.Fatal(p, err)
	}
	// Stale: freshness is how far the stored history reaches (the newest
	// report's taken_at: srv02 +30m, ws01 +1h), by the store's clock, 30
	// days after t0; not when the reports were received (now).
	all, err := s.Hosts(ctx, HostsQuery{})
	if err != nil || len(all.Items) != 2 {
		t.Fatal(all, err)
	}
	if srv, ws := all.Items[0], all.Items[1]; !srv.StoredUpTo.Equal(at(30*time.Minute)) || !ws.StoredUpTo.Equal(at(time.Hour)) {
		t.Errorf("stored up to: srv02 %v, ws01 %v; want +30m, +1h", srv.StoredUpTo, ws.StoredUpTo)
	}
	p, err = s.Hosts(ctx, HostsQuery{StaleAfter: 30*24*time.Hour - 45*time.Minute})
	if err != nil || len(p.Items) != 1 || p.Items[0].Host.MachineGUID != guid2 {
		t.Errorf("stale hosts = %+v, %v; want srv02 alone", p.Items, err)
	}
	p, err = s.Hosts(ctx, HostsQuery{StaleAfter: 31 * 24 * time.Hour})
	if err != nil || len(p.Items) != 0 {
		t.Errorf("stale hosts = %+v, %v; want none", p.Items, err)
	}
}

// Unbounded, inverted or oversized requests are refused naming the parameter.
func TestQueryParameterErrors(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"timeline without From (from the zero time, year 1: too long)", func() error {
			_, err := s.AccountTimeline(ctx, TimelineQuery{Account: `A\b`, EndTime: at(0)})
			return err
		}, "EndTime"},
		{"timeline without To", func() error {
			_, err := s.AccountTimeline(ctx, TimelineQuery{Account: `A\b`, StartTime: at(0)})
			return err
		}, "EndTime"},
		{"inverted range", func() error {
			_, err := s.AccountTimeline(ctx, TimelineQuery{Account: `A\b`, StartTime: at(time.Hour), EndTime: at(0)})
			return err
		}, "EndTime"},
		{"range too long", func() error {
			_, err := s.ServerSessions(ctx, ServerSessionQuery{UserName: "u", StartTime: at(0), EndTime: at(limits.MaxQuerySpan + time.Hour)})
			return err
		}, "EndTime"},
		{"account without domain", func() error {
			_, err := s.AccountTimeline(ctx, TimelineQuery{Account: "alice", StartTime: at(0), EndTime: at(time.Hour)})
			return err
		}, "Account"},
		{"page too large", func() error {
			_, err := s.OpenSessions(ctx, OpenSessionsQuery{PageSize: limits.MaxPageSize + 1})
			return err
		}, "PageSize"},
		{"bad cursor", func() error {
			_, err := s.WhoWasOn(ctx, WhoWasOnQuery{Host: "x", At: at(0), Cursor: "garbage!"})
			return err
		}, "Cursor"},
		{"logon sessions without a range (from and to the zero time)", func() error {
			_, err := s.LogonSessions(ctx, LogonSessionsQuery{Host: "ws01"})
			return err
		}, "EndTime"},
		{"timeline without an account", func() error {
			_, err := s.AccountTimeline(ctx, TimelineQuery{StartTime: at(0), EndTime: at(time.Hour)})
			return err
		}, "Account"},
	} {
		err := tc.call()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: err = %v, want a FieldError naming %s", tc.name, err, tc.field)
		}
	}
	// The zero time is 0001-01-01T00:00:00Z, a time a query may name (a
	// protobuf Timestamp or RFC 3339 can), not "absent".
	year1 := time.Time{}
	if p, err := s.WhoWasOn(ctx, WhoWasOnQuery{Host: "x", At: year1}); err != nil || len(p.Logon) != 0 {
		t.Errorf("who at year 1: %+v, %v; want nothing, no error", p, err)
	}
	if p, err := s.LogonSessions(ctx, LogonSessionsQuery{StartTime: year1, EndTime: year1.Add(24 * time.Hour)}); err != nil || len(p.Items) != 0 {
		t.Errorf("logon sessions on the first day of year 1: %+v, %v; want nothing, no error", p, err)
	}
}

// Retention drops whole partitions of sessions that ended before the
// cutoff, and never an open session, however old its start.
func TestPartitionsAndRetention(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	old := time.Date(2025, 2, 10, 0, 0, 0, 0, time.UTC)
	mustIngest(t, s, "agent-1",
		full(1, old, old.Add(-time.Hour), []LogonSession{logon("1", old.Add(-time.Minute), "C", "a"), logon("2", old.Add(-time.Minute), "C", "b")}, nil),
		full(2, old.Add(time.Minute), old.Add(-time.Hour), []LogonSession{logon("1", old.Add(-time.Minute), "C", "a")}, nil))
	where := func(id string) string {
		var part string
		if err := s.pool.QueryRow(ctx, `SELECT tableoid::regclass::text FROM logon_session WHERE logon_id = $1`, id).Scan(&part); err != nil {
			t.Fatal(err)
		}
		return part
	}
	eq(t, where("1"), "logon_session_open")
	eq(t, where("2"), "logon_session_p202502")
	dropped, err := s.DropPartitionsBefore(ctx, time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(len(dropped)) != "4" { // logon and server, January and February 2025
		t.Errorf("dropped %v", dropped)
	}
	eq(t, where("1"), "logon_session_open")
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM logon_session WHERE logon_id = '2'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("ended session survived retention: %d, %v", n, err)
	}
	// EnsurePartitions prepares the months ahead and is idempotent and safe
	// to run concurrently.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.EnsurePartitions(ctx, time.Date(2026, 12, 15, 0, 0, 0, 0, time.UTC))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('server_session_p202703') IS NOT NULL`).Scan(&exists); err != nil || !exists {
		t.Errorf("partition for 2027-03 not created: %v", err)
	}
}

// Migrate is safe when several processes start together, records the
// version, and refuses a database newer than the binary.
func TestMigrate(t *testing.T) {
	s, url := newTestStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = Migrate(ctx, url) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	// One version per migration file: the files are numbered from 1 without
	// gaps.
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v, %v", files, err)
	}
	v, err := s.SchemaVersion(ctx)
	if err != nil || int(v) != len(files) {
		t.Fatalf("version = %d, %v; want %d, the number of migrations", v, err, len(files))
	}
	if _, err := s.pool.Exec(ctx, `UPDATE `+VersionTable+` SET version = 99`); err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, url); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("Migrate on a newer database: %v", err)
	}
	// A fresh database: Migrate creates everything from nothing.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP SCHEMA public CASCADE; CREATE SCHEMA public`); err != nil {
		t.Fatal(err)
	}
	if err := MigrateConn(ctx, conn); err != nil {
		t.Fatal(err)
	}
}

// TestPoolSettingsInURL: a URL with the pool's settings works for Migrate
// (PostgreSQL would refuse them as connection parameters) and sizes the
// pool; without them the pool holds DefaultMaxConns.
func TestPoolSettingsInURL(t *testing.T) {
	_, url := newTestStore(t)
	ctx := context.Background()
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	withPool := url + sep + "pool_max_conns=7"
	if err := Migrate(ctx, withPool); err != nil {
		t.Fatalf("Migrate with pool_max_conns in the URL: %v", err)
	}
	s, err := Open(ctx, withPool)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Pool().Config().MaxConns; got != 7 {
		t.Errorf("pool_max_conns=7: MaxConns = %d", got)
	}
	d, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.Pool().Config().MaxConns; got != DefaultMaxConns {
		t.Errorf("no pool_max_conns: MaxConns = %d, want %d", got, DefaultMaxConns)
	}
}
