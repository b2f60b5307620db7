package store

import (
	"context"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/sessionaudit/sessionaudit/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// t0 is the base time of the scenarios; the collector's clock reads t0+30d.
var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

const guid = "4c4c4544-0042-3510-8052-b4c04f4d4e31"

func at(d time.Duration) time.Time { return t0.Add(d) }

func u32(v uint32) *uint32 { return &v }

// newTestStore returns a Store on a fresh migrated database with partitions
// for 2025 to 2027.
func newTestStore(t *testing.T) (*Store, string) {
	t.Helper()
	url := storetest.NewDatabase(t, Migrate)
	ctx := context.Background()
	s, err := Open(ctx, url, WithClock(func() time.Time { return t0.Add(30 * 24 * time.Hour) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.EnsurePartitionsBetween(ctx, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	return s, url
}

func logon(id string, start time.Time, domain, name string) LogonSession {
	ls := LogonSession{LogonID: id, LogonType: u32(2), AuthenticationPackage: "Kerberos", StartTime: start}
	if name != "" {
		ls.Account = &Account{Domain: domain, Name: name}
	}
	return ls
}

func server(computer, user string, active uint32) ServerSession {
	return ServerSession{ComputerName: computer, UserName: user, ActiveTime: u32(active), ClientType: "Windows 10", TransportName: `\Device\NetbtSmb`}
}

func full(seq uint64, obs, boot time.Time, ls []LogonSession, ss []ServerSession) Report {
	return Report{Sequence: seq, Kind: KindSnapshot, TakenAt: obs,
		Host:          &Host{MachineGUID: guid, Hostname: "ws01", Domain: "contoso.local", LastBootTime: boot},
		LogonSessions: ls, ServerSessions: ss}
}

func mustIngest(t *testing.T, s *Store, agent string, reports ...Report) IngestResult {
	t.Helper()
	res, err := s.Ingest(context.Background(), agent, guid, reports)
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	if len(res.Rejected) > 0 {
		t.Fatalf("Ingest rejected %v", res.Rejected)
	}
	return res
}

// row is a stored interval, for comparisons.
type row struct {
	Key       string // logon: "boot/logonID"; server: "computer/user"
	Start     time.Time
	LastSeen  time.Time // zero while open
	EndBefore time.Time // zero while open
	Account   string
}

func (r row) String() string {
	f := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Sub(t0).String()
	}
	return r.Key + " start=" + f(r.Start) + " last=" + f(r.LastSeen) + " end<" + f(r.EndBefore) + " acct=" + r.Account
}

func rowsOf(t *testing.T, s *Store, query string) []row {
	t.Helper()
	rs, err := s.pool.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rs, func(r pgx.CollectableRow) (row, error) {
		var x row
		var last, end pgtype.Timestamptz
		err := r.Scan(&x.Key, &x.Start, &last, &end, &x.Account)
		x.Start, x.LastSeen, x.EndBefore = x.Start.UTC(), nullTime(last), nullTime(end)
		return x, err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func logonRows(t *testing.T, s *Store) []row {
	return rowsOf(t, s, `SELECT to_char(boot_time AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISS') || '/' || logon_id,
		start_time, last_seen, end_before, coalesce(a.domain || '\' || a.name, '')
		FROM logon_session s LEFT JOIN account a USING (account_id)`)
}

func serverRows(t *testing.T, s *Store) []row {
	return rowsOf(t, s, `SELECT c.value || '/' || u.value, start_time, last_seen, end_before, ''
		FROM server_session s JOIN label c ON c.label_id = computer_label JOIN label u ON u.label_id = user_label`)
}

func bootKey(boot time.Time, id string) string { return boot.Format("20060102150405") + "/" + id }

func assertRows(t *testing.T, what string, got, want []row) {
	t.Helper()
	sort.Slice(want, func(i, j int) bool { return want[i].String() < want[j].String() })
	if len(got) != len(want) {
		t.Fatalf("%s: got %d rows, want %d\ngot:\n%s\nwant:\n%s", what, len(got), len(want), rowsText(got), rowsText(want))
	}
	for i := range got {
		if got[i].String() != want[i].String() {
			t.Fatalf("%s differ\ngot:\n%s\nwant:\n%s", what, rowsText(got), rowsText(want))
		}
	}
}

func rowsText(rs []row) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString("  " + r.String() + "\n")
	}
	return b.String()
}

type hostTimes struct{ LastSeen, LogonSeen, ServerSeen time.Time }

func hostState(t *testing.T, s *Store) hostTimes {
	t.Helper()
	var a, b, c pgtype.Timestamptz
	if err := s.pool.QueryRow(context.Background(), `SELECT last_seen, logon_seen_at, server_seen_at FROM host WHERE machine_guid = $1`, guid).Scan(&a, &b, &c); err != nil {
		t.Fatal(err)
	}
	return hostTimes{nullTime(a), nullTime(b), nullTime(c)}
}

// physical returns (ctid, xmin) of every session row: unchanged when no
// session row was written.
func physical(t *testing.T, s *Store) string {
	t.Helper()
	var out string
	if err := s.pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(x, ','), '') FROM (
		SELECT tableoid::regclass || ctid::text || xmin::text AS x FROM logon_session
		UNION ALL SELECT tableoid::regclass || ctid::text || xmin::text FROM server_session ORDER BY 1) q`).Scan(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func storetestNewDatabase(tb testing.TB) string { return storetest.NewDatabase(tb, Migrate) }
