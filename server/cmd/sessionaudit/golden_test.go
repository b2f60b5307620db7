package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/rows"
	"github.com/sessionaudit/sessionaudit/server/servertest"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/ from the output")

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// t0 is the CLI's "now" in the golden tests; the store's clock ends there.
var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func u32(v uint32) *uint32 { return &v }

const (
	guidFS01  = "0f5e0000-0000-4000-8000-000000000001"
	guidWS01  = "0f5e0000-0000-4000-8000-000000000002"
	guidDC01  = "0f5e0000-0000-4000-8000-000000000003"
	guidEvil  = "0f5e0000-0000-4000-8000-000000000066"
	day       = 24 * time.Hour
	hostileFQ = "=ws66\x1b[2J\x1b]0;owned\x07"
)

// fleet is a collector on loopback over a store holding a small, fixed
// history, and the settings the CLI needs to ask it.
type fleet struct {
	// col is the collector; col.WebURL and col.WebClient reach its HTTP API.
	col   *servertest.Collector
	env   map[string]string
	token string
	addr  string
	dir   string
	// st is the store under the collector (its clock ends at t0).
	st *store.Store
}

// newFleet stores the history through the store's Ingest, with the store's
// clock set to each report's time, then serves it.
//
//   - fs01, a file server: CONTOSO\svc-backup (service, open since its boot),
//     CONTOSO\alice over the network (ended between 09:00 and 10:00),
//     CONTOSO\adm-jdoe over RDP (open since 09:50); SMB sessions from WS01
//     (alice, open) and 10.1.2.3 (bob, ended between 09:00 and 10:00).
//   - ws01: CONTOSO\alice interactive, open since yesterday.
//   - dc01: silent for three days; a batch session of CONTOSO\svc-backup
//     and one without an account.
//   - a host whose name is a terminal escape and a spreadsheet formula, with
//     an RDP session of CONTOSO\alice.
func newFleet(t *testing.T) *fleet {
	t.Helper()
	ctx := context.Background()
	var clock atomic.Int64
	setClock := func(tm time.Time) { clock.Store(tm.UnixNano()) }
	setClock(t0)
	url := storetest.NewDatabase(t, store.Migrate)
	st, err := store.Open(ctx, url, store.WithClock(func() time.Time { return time.Unix(0, clock.Load()).UTC() }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.EnsurePartitionsBetween(ctx, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	logon := func(id string, typ uint32, pkg string, start time.Time, domain, name string) store.LogonSession {
		ls := store.LogonSession{LogonID: id, LogonType: u32(typ), AuthenticationPackage: pkg, StartTime: start}
		if name != "" {
			ls.Account = &store.Account{Domain: domain, Name: name, SID: "S-1-5-21-1-2-3-" + id}
		}
		return ls
	}
	smb := func(from, user string, active uint32) store.ServerSession {
		return store.ServerSession{ComputerName: from, UserName: user, ActiveTime: u32(active), ClientType: "Windows 10 Enterprise 19045",
			TransportName: `\Device\NetbtSmb`, SessionType: u32(2), ResourcesOpened: u32(3), IdleTime: u32(30)}
	}
	ingest := func(agentID, guid string, h store.Host, reports ...store.Report) {
		t.Helper()
		for i := range reports {
			reports[i].Kind = store.KindSnapshot
			reports[i].Host = &h
			setClock(reports[i].TakenAt.Add(2 * time.Second))
			res, err := st.Ingest(ctx, agentID, guid, reports[i:i+1])
			if err != nil || len(res.Rejected) > 0 {
				t.Fatalf("Ingest %s #%d: %v %v", h.Hostname, reports[i].Sequence, err, res.Rejected)
			}
		}
	}

	fs01 := store.Host{MachineGUID: guidFS01, Hostname: "fs01", Domain: "contoso.local", OSCaption: "Microsoft Windows Server 2022 Datacenter",
		OSVersion: "10.0.20348", LastBootTime: at(-10 * day), AgentVersion: "1.2.0"}
	svc := logon("1001", 5, "Negotiate", at(-10*day+time.Minute), "CONTOSO", "svc-backup")
	aliceNet := logon("1002", 3, "Kerberos", at(-3*time.Hour-5*time.Minute), "CONTOSO", "alice")
	adm := logon("1003", 10, "Negotiate", at(-2*time.Hour-10*time.Minute), "CONTOSO", "adm-jdoe")
	admLingering := adm // no process left since -30m: kept open by a leaked token
	admLingering.LingeringSince = at(-30 * time.Minute)
	ingest("agent-fs01", guidFS01, fs01,
		store.Report{Sequence: 1, TakenAt: at(-3 * time.Hour), LogonSessions: []store.LogonSession{svc, aliceNet},
			ServerSessions: []store.ServerSession{smb("WS01", "alice", 300), smb("10.1.2.3", "bob", 60)}},
		store.Report{Sequence: 2, TakenAt: at(-2 * time.Hour), LogonSessions: []store.LogonSession{svc, adm},
			ServerSessions: []store.ServerSession{smb("WS01", "alice", 3900)}},
		store.Report{Sequence: 3, TakenAt: at(-5 * time.Minute), LogonSessions: []store.LogonSession{svc, admLingering},
			ServerSessions: []store.ServerSession{smb("WS01", "alice", 10800)}})

	ws01 := store.Host{MachineGUID: guidWS01, Hostname: "ws01", Domain: "contoso.local", OSCaption: "Microsoft Windows 11 Enterprise",
		OSVersion: "10.0.22631", LastBootTime: at(-day - time.Hour), AgentVersion: "1.2.0"}
	aliceWS := logon("2001", 2, "Kerberos", at(-day+time.Minute), "CONTOSO", "alice")
	ingest("agent-ws01", guidWS01, ws01,
		store.Report{Sequence: 1, TakenAt: at(-day + 2*time.Minute), LogonSessions: []store.LogonSession{aliceWS}},
		store.Report{Sequence: 2, TakenAt: at(-30 * time.Minute), LogonSessions: []store.LogonSession{aliceWS}})

	dc01 := store.Host{MachineGUID: guidDC01, Hostname: "dc01", Domain: "contoso.local", OSCaption: "Microsoft Windows Server 2019 Standard",
		OSVersion: "10.0.17763", LastBootTime: at(-40 * day), AgentVersion: "1.1.0"}
	ingest("agent-dc01", guidDC01, dc01,
		store.Report{Sequence: 1, TakenAt: at(-3 * day), LogonSessions: []store.LogonSession{
			logon("3001", 4, "Kerberos", at(-3*day-time.Hour), "CONTOSO", "svc-backup"),
			logon("3002", 0, "", at(-40*day+time.Minute), "", ""),
		}})

	evil := store.Host{MachineGUID: guidEvil, Hostname: hostileFQ, Domain: "contoso.local", OSCaption: "Microsoft Windows 10 Pro",
		OSVersion: "10.0.19045", LastBootTime: at(-2 * time.Hour), AgentVersion: "1.2.0"}
	ingest("agent-evil", guidEvil, evil,
		store.Report{Sequence: 1, TakenAt: at(-time.Hour), LogonSessions: []store.LogonSession{
			logon("6601", 10, "Negotiate", at(-time.Hour-time.Minute), "CONTOSO", "alice")},
			ServerSessions: []store.ServerSession{smb("PC\u202etxt.exe", "eve", 120)}})
	setClock(t0)

	_, token, err := st.CreateAPIToken(ctx, "analyst", store.RoleReader, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("test CA", 365*day, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	analystCA, err := pki.NewCA("test analyst CA", 365*day, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	trust, err := pki.NewTrust([]*x509.Certificate{ca.Certificate()}, []*x509.Certificate{analystCA.Certificate()})
	if err != nil {
		t.Fatal(err)
	}
	col := servertest.Start(t, st, ca, trust, "127.0.0.1:0", servertest.Options{Web: true})
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, identity.EncodeCertificatesPEM(ca.Certificate().Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	return &fleet{col: col, addr: col.Addr, token: token, dir: dir, st: st, env: map[string]string{
		"SESSIONAUDIT_COLLECTOR": col.Addr,
		"SESSIONAUDIT_TOKEN":     token,
		"SESSIONAUDIT_CA_CERT":   caFile,
		"HOME":                   dir, // no config file
	}}
}

// result is what one command line did.
type result struct {
	code           int
	stdout, stderr string
}

// sa runs the CLI in-process against the fleet, at t0, with the local
// zone UTC+1.
func (f *fleet) sa(t *testing.T, args ...string) result {
	t.Helper()
	return f.saWith(t, nil, args...)
}

func (f *fleet) saWith(t *testing.T, adjust func(*cli), args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	c := newCLI(&out, &errOut, mapEnv(f.env))
	c.now = func() time.Time { return t0 }
	c.loc = time.FixedZone("CET", 3600)
	if adjust != nil {
		adjust(c)
	}
	code := c.main(context.Background(), args)
	return result{code, out.String(), errOut.String()}
}

func mapEnv(m map[string]string) lookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestGolden runs every command in each of its output formats against a
// real collector and compares the output with testdata/*.golden.
func TestGolden(t *testing.T) {
	f := newFleet(t)
	cases := []struct {
		name string
		args []string
	}{
		{"who", []string{"who", "--host", "FS01", "--at", "2026-03-10T09:30:00Z"}},
		{"who-relative", []string{"who", "--host", "fs01.contoso.local", "--at", "-150m"}},
		{"who-server-csv", []string{"who", "--host", "fs01", "--at", "2026-03-10T09:30:00Z", "--csv", "--kind", "server"}},
		{"who-local", []string{"who", "--host", "fs01", "--at", "2026-03-10T09:30:00Z", "--local"}},
		{"who-empty", []string{"who", "--host", "nosuchhost", "--at", "2026-03-10T09:30:00Z"}},
		{"timeline-user", []string{"timeline", "--user", `contoso\ALICE`, "--since", "2d"}},
		{"timeline-host", []string{"timeline", "--host", "fs01", "--since", "30d", "--until", "2026-03-10T11:00:00Z"}},
		{"smb-from", []string{"smb", "--from", "ws01", "--since", "7d"}},
		{"smb-to", []string{"smb", "--to", "fs01", "--since", "7d"}},
		{"smb-all", []string{"smb", "--since", "7d"}},
		{"sessions-open-rdp", []string{"sessions", "--type", "rdp", "--open"}},
		{"sessions-range", []string{"sessions", "--type", "service,batch", "--type", "0", "--since", "30d"}},
		{"sessions-user-package", []string{"sessions", "--user", `CONTOSO\alice`, "--package", "kerberos", "--since", "2d"}},
		{"hosts", []string{"hosts"}},
		{"hosts-stale", []string{"hosts", "--stale", "1h"}},
	}
	for _, tc := range cases {
		for _, format := range []string{"table", "json", "csv"} {
			if strings.HasSuffix(tc.name, "-csv") || strings.HasSuffix(tc.name, "-local") || tc.name == "who-relative" {
				if format != "table" {
					continue
				}
			}
			t.Run(tc.name+"."+format, func(t *testing.T) {
				args := tc.args
				if format != "table" {
					args = append(append([]string(nil), args...), "--"+format)
				}
				r := f.sa(t, args...)
				if r.code != exitOK || r.stderr != "" {
					t.Fatalf("%q: exit %d\nstderr: %s", args, r.code, r.stderr)
				}
				golden(t, tc.name+"."+format, r.stdout)
				checkFormat(t, format, r.stdout)
			})
		}
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"export-all.jsonl", []string{"export", "--since", "30d", "--kind", "all"}},
		{"export-logon.csv", []string{"export", "--since", "30d", "--csv"}},
		{"export-server-host.jsonl", []string{"export", "--since", "30d", "--until", "now", "--kind", "server", "--host", "fs01", "--json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.sa(t, tc.args...)
			if r.code != exitOK || r.stderr != "" {
				t.Fatalf("%q: exit %d\nstderr: %s", tc.args, r.code, r.stderr)
			}
			golden(t, tc.name, r.stdout)
			if strings.HasSuffix(tc.name, ".csv") {
				checkFormat(t, "csv", r.stdout)
			} else {
				checkFormat(t, "jsonl", r.stdout)
			}
		})
	}
}

// checkFormat checks that machine output parses and that the table holds
// no control character.
func checkFormat(t *testing.T, format, out string) {
	t.Helper()
	switch format {
	case "json":
		var doc map[string]any
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Errorf("--json output is not one JSON document: %v", err)
		}
	case "jsonl":
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var row map[string]any
			if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
				t.Errorf("JSON line %q: %v", sc.Text(), err)
			}
		}
	case "csv":
		if _, err := csv.NewReader(strings.NewReader(out)).ReadAll(); err != nil {
			t.Errorf("CSV output does not parse: %v", err)
		}
	case "table":
		if s := sanitize(out); strings.ReplaceAll(s, `\x0a`, "\n") != out {
			t.Errorf("the table holds control characters: %q", out)
		}
	}
}

// TestPagingAndLimit: pages of two rows give the same answer as one page;
// --limit stops early, says so on stderr, and hands out the next page's
// token in --json.
func TestPagingAndLimit(t *testing.T) {
	f := newFleet(t)
	small := func(c *cli) { c.pageSize = 2 }
	for _, args := range [][]string{
		{"sessions", "--since", "30d", "--json"},
		{"hosts", "--csv"},
		{"who", "--host", "fs01", "--at", "2026-03-10T09:30:00Z", "--json"},
		{"export", "--since", "30d", "--kind", "all"},
	} {
		one, paged := f.sa(t, args...), f.saWith(t, small, args...)
		if one.code != 0 || paged.code != 0 || one.stdout != paged.stdout {
			t.Errorf("%q: one page (exit %d) and pages of 2 (exit %d) differ:\n%s\n---\n%s\n%s", args, one.code, paged.code, one.stdout, paged.stdout, paged.stderr)
		}
	}

	r := f.saWith(t, small, "sessions", "--since", "30d", "--json", "--limit", "3")
	var doc logonDoc
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != exitOK {
		t.Fatalf("--limit 3: exit %d, %v\n%s", r.code, err, r.stdout)
	}
	if len(doc.LogonSessions) != 3 || doc.NextPageToken == "" {
		t.Errorf("--limit 3 gave %d rows and token %q; want 3 and a token", len(doc.LogonSessions), doc.NextPageToken)
	}
	if !strings.Contains(r.stderr, "stopped at --limit 3 rows") {
		t.Errorf("--limit 3 did not say it stopped: stderr %q", r.stderr)
	}
	all := f.sa(t, "sessions", "--since", "30d", "--csv", "--limit", "0")
	if recs, err := csv.NewReader(strings.NewReader(all.stdout)).ReadAll(); err != nil || len(recs) != 1+7 || all.stderr != "" {
		t.Errorf("--limit 0: %d records, %v, stderr %q; want a header and 7 rows", len(recs), err, all.stderr)
	}
}

// TestCollectorErrors: the exit status of each way a query can fail against
// a real collector.
func TestCollectorErrors(t *testing.T) {
	f := newFleet(t)
	withEnv := func(k, v string) func(*cli) {
		return func(c *cli) {
			env := map[string]string{}
			for kk, vv := range f.env {
				env[kk] = vv
			}
			env[k] = v
			c.env = mapEnv(env)
		}
	}
	otherCA, err := pki.NewCA("another CA", day, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherCAFile := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(otherCAFile, identity.EncodeCertificatesPEM(otherCA.Certificate().Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	closedAddr := closedPort(t)
	for _, tc := range []struct {
		name   string
		adjust func(*cli)
		args   []string
		code   int
		stderr string
	}{
		{"unknown token", withEnv("SESSIONAUDIT_TOKEN", "sat_notatoken"), []string{"hosts"}, exitAuth, "did not accept the credentials"},
		{"no token", withEnv("SESSIONAUDIT_TOKEN", ""), []string{"hosts"}, exitAuth, "no API token"},
		{"range over 400 days", nil, []string{"timeline", "--user", `CONTOSO\alice`, "--since", "500d"}, exitUsage, "(--since, --until)"},
		{"other CA", withEnv("SESSIONAUDIT_CA_CERT", otherCAFile), []string{"hosts"}, exitFailure, "is --ca-cert the CA"},
		{"nobody listening", withEnv("SESSIONAUDIT_COLLECTOR", closedAddr), []string{"hosts", "--timeout", "3s"}, exitFailure, "unavailable"},
		{"plaintext to TLS", nil, []string{"hosts", "--insecure-plaintext-dev", "--timeout", "3s"}, exitFailure, "TLS and plaintext mixed up?"},
		{"fail-empty", nil, []string{"who", "--host", "nosuchhost", "--fail-empty"}, exitEmpty, "nothing matched"},
		{"fail-empty export", nil, []string{"export", "--since", "2026-01-01", "--until", "2026-01-02", "--fail-empty"}, exitEmpty, "nothing matched"},
		{"not empty", nil, []string{"hosts", "--fail-empty"}, exitOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.saWith(t, tc.adjust, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) || (tc.stderr == "" && r.stderr != "") {
				t.Errorf("%q: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, tc.code, tc.stderr)
			}
		})
	}
}

// TestExportToFile: --output appears complete, owner-only, and not at all
// when the export fails.
func TestExportToFile(t *testing.T) {
	f := newFleet(t)
	out := filepath.Join(t.TempDir(), "logon.csv")
	r := f.sa(t, "export", "--since", "30d", "--csv", "--output", out)
	if r.code != exitOK || r.stdout != "" || !strings.Contains(r.stderr, "exported 7 rows to "+out) {
		t.Fatalf("export --output: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "export-logon.csv", string(data))
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("export file mode %v, %v; want owner-only", fi.Mode(), err)
	}
	bad := filepath.Join(t.TempDir(), "bad.csv")
	r = f.sa(t, "export", "--since", "500d", "--csv", "--output", bad)
	if r.code != exitUsage {
		t.Errorf("export over 400 days: exit %d, want %d; stderr %q", r.code, exitUsage, r.stderr)
	}
	if entries, _ := os.ReadDir(filepath.Dir(bad)); len(entries) != 0 {
		t.Errorf("a failed export left %v", entries)
	}
}

// TestRowsMatchRowsPackage: the CSV header of each kind is rows.Columns, so
// that the CLI's columns are those of the HTTP API and the UI.
func TestRowsMatchRowsPackage(t *testing.T) {
	f := newFleet(t)
	for args, cols := range map[string][]string{
		"sessions --open --csv":                         rows.Columns[rows.Logon](),
		"smb --since 7d --csv":                          rows.Columns[rows.Server](),
		"hosts --csv":                                   rows.Columns[rows.Host](),
		"export --since 30d --kind server --csv":        rows.Columns[rows.Server](),
		"who --host fs01 --at -150m --csv":              rows.Columns[rows.Logon](),
		"timeline --host ws01 --since 30d --csv":        rows.Columns[rows.Logon](),
		"sessions --since 30d --type rdp --csv":         rows.Columns[rows.Logon](),
		"who --host fs01 --csv --kind server":           rows.Columns[rows.Server](),
		"timeline --user CONTOSO\\bob --since 2d --csv": rows.Columns[rows.Logon](),
	} {
		r := f.sa(t, strings.Fields(args)...)
		header, _, _ := strings.Cut(r.stdout, "\n")
		if r.code != exitOK || header != strings.Join(cols, ",") {
			t.Errorf("%s: exit %d, header %q; want %q", args, r.code, header, strings.Join(cols, ","))
		}
	}
}
