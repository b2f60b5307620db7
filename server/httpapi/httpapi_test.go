package httpapi_test

// End-to-end: a real collector (server/servertest) on loopback with its
// HTTP listener over HTTPS, a real PostgreSQL (store/storetest) holding
// sessions an enrolled agent reported over gRPC, and the API's answers
// compared with the gRPC QueryService's for the same questions.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server"
	"github.com/sessionaudit/sessionaudit/server/httpapi"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/rows"
	"github.com/sessionaudit/sessionaudit/server/servertest"
	"github.com/sessionaudit/sessionaudit/server/web"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// Test data: fileServer has manySessions logon sessions from t0 (some
// ended at t0+30m) and SMB sessions; evilHost and its account begin with
// spreadsheet formula characters.
const (
	fileServerGUID = "11111111-1111-1111-1111-111111111111"
	evilGUID       = "22222222-2222-2222-2222-222222222222"
	fileServer     = "fs-01"
	evilHost       = "=HYPERLINK(\"http://x\")"
	evilDomain     = "=EVIL"
	manySessions   = 1150
	endedSessions  = 150
)

type fixture struct {
	st    *store.Store
	c     *servertest.Collector
	token string
	t0    time.Time
	grpc  pb.QueryServiceClient
	gctx  context.Context
}

func newFixture(t *testing.T, adjust func(*server.Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	url := storetest.NewDatabase(t, store.Migrate)
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	now := time.Now()
	ca, err := pki.NewCA("httpapi test CA", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := pki.NewTrust([]*x509.Certificate{ca.Certificate()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{st: st, t0: now.Add(-3 * time.Hour).Truncate(time.Second).UTC()}
	if err := st.EnsurePartitionsBetween(ctx, f.t0.AddDate(0, -1, 0), f.t0.AddDate(0, 2, 0)); err != nil {
		t.Fatal(err)
	}
	_, secret, err := st.CreateEnrollmentSecret(ctx, "httpapi test", 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, f.token, err = st.CreateAPIToken(ctx, "analyst", store.RoleReader, time.Time{}); err != nil {
		t.Fatal(err)
	}
	f.c = servertest.Start(t, st, ca, trust, "127.0.0.1:0", servertest.Options{Web: true, UI: web.Handler(), Adjust: adjust})

	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	dial := func(cert *tls.Certificate) *grpc.ClientConn {
		conn, err := grpc.NewClient(f.c.Addr, grpc.WithTransportCredentials(credentials.NewTLS(identity.ClientTLSConfig(pool, "localhost", cert))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	f.grpc = pb.NewQueryServiceClient(dial(nil))
	f.gctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+f.token)

	at := func(min int) *timestamppb.Timestamp {
		return timestamppb.New(f.t0.Add(time.Duration(min) * time.Minute))
	}
	types := []uint32{2, 3, 10, 5, 4}
	packages := []string{"Kerberos", "NTLM", "Negotiate"}
	var many []*pb.LogonSession
	for i := range manySessions {
		raw := types[i%len(types)]
		many = append(many, &pb.LogonSession{LogonId: fmt.Sprintf("0x%x", 0x10000+i), LogonTypeRaw: &raw,
			LogonType: pb.LogonTypeFromWMI(raw), AuthenticationPackage: packages[i%len(packages)],
			StartTime: at(-i % 120), Account: &pb.Account{Domain: "CORP", Name: fmt.Sprintf("user%02d", i%40)}})
	}
	var ended []*pb.LogonSessionKey
	for i := range endedSessions {
		ended = append(ended, &pb.LogonSessionKey{LogonId: many[i].GetLogonId()})
	}
	smb := []*pb.ServerSession{
		{ComputerName: "10.0.0.9", UserName: "bob", ActiveTime: ptr(uint32(600)), ResourcesOpened: ptr(uint32(3))},
		{ComputerName: "WS0123", UserName: "alice", ActiveTime: ptr(uint32(60)), IdleTime: ptr(uint32(5))},
		{ComputerName: "=1+1", UserName: "@mallory", ActiveTime: ptr(uint32(120))},
	}
	rdp := uint32(10)
	for _, h := range []struct {
		guid, name, domain string
		reports            []*pb.Report
	}{
		{fileServerGUID, fileServer, "CORP", []*pb.Report{
			{Sequence: 1, Content: &pb.Report_Snapshot{Snapshot: &pb.Snapshot{
				Host:    &pb.Host{MachineGuid: fileServerGUID, Hostname: fileServer, Domain: "CORP", LastBootTime: at(-600)},
				TakenAt: at(0), LogonSessions: many, ServerSessions: smb}}},
			{Sequence: 2, Content: &pb.Report_Delta{Delta: &pb.Delta{BaseSequence: 1, TakenAt: at(30), LogonSessionsEnded: ended}}},
			{Sequence: 3, Content: &pb.Report_Heartbeat{Heartbeat: &pb.Heartbeat{BaseSequence: 2, TakenAt: at(60)}}},
		}},
		{evilGUID, evilHost, evilDomain, []*pb.Report{
			{Sequence: 1, Content: &pb.Report_Snapshot{Snapshot: &pb.Snapshot{
				Host:    &pb.Host{MachineGuid: evilGUID, Hostname: evilHost, Domain: evilDomain, LastBootTime: at(-600)},
				TakenAt: at(0), LogonSessions: []*pb.LogonSession{{LogonId: "0x1", LogonTypeRaw: &rdp,
					LogonType: pb.LogonType_LOGON_TYPE_REMOTE_INTERACTIVE, AuthenticationPackage: "-cmd", StartTime: at(-5),
					Account: &pb.Account{Domain: evilDomain, Name: "+x"}}}}}},
		}},
	} {
		key, csr, err := identity.NewAgentKeyAndCSR()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := pb.NewCollectorServiceClient(dial(nil)).Enroll(ctx, &pb.EnrollRequest{EnrollmentSecret: secret, CsrDer: csr,
			Host: &pb.Host{MachineGuid: h.guid, Hostname: h.name, Domain: h.domain}})
		if err != nil {
			t.Fatalf("Enroll %s: %v", h.name, err)
		}
		cert := &tls.Certificate{Certificate: [][]byte{resp.GetCertificateDer()}, PrivateKey: key}
		ir, err := pb.NewCollectorServiceClient(dial(cert)).Ingest(ctx, &pb.IngestRequest{Batch: &pb.Batch{Reports: h.reports, SentAt: timestamppb.Now()}})
		if err != nil {
			t.Fatalf("Ingest %s: %v", h.name, err)
		}
		if ir.GetAcknowledgedSequence() != h.reports[len(h.reports)-1].GetSequence() {
			t.Fatalf("Ingest %s: acked %d", h.name, ir.GetAcknowledgedSequence())
		}
	}
	return f
}

func ptr[T any](v T) *T { return &v }

// rfc formats t for a query.
func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// get asks the API with the fixture's token (or the given Authorization;
// "-" for none).
func (f *fixture) get(t *testing.T, path string, q url.Values, auth ...string) (*http.Response, []byte) {
	t.Helper()
	return f.do(t, http.MethodGet, path+"?"+q.Encode(), auth...)
}

func (f *fixture) do(t *testing.T, method, pathAndQuery string, auth ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.c.WebURL+pathAndQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := "Bearer " + f.token
	if len(auth) > 0 {
		a = auth[0]
	}
	if a != "-" {
		req.Header.Set("Authorization", a)
	}
	resp, err := f.c.WebClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, pathAndQuery, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, pathAndQuery, err)
	}
	return resp, body
}

// errorAnswer decodes an error body.
type errorAnswer struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// pages reads every page of a JSON list answer, checking each row's keys
// against the OpenAPI document, and returns the rows and the number of
// pages.
func pages[T any](t *testing.T, f *fixture, path, key string, q url.Values) ([]T, int) {
	t.Helper()
	doc := loadOpenAPI(t)
	var out []T
	q = cloneValues(q)
	for n := 1; ; n++ {
		resp, body := f.get(t, path, q)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s?%s: %s %s", path, q.Encode(), resp.Status, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		checkAgainstSchema(t, doc, path, body)
		var page map[string]json.RawMessage
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		var rs []T
		if err := json.Unmarshal(page[key], &rs); err != nil || rs == nil {
			t.Fatalf("GET %s: %q is not a list of rows: %v (%s)", path, key, err, page[key])
		}
		out = append(out, rs...)
		var next string
		if err := json.Unmarshal(page["next_page_token"], &next); err != nil {
			t.Fatalf("GET %s: next_page_token: %v", path, err)
		}
		if next == "" {
			return out, n
		}
		q.Set("page_token", next)
	}
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// grpcPages collects every page of a gRPC list.
func grpcPages[T any](t *testing.T, call func(token string) ([]T, string, error)) []T {
	t.Helper()
	var out []T
	token := ""
	for {
		page, next, err := call(token)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if token = next; token == "" {
			return out
		}
	}
}

func mapRows[In, Out any](in []In, f func(In) Out) []Out {
	out := make([]Out, 0, len(in))
	for _, x := range in {
		out = append(out, f(x))
	}
	return out
}

func same[T any](t *testing.T, what string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows over HTTP, %d over gRPC", what, len(got), len(want))
		return
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("%s: row %d over HTTP\n%+v\nover gRPC\n%+v", what, i, got[i], want[i])
			return
		}
	}
}

// TestRoutesAnswerAsGRPC asks each route a question, all pages, and
// compares the rows with the QueryService's answer to the same question
// over gRPC, converted with server/rows.
func TestRoutesAnswerAsGRPC(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	since, until := f.t0.Add(-3*time.Hour), f.t0.Add(2*time.Hour)
	ts := timestamppb.New

	t.Run("who", func(t *testing.T) {
		at := f.t0.Add(10 * time.Minute)
		q := url.Values{"host": {fileServer}, "at": {rfc(at)}, "page_size": {"400"}}
		var logon []rows.Logon
		var server []rows.Server
		n := 0
		for {
			resp, body := f.get(t, "/api/v1/who", q)
			if resp.StatusCode != 200 {
				t.Fatalf("who: %s %s", resp.Status, body)
			}
			checkAgainstSchema(t, loadOpenAPI(t), "/api/v1/who", body)
			var page struct {
				Logon  []rows.Logon  `json:"logon_sessions"`
				Server []rows.Server `json:"server_sessions"`
				Next   string        `json:"next_page_token"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				t.Fatal(err)
			}
			logon, server, n = append(logon, page.Logon...), append(server, page.Server...), n+1
			if page.Next == "" {
				break
			}
			q.Set("page_token", page.Next)
		}
		var wl []*pb.LogonSessionInterval
		var ws []*pb.ServerSessionInterval
		grpcPages(t, func(tok string) ([]int, string, error) {
			r, err := f.grpc.WhoWasOn(f.gctx, &pb.WhoWasOnRequest{Host: fileServer, At: ts(at), PageSize: 400, PageToken: tok})
			wl, ws = append(wl, r.GetLogonSessions()...), append(ws, r.GetServerSessions()...)
			return nil, r.GetNextPageToken(), err
		})
		if n < 3 || len(logon) != manySessions {
			t.Errorf("who: %d pages, %d logon sessions; want several pages and %d", n, len(logon), manySessions)
		}
		same(t, "who logon", logon, mapRows(wl, rows.FromLogon))
		same(t, "who server", server, mapRows(ws, rows.FromServer))
	})

	logonQ := func(req *pb.ListLogonSessionsRequest) func(string) ([]*pb.LogonSessionInterval, string, error) {
		return func(tok string) ([]*pb.LogonSessionInterval, string, error) {
			req.PageToken = tok
			r, err := f.grpc.ListLogonSessions(f.gctx, req)
			return r.GetLogonSessions(), r.GetNextPageToken(), err
		}
	}
	for _, tc := range []struct {
		name string
		q    url.Values
		req  *pb.ListLogonSessionsRequest
		min  int
	}{
		{"host timeline", url.Values{"host": {fileServer}},
			&pb.ListLogonSessionsRequest{Host: fileServer}, manySessions},
		{"account timeline", url.Values{"account": {`corp\USER07`}},
			&pb.ListLogonSessionsRequest{Account: `corp\USER07`}, 2},
		{"types and package", url.Values{"type": {"rdp", "network"}, "package": {"ntlm"}},
			&pb.ListLogonSessionsRequest{LogonTypes: []pb.LogonType{pb.LogonType_LOGON_TYPE_REMOTE_INTERACTIVE, pb.LogonType_LOGON_TYPE_NETWORK},
				AuthenticationPackage: "ntlm"}, 100},
		{"fleet", url.Values{}, &pb.ListLogonSessionsRequest{}, manySessions + 1},
	} {
		t.Run("logon-sessions "+tc.name, func(t *testing.T) {
			q := cloneValues(tc.q)
			q.Set("since", rfc(since))
			q.Set("until", rfc(until))
			q.Set("page_size", "250")
			got, n := pages[rows.Logon](t, f, "/api/v1/logon-sessions", "logon_sessions", q)
			tc.req.StartTime, tc.req.EndTime, tc.req.PageSize = ts(since), ts(until), 250
			want := grpcPages(t, logonQ(tc.req))
			if len(got) < tc.min {
				t.Errorf("%d rows, want at least %d", len(got), tc.min)
			}
			if len(got) > 250 && n < 2 {
				t.Errorf("%d rows in %d page", len(got), n)
			}
			same(t, tc.name, got, mapRows(want, rows.FromLogon))
		})
	}

	t.Run("server-sessions", func(t *testing.T) {
		for _, q := range []url.Values{{}, {"from": {"ws0123"}}, {"user": {"BOB"}}, {"to": {fileServer}}} {
			req := &pb.ListServerSessionsRequest{FromComputer: q.Get("from"), UserName: q.Get("user"), ToHost: q.Get("to"),
				StartTime: ts(since), EndTime: ts(until), PageSize: 2}
			q.Set("since", rfc(since))
			q.Set("until", rfc(until))
			q.Set("page_size", "2")
			got, _ := pages[rows.Server](t, f, "/api/v1/server-sessions", "server_sessions", q)
			want := grpcPages(t, func(tok string) ([]*pb.ServerSessionInterval, string, error) {
				req.PageToken = tok
				r, err := f.grpc.ListServerSessions(f.gctx, req)
				return r.GetServerSessions(), r.GetNextPageToken(), err
			})
			if len(got) == 0 {
				t.Errorf("server-sessions %v: none", q)
			}
			same(t, "server-sessions "+q.Encode(), got, mapRows(want, rows.FromServer))
		}
	})

	t.Run("open-sessions", func(t *testing.T) {
		q := url.Values{"type": {"rdp"}, "page_size": {"100"}}
		got, n := pages[rows.Logon](t, f, "/api/v1/open-sessions", "logon_sessions", q)
		req := &pb.ListOpenSessionsRequest{LogonTypes: []pb.LogonType{pb.LogonType_LOGON_TYPE_REMOTE_INTERACTIVE}, PageSize: 100}
		want := grpcPages(t, func(tok string) ([]*pb.LogonSessionInterval, string, error) {
			req.PageToken = tok
			r, err := f.grpc.ListOpenSessions(f.gctx, req)
			return r.GetLogonSessions(), r.GetNextPageToken(), err
		})
		if len(got) < 200 || n < 2 {
			t.Errorf("open rdp sessions: %d rows in %d pages", len(got), n)
		}
		same(t, "open-sessions", got, mapRows(want, rows.FromLogon))
	})

	t.Run("hosts", func(t *testing.T) {
		for _, q := range []url.Values{{"page_size": {"1"}}, {"stale": {"1m"}}} {
			got, _ := pages[rows.Host](t, f, "/api/v1/hosts", "hosts", q)
			req := &pb.ListHostsRequest{PageSize: 1}
			if q.Has("stale") {
				req = &pb.ListHostsRequest{StaleAfter: durationpb.New(time.Minute)}
			}
			want := grpcPages(t, func(tok string) ([]*pb.HostStatus, string, error) {
				req.PageToken = tok
				r, err := f.grpc.ListHosts(f.gctx, req)
				return r.GetHosts(), r.GetNextPageToken(), err
			})
			same(t, "hosts "+q.Encode(), got, mapRows(want, rows.FromHost))
			if !q.Has("stale") && len(got) != 2 {
				t.Errorf("hosts: %d, want 2", len(got))
			}
		}
	})

	t.Run("export", func(t *testing.T) {
		want := mapRows(grpcPages(t, logonQ(&pb.ListLogonSessionsRequest{StartTime: ts(since), EndTime: ts(until), PageSize: 1000})), rows.FromLogon)
		if len(want) <= 1000 {
			t.Fatalf("%d rows: the export must span more than one page", len(want))
		}
		resp, body := f.get(t, "/api/v1/export", url.Values{"kind": {"logon"}, "since": {rfc(since)}, "until": {rfc(until)}})
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("export jsonl: %s %q %.300s", resp.Status, resp.Header.Get("Content-Type"), body)
		}
		var got []rows.Logon
		dec := json.NewDecoder(bytes.NewReader(body))
		for dec.More() {
			var r rows.Logon
			if err := dec.Decode(&r); err != nil {
				t.Fatal(err)
			}
			got = append(got, r)
		}
		same(t, "export logon jsonl", got, want)
		if lines := bytes.Count(body, []byte("\n")); lines != len(want) {
			t.Errorf("export jsonl: %d lines for %d rows", lines, len(want))
		}

		resp, body = f.get(t, "/api/v1/export", url.Values{"kind": {"logon"}, "since": {rfc(since)}, "until": {rfc(until)}, "format": {"csv"}})
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") ||
			!strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="sessionaudit-logon-sessions-`) {
			t.Fatalf("export csv: %s %v", resp.Status, resp.Header)
		}
		var wantCSV bytes.Buffer
		w := rows.NewCSVWriter[rows.Logon](&wantCSV)
		if err := w.Write(want...); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, wantCSV.Bytes()) {
			t.Errorf("export csv differs from the gRPC rows as CSV (%d bytes, want %d)", len(body), wantCSV.Len())
		}

		resp, body = f.get(t, "/api/v1/export", url.Values{"kind": {"server"}, "since": {rfc(since)}, "user": {"alice"}})
		if resp.StatusCode != 200 || bytes.Count(body, []byte("\n")) != 1 || !bytes.Contains(body, []byte(`"from_computer":"WS0123"`)) {
			t.Errorf("export server user=alice: %s %s", resp.Status, body)
		}
	})
}

// TestPageTokens: a question with relative times pages with the moments of
// its first page; a token is refused with other parameters.
func TestPageTokens(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	q := url.Values{"since": {"-6h"}, "host": {fileServer}, "page_size": {"500"}}
	got, n := pages[rows.Logon](t, f, "/api/v1/logon-sessions", "logon_sessions", q)
	if n != 3 || len(got) != manySessions {
		t.Errorf("since=-6h: %d rows in %d pages, want %d in 3", len(got), n, manySessions)
	}
	seen := map[string]bool{}
	for _, r := range got {
		if seen[r.LogonID] {
			t.Errorf("logon id %s on two pages", r.LogonID)
		}
		seen[r.LogonID] = true
	}

	resp, body := f.get(t, "/api/v1/logon-sessions", q)
	var first struct {
		Next string `json:"next_page_token"`
	}
	if err := json.Unmarshal(body, &first); err != nil || resp.StatusCode != 200 || first.Next == "" {
		t.Fatalf("first page: %s %s", resp.Status, body)
	}
	for _, other := range []url.Values{
		{"since": {"-7h"}, "host": {fileServer}},
		{"since": {"-6h"}, "host": {evilHost}},
	} {
		other.Set("page_token", first.Next)
		resp, body := f.get(t, "/api/v1/logon-sessions", other)
		wantError(t, resp, body, http.StatusBadRequest, "page_token")
	}
	resp, body = f.get(t, "/api/v1/open-sessions", url.Values{"page_token": {first.Next}})
	wantError(t, resp, body, http.StatusBadRequest, "page_token")

	// CSV and JSON lines carry the token in a header.
	resp, body = f.get(t, "/api/v1/logon-sessions", url.Values{"since": {"-6h"}, "host": {fileServer}, "page_size": {"1000"}, "format": {"csv"}})
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(recs) != 1001 || resp.Header.Get("Next-Page-Token") == "" {
		t.Errorf("csv page: %d records, %v, Next-Page-Token %q", len(recs), err, resp.Header.Get("Next-Page-Token"))
	}
}

func wantError(t *testing.T, resp *http.Response, body []byte, status int, names string) {
	t.Helper()
	var e errorAnswer
	if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != status || !strings.Contains(e.Error, names) || e.Code == "" {
		t.Errorf("%s %s: got %s %s; want %d naming %q", resp.Request.Method, resp.Request.URL.RequestURI(), resp.Status, body, status, names)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("error Content-Type %q", ct)
	}
}

// TestAuthentication: without a valid bearer token every route answers
// 401 unauthenticated.
func TestAuthentication(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for _, auth := range []string{"-", "Bearer sat_notatoken", "Basic " + f.token, "Bearer", "Bearer ", f.token, "Bearer sat_x y", "Bearer " + strings.Repeat("a", 600)} {
		for _, path := range []string{"/api/v1/hosts", "/api/v1/open-sessions", "/api/v1/who?host=fs-01&at=now",
			"/api/v1/logon-sessions?since=-1h", "/api/v1/export?kind=logon&since=-1h", "/api/v1/whoami"} {
			req, _ := http.NewRequest(http.MethodGet, f.c.WebURL+path, nil)
			if auth != "-" {
				req.Header["Authorization"] = []string{auth}
			}
			resp, err := f.c.WebClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e errorAnswer
			_ = json.Unmarshal(body, &e)
			if resp.StatusCode != http.StatusUnauthorized || e.Code != "unauthenticated" || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s with Authorization %q: %s %s", path, auth, resp.Status, body)
			}
			if bytes.Contains(body, []byte("fs-01\"")) || bytes.Contains(body, []byte("logon_sessions")) {
				t.Errorf("%s: an unauthenticated answer has data: %s", path, body)
			}
		}
	}
	resp, _ := f.get(t, "/api/v1/hosts", nil)
	if resp.StatusCode != 200 {
		t.Errorf("with the token: %s", resp.Status)
	}
	resp, body := f.get(t, "/api/v1/whoami", nil)
	checkAgainstSchema(t, loadOpenAPI(t), "/api/v1/whoami", body)
	if resp.StatusCode != 200 || string(body) != `{"name":"analyst","role":"reader"}`+"\n" {
		t.Errorf("whoami: %s %s", resp.Status, body)
	}
}

// TestValidation: every bad input is refused with 400 naming the
// parameter, before the store is asked.
func TestValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		path, query string
		name        string
	}{
		{"/api/v1/logon-sessions", "", "since"},
		{"/api/v1/logon-sessions", "until=now", "since"},
		{"/api/v1/logon-sessions", "since=2026-03-02&until=2026-03-01", "until"},
		{"/api/v1/logon-sessions", "since=2026-03-01&until=2026-03-01", "until"},
		{"/api/v1/logon-sessions", "since=2020-01-01&until=2021-06-01", "until"},
		{"/api/v1/logon-sessions", "since=-1h&page_size=0", "page_size"},
		{"/api/v1/logon-sessions", "since=-1h&page_size=1001", "page_size"},
		{"/api/v1/logon-sessions", "since=-1h&page_size=-1", "page_size"},
		{"/api/v1/logon-sessions", "since=-1h&page_size=abc", "page_size"},
		{"/api/v1/logon-sessions", "since=yesterday", "since"},
		{"/api/v1/logon-sessions", "since=-1h&until=2026-13-01", "until"},
		{"/api/v1/logon-sessions", "since=-1h&account=alice", "account"},
		{"/api/v1/logon-sessions", `since=-1h&account=CORP\`, "account"},
		{"/api/v1/logon-sessions", "since=-1h&host=fs%00-01", "host"},
		{"/api/v1/logon-sessions", "since=-1h&host=fs%ff", "host"},
		{"/api/v1/logon-sessions", "since=-1h&host=" + long, "host"},
		{"/api/v1/logon-sessions", "since=-1h&package=" + long, "package"},
		{"/api/v1/logon-sessions", "since=-1h&type=bogus", "type"},
		{"/api/v1/logon-sessions", "since=-1h&host=a&host=b", "host"},
		{"/api/v1/logon-sessions", "since=-1h&since=-2h", "since"},
		{"/api/v1/logon-sessions", "since=-1h&limit=5", `"limit"`},
		{"/api/v1/logon-sessions", "since=-1h&format=xml", "format"},
		{"/api/v1/logon-sessions", "since=-1h&page_token=garbage", "page_token"},
		{"/api/v1/logon-sessions", "since=-1h&x=" + strings.Repeat("y", 9000), "query string"},
		{"/api/v1/logon-sessions", "since=-1h;host=a", "query string"},
		{"/api/v1/server-sessions", "since=-1h&from=" + long, "from"},
		{"/api/v1/server-sessions", "since=-1h&host=a", `"host"`},
		{"/api/v1/who", "host=fs-01", "at"},
		{"/api/v1/who", "at=now", "host"},
		{"/api/v1/who", "host=fs-01&at=now&kind=server", "kind"},
		{"/api/v1/who", "host=fs-01&at=now&format=csv&kind=both", "kind"},
		{"/api/v1/open-sessions", "account=nobackslash", "account"},
		{"/api/v1/open-sessions", "type=rdp&type=" + long, "type"},
		{"/api/v1/hosts", "stale=-1h", "stale"},
		{"/api/v1/hosts", "stale=soon", "stale"},
		{"/api/v1/export", "since=-1h", "kind"},
		{"/api/v1/export", "kind=logon&since=-1h&from=x", "from"},
		{"/api/v1/export", "kind=server&since=-1h&account=CORP%5Cx", "account"},
		{"/api/v1/export", "kind=logon&since=-1h&page_size=10", `"page_size"`},
		{"/api/v1/export", "kind=logon&since=-1h&format=json", "format"},
	} {
		resp, body := f.do(t, http.MethodGet, tc.path+"?"+tc.query)
		wantError(t, resp, body, http.StatusBadRequest, tc.name)
	}
	resp, body := f.do(t, http.MethodGet, "/api/v1/nope")
	wantError(t, resp, body, http.StatusNotFound, "/api/v1/nope")

	// Every parameter of the table (and so of docs/openapi.json) is one
	// the handler takes.
	for _, r := range httpapi.Routes() {
		base := url.Values{}
		for _, p := range r.Params {
			if p.Required {
				base.Set(p.Name, sampleValue(p))
			}
		}
		for _, p := range r.Params {
			q := cloneValues(base)
			q.Set(p.Name, sampleValue(p))
			resp, body := f.get(t, r.Path, q)
			if bytes.Contains(body, []byte("unknown parameter")) || resp.StatusCode == http.StatusNotFound {
				t.Errorf("%s?%s: %s %s; the table documents %s", r.Path, q.Encode(), resp.Status, body, p.Name)
			}
		}
	}
}

// sampleValue is a plausible value of p.
func sampleValue(p httpapi.Param) string {
	switch {
	case len(p.Enum) > 0:
		return p.Enum[0]
	case p.Type == "integer":
		return "10"
	case p.Format == "time":
		return "-1h"
	case p.Format == "duration":
		return "1h"
	case p.Format == "account":
		return `CORP\alice`
	}
	return "fs-01"
}

// TestInjection: SQL in every filter finds nothing and changes nothing;
// formula characters in a host, domain, package and SMB source come out of
// CSV neutralized and out of JSON as they are.
func TestInjection(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	since := url.Values{"since": {"-1d"}}
	for _, attack := range []string{`x' OR '1'='1`, `x'; DROP TABLE hosts; --`, `%`, `_`, `*`, `fs-0%`, `' UNION SELECT NULL--`} {
		for _, tc := range []struct{ path, param string }{
			{"/api/v1/logon-sessions", "host"}, {"/api/v1/logon-sessions", "package"},
			{"/api/v1/server-sessions", "from"}, {"/api/v1/server-sessions", "user"}, {"/api/v1/server-sessions", "to"},
			{"/api/v1/open-sessions", "host"},
		} {
			q := cloneValues(since)
			if tc.path == "/api/v1/open-sessions" {
				q = url.Values{}
			}
			q.Set(tc.param, attack)
			resp, body := f.get(t, tc.path, q)
			if resp.StatusCode != 200 || bytes.Contains(body, []byte(`"host":"`)) {
				t.Errorf("%s %s=%q: %s %.300s; want 200 and no rows", tc.path, tc.param, attack, resp.Status, body)
			}
		}
		q := cloneValues(since)
		q.Set("account", `CORP\`+attack)
		if resp, body := f.get(t, "/api/v1/logon-sessions", q); resp.StatusCode != 200 || bytes.Contains(body, []byte(`"host":"`)) {
			t.Errorf("account %q: %s %.300s", attack, resp.Status, body)
		}
		if resp, body := f.get(t, "/api/v1/who", url.Values{"host": {attack}, "at": {"now"}}); resp.StatusCode != 200 || bytes.Contains(body, []byte(`"host":"`)) {
			t.Errorf("who host %q: %s %.300s", attack, resp.Status, body)
		}
	}
	hosts, _ := pages[rows.Host](t, f, "/api/v1/hosts", "hosts", nil)
	all, _ := pages[rows.Logon](t, f, "/api/v1/logon-sessions", "logon_sessions", url.Values{"since": {"-1d"}, "page_size": {"1000"}})
	if len(hosts) != 2 || len(all) != manySessions+1 {
		t.Errorf("after the attempts: %d hosts, %d sessions; want 2 and %d", len(hosts), len(all), manySessions+1)
	}

	// JSON carries the values as they are; CSV neutralizes them.
	resp, body := f.get(t, "/api/v1/who", url.Values{"host": {evilHost}, "at": {"now"}})
	var who struct {
		Logon []rows.Logon `json:"logon_sessions"`
	}
	if err := json.Unmarshal(body, &who); err != nil || len(who.Logon) != 1 || who.Logon[0].Host != evilHost ||
		who.Logon[0].Account != evilDomain+`\+x` {
		t.Fatalf("who %s: %s %s", evilHost, resp.Status, body)
	}
	if bytes.Contains(body, []byte("<")) || bytes.Contains(body, []byte(">")) {
		t.Errorf("JSON not HTML-escaped: %s", body)
	}
	for _, tc := range []struct {
		path string
		q    url.Values
	}{
		{"/api/v1/who", url.Values{"host": {evilHost}, "at": {"now"}, "format": {"csv"}}},
		{"/api/v1/logon-sessions", url.Values{"since": {"-1d"}, "host": {evilHost}, "format": {"csv"}}},
		{"/api/v1/export", url.Values{"kind": {"logon"}, "since": {"-1d"}, "account": {evilDomain + `\+x`}, "format": {"csv"}}},
		{"/api/v1/export", url.Values{"kind": {"server"}, "since": {"-1d"}, "from": {"=1+1"}, "format": {"csv"}}},
		{"/api/v1/hosts", url.Values{"format": {"csv"}}},
	} {
		resp, body := f.get(t, tc.path, tc.q)
		recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if resp.StatusCode != 200 || err != nil || len(recs) < 2 {
			t.Errorf("%s %v: %s %v %s", tc.path, tc.q, resp.Status, err, body)
			continue
		}
		neutralized := 0
		for _, rec := range recs[1:] {
			for _, cell := range rec {
				if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
					t.Errorf("%s %v: a cell begins with a formula character: %q", tc.path, tc.q, cell)
				}
				if strings.HasPrefix(cell, "'=") || strings.HasPrefix(cell, "'+") || strings.HasPrefix(cell, "'-") || strings.HasPrefix(cell, "'@") {
					neutralized++
				}
			}
		}
		if neutralized == 0 {
			t.Errorf("%s %v: no neutralized cell in %s", tc.path, tc.q, body)
		}
	}
}

// TestExportLimit: an export over the collector's row limit is cut off:
// the client sees a truncated transfer, not a complete-looking file.
func TestExportLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *server.Config) { c.MaxExportRows = 1100 })
	req, _ := http.NewRequest(http.MethodGet, f.c.WebURL+"/api/v1/export?kind=logon&since=-1d", nil)
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := f.c.WebClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || err == nil {
		t.Errorf("export of %d rows with a limit of 1100: %s, read error %v after %d bytes; want 200 and a truncated body",
			manySessions+1, resp.Status, err, len(body))
	}
	// Under the limit it completes.
	resp2, body2 := f.get(t, "/api/v1/export", url.Values{"kind": {"logon"}, "since": {"-1d"}, "host": {evilHost}})
	if resp2.StatusCode != 200 || bytes.Count(body2, []byte("\n")) != 1 {
		t.Errorf("small export: %s %s", resp2.Status, body2)
	}
}

// TestMethodsHeadersAndUI: only GET and HEAD; a GET with a body is
// refused; security headers on the API and the UI; the UI is at /.
func TestMethodsHeadersAndUI(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		resp, body := f.do(t, m, "/api/v1/hosts")
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s /api/v1/hosts: %s Allow %q %s", m, resp.Status, resp.Header.Get("Allow"), body)
		}
	}
	resp, body := f.do(t, http.MethodHead, "/api/v1/hosts")
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Errorf("HEAD: %s, %d bytes", resp.Status, len(body))
	}
	req, _ := http.NewRequest(http.MethodGet, f.c.WebURL+"/api/v1/hosts", strings.NewReader("x=1"))
	req.Header.Set("Authorization", "Bearer "+f.token)
	resp, err := f.c.WebClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, resp, b, http.StatusBadRequest, "request body")

	for _, path := range []string{"/api/v1/hosts", "/api/v1/nope", "/"} {
		resp, body := f.do(t, http.MethodGet, path)
		h := resp.Header
		if h.Get("Content-Security-Policy") == "" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" ||
			h.Get("Strict-Transport-Security") != "max-age=31536000" {
			t.Errorf("%s: security headers missing: %v", path, h)
		}
		if api := strings.HasPrefix(path, "/api/"); api != (h.Get("Cache-Control") == "no-store") {
			t.Errorf("%s: Cache-Control %q", path, h.Get("Cache-Control"))
		}
		if path == "/" && (resp.StatusCode != 200 || !bytes.Contains(bytes.ToLower(body), []byte("<html"))) {
			t.Errorf("/: %s %.200s; want the web UI", resp.Status, body)
		}
	}
	if resp.TLS == nil || resp.TLS.Version < 0x0303 {
		t.Errorf("not served over TLS 1.2+: %v", resp.TLS)
	}
}
