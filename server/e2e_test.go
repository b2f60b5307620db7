package server_test

// End-to-end tests: real collectors on loopback with real TLS from
// server/pki, against a real PostgreSQL (store/storetest), driven by gRPC
// clients as an agent and an analyst would.

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	"github.com/jackc/pgx/v5/pgxpool"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// env is one database with the PKI and credentials collectors share.
type env struct {
	t          *testing.T
	dbURL      string
	st         *store.Store
	agentCA    *pki.CA
	analystCA  *pki.CA
	trust      *pki.Trust
	serverCert tls.Certificate
	roots      *x509.CertPool
	secret     string
	token      string
	// skew is added to the collectors' clock (nanoseconds).
	skew atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	e := &env{t: t, dbURL: storetest.NewDatabase(t, store.Migrate)}
	st, err := store.Open(ctx, e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e.st = st
	if e.agentCA, err = pki.NewCA("test agent CA", 365*24*time.Hour, now); err != nil {
		t.Fatal(err)
	}
	if e.analystCA, err = pki.NewCA("test analyst CA", 365*24*time.Hour, now); err != nil {
		t.Fatal(err)
	}
	if e.trust, err = pki.NewTrust([]*x509.Certificate{e.agentCA.Certificate()}, []*x509.Certificate{e.analystCA.Certificate()}); err != nil {
		t.Fatal(err)
	}
	if e.serverCert, err = e.agentCA.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 24*time.Hour, now); err != nil {
		t.Fatal(err)
	}
	e.roots = x509.NewCertPool()
	e.roots.AddCert(e.agentCA.Certificate())
	if _, e.secret, err = st.CreateEnrollmentSecret(ctx, "e2e", 0, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, e.token, err = st.CreateAPIToken(ctx, "alice", store.RoleReader, time.Time{}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) now() time.Time { return time.Now().Add(time.Duration(e.skew.Load())) }

// collector is one running Server.
type collector struct {
	srv  *server.Server
	addr string
	done chan error
}

// start runs a collector on 127.0.0.1:0 against st (the env's store when
// nil).
func (e *env) start(st *store.Store, mod func(*server.Config)) *collector {
	e.t.Helper()
	if st == nil {
		st = e.st
	}
	cfg := server.Config{
		CA:                e.agentCA,
		ServerCertificate: e.serverCert,
		Trust:             e.trust,
		AgentCacheTTL:     -1,
		HealthInterval:    200 * time.Millisecond,
		RetryDelay:        time.Second,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:               e.now,
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.New(cfg, st)
	if err != nil {
		e.t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	c := &collector{srv: srv, addr: lis.Addr().String(), done: make(chan error, 1)}
	go func() { c.done <- srv.Serve(lis) }()
	e.t.Cleanup(func() { c.stop(e.t) })
	return c
}

func (c *collector) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.srv.Shutdown(ctx)
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		c.done <- nil // later stops return at once
	case <-time.After(5 * time.Second):
		t.Error("Serve did not return after Shutdown")
	}
}

// dial connects to addr presenting cert (none when nil).
func (e *env) dial(addr string, cert *tls.Certificate) *grpc.ClientConn {
	e.t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(identity.ClientTLSConfig(e.roots, "localhost", cert))))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

// agent is an enrolled test agent.
type agent struct {
	id   string
	guid string
	key  crypto.Signer
	cert tls.Certificate
	der  []byte
}

func (e *env) enroll(c *collector, guid string) *agent {
	e.t.Helper()
	key, csr, err := identity.NewAgentKeyAndCSR()
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Enroll(context.Background(), &pb.EnrollRequest{
		EnrollmentSecret: e.secret, CsrDer: csr,
		Host: &pb.Host{MachineGuid: guid, Hostname: "ws-" + guid[:4], Domain: "CORP"},
	})
	if err != nil {
		e.t.Fatalf("Enroll %s: %v", guid, err)
	}
	if resp.GetAgentId() == "" || !resp.GetRenewAfter().AsTime().Before(resp.GetNotAfter().AsTime()) {
		e.t.Fatalf("Enroll: bad response %v", resp)
	}
	return &agent{id: resp.GetAgentId(), guid: guid, key: key, der: resp.GetCertificateDer(),
		cert: tls.Certificate{Certificate: [][]byte{resp.GetCertificateDer()}, PrivateKey: key}}
}

func (e *env) agentClient(c *collector, a *agent) pb.CollectorServiceClient {
	return pb.NewCollectorServiceClient(e.dial(c.addr, &a.cert))
}

func (e *env) queryClient(c *collector) (pb.QueryServiceClient, context.Context) {
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.token)
	return pb.NewQueryServiceClient(e.dial(c.addr, nil)), ctx
}

// Report builders.

var t0 = time.Now().Add(-2 * time.Hour).Truncate(time.Second).UTC()

func at(min int) *timestamppb.Timestamp {
	return timestamppb.New(t0.Add(time.Duration(min) * time.Minute))
}

func logon(id, user string) *pb.LogonSession {
	raw := uint32(10)
	return &pb.LogonSession{LogonId: id, LogonType: pb.LogonType_LOGON_TYPE_REMOTE_INTERACTIVE, LogonTypeRaw: &raw,
		AuthenticationPackage: "Kerberos", StartTime: at(0), Account: &pb.Account{Domain: "CORP", Name: user}}
}

func snapshot(seq uint64, guid string, min int, sessions ...*pb.LogonSession) *pb.Report {
	return &pb.Report{Sequence: seq, Content: &pb.Report_Snapshot{Snapshot: &pb.Snapshot{
		Host:    &pb.Host{MachineGuid: guid, Hostname: "ws-" + guid[:4], Domain: "CORP", LastBootTime: timestamppb.New(t0.Add(-time.Hour))},
		TakenAt: at(min), LogonSessions: sessions,
		ServerSessions: []*pb.ServerSession{{ComputerName: "10.0.0.9", UserName: "bob", ActiveTime: ptr(uint32(60))}},
	}}}
}

func delta(seq, base uint64, min int, upserted []*pb.LogonSession, ended ...string) *pb.Report {
	d := &pb.Delta{BaseSequence: base, TakenAt: at(min), LogonSessionsUpserted: upserted}
	for _, id := range ended {
		d.LogonSessionsEnded = append(d.LogonSessionsEnded, &pb.LogonSessionKey{LogonId: id})
	}
	return &pb.Report{Sequence: seq, Content: &pb.Report_Delta{Delta: d}}
}

func heartbeat(seq, base uint64, min int) *pb.Report {
	return &pb.Report{Sequence: seq, Content: &pb.Report_Heartbeat{Heartbeat: &pb.Heartbeat{BaseSequence: base, TakenAt: at(min)}}}
}

func batch(reports ...*pb.Report) *pb.IngestRequest {
	return &pb.IngestRequest{Batch: &pb.Batch{Reports: reports, SentAt: timestamppb.Now()}}
}

func ptr[T any](v T) *T { return &v }

func ingest(t *testing.T, c pb.CollectorServiceClient, reports ...*pb.Report) *pb.IngestResponse {
	t.Helper()
	resp, err := c.Ingest(context.Background(), batch(reports...))
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	return resp
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Fatalf("%s: got %v (%v), want %v", what, got, err, want)
	}
}

// intervals returns a summary of every stored logon interval, sorted:
// host, logon id, open or closed.
func (e *env) intervals() []string {
	e.t.Helper()
	rows, err := e.st.Pool().Query(context.Background(), `SELECT h.machine_guid || ' ' || l.logon_id || ' ' ||
		CASE WHEN l.end_before = 'infinity' THEN 'open' ELSE 'closed' END
		FROM logon_session l JOIN host h USING (host_id)`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func (e *env) rowCount(table string) int {
	e.t.Helper()
	var n int
	if err := e.st.Pool().QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

const (
	guidA = "0a1b2c3d-0000-4000-8000-00000000000a"
	guidB = "0a1b2c3d-0000-4000-8000-00000000000b"
)

// TestEnrollIngestQuery: an agent enrolls, sends a snapshot, a delta and a
// heartbeat, retries a batch, and an analyst reads it all back.
func TestEnrollIngestQuery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	a := e.enroll(c, guidA)
	ac := e.agentClient(c, a)

	first := batch(snapshot(1, guidA, 0, logon("0x1", "alice"), logon("0x2", "bob")))
	resp, err := ac.Ingest(context.Background(), first)
	if err != nil || resp.GetAcknowledgedSequence() != 1 || resp.GetResyncRequired() {
		t.Fatalf("first batch: %v, %v", resp, err)
	}
	before := e.intervals()
	// A retried batch (lost response) is acknowledged again, not written twice.
	resp, err = ac.Ingest(context.Background(), first)
	if err != nil || resp.GetAcknowledgedSequence() != 1 {
		t.Fatalf("retried batch: %v, %v", resp, err)
	}
	if after := e.intervals(); !equal(before, after) {
		t.Fatalf("a retried batch changed the store:\n%v\n%v", before, after)
	}
	carol := logon("0x3", "carol")
	carol.StartTime = at(1)
	resp = ingest(t, ac, delta(2, 1, 1, []*pb.LogonSession{carol}, "0x2"), heartbeat(3, 2, 2))
	if resp.GetAcknowledgedSequence() != 3 {
		t.Fatalf("ack %d, want 3", resp.GetAcknowledgedSequence())
	}
	want := []string{guidA + " 0x1 open", guidA + " 0x2 closed", guidA + " 0x3 open"}
	if got := e.intervals(); !equal(got, want) {
		t.Fatalf("stored intervals:\n%v\nwant\n%v", got, want)
	}

	q, ctx := e.queryClient(c)
	who, err := q.WhoWasOn(ctx, &pb.WhoWasOnRequest{Host: "ws-" + guidA[:4], At: at(0)})
	if err != nil {
		t.Fatal(err)
	}
	if len(who.GetLogonSessions()) != 2 || len(who.GetServerSessions()) != 1 {
		t.Fatalf("WhoWasOn: %v", who)
	}
	ls := who.GetLogonSessions()[0]
	if ls.GetHost().GetMachineGuid() != guidA || ls.GetSession().GetLogonType() != pb.LogonType_LOGON_TYPE_REMOTE_INTERACTIVE ||
		ls.GetSession().GetLogonTypeRaw() != 10 || ls.GetSession().GetAccount().GetName() == "" {
		t.Fatalf("WhoWasOn interval: %v", ls)
	}
	tl, err := q.AccountTimeline(ctx, &pb.AccountTimelineRequest{Account: `corp\bob`, StartTime: at(-60), EndTime: at(60)})
	if err != nil || len(tl.GetLogonSessions()) != 1 || tl.GetLogonSessions()[0].GetEnd().GetOpen() {
		t.Fatalf("AccountTimeline: %v, %v", tl, err)
	}
	ss, err := q.ListServerSessions(ctx, &pb.ListServerSessionsRequest{FromComputer: "10.0.0.9", StartTime: at(-60), EndTime: at(60)})
	if err != nil || len(ss.GetServerSessions()) != 1 {
		t.Fatalf("ListServerSessions: %v, %v", ss, err)
	}
	open, err := q.ListOpenSessions(ctx, &pb.ListOpenSessionsRequest{LogonTypes: []pb.LogonType{pb.LogonType_LOGON_TYPE_REMOTE_INTERACTIVE}})
	if err != nil || len(open.GetLogonSessions()) != 2 {
		t.Fatalf("ListOpenSessions: %v, %v", open, err)
	}
	hosts, err := q.ListHosts(ctx, &pb.ListHostsRequest{})
	if err != nil || len(hosts.GetHosts()) != 1 || hosts.GetHosts()[0].GetAgentId() != a.id || hosts.GetHosts()[0].GetOpenLogonSessions() != 2 {
		t.Fatalf("ListHosts: %v, %v", hosts, err)
	}
	// A host's last_seen is how far its stored history reaches: the
	// taken_at of the newest report stored (heartbeat 3), not the receipt.
	if got := hosts.GetHosts()[0].GetLastSeen().AsTime(); !got.Equal(at(2).AsTime()) {
		t.Errorf("ListHosts last_seen %v; want the newest report's taken_at, %v", got, at(2).AsTime())
	}
	stale, err := q.ListHosts(ctx, &pb.ListHostsRequest{StaleAfter: durationpb.New(time.Hour)})
	if err != nil || len(stale.GetHosts()) != 1 {
		t.Errorf("ListHosts stale after 1h: %v, %v; want the host, whose history ends about 2h ago", stale, err)
	}

	// Pagination: page by page, with a token that works only for its query.
	p1, err := q.ListOpenSessions(ctx, &pb.ListOpenSessionsRequest{PageSize: 1})
	if err != nil || len(p1.GetLogonSessions()) != 1 || p1.GetNextPageToken() == "" {
		t.Fatalf("page 1: %v, %v", p1, err)
	}
	p2, err := q.ListOpenSessions(ctx, &pb.ListOpenSessionsRequest{PageSize: 1, PageToken: p1.GetNextPageToken()})
	if err != nil || len(p2.GetLogonSessions()) != 1 || p2.GetLogonSessions()[0].GetSession().GetLogonId() == p1.GetLogonSessions()[0].GetSession().GetLogonId() {
		t.Fatalf("page 2: %v, %v", p2, err)
	}
	_, err = q.AccountTimeline(ctx, &pb.AccountTimelineRequest{Account: `corp\bob`, StartTime: at(-60), EndTime: at(60), PageToken: p1.GetNextPageToken()})
	wantCode(t, "page token of another query", err, codes.InvalidArgument)

	// An analyst certificate also queries; an agent certificate does not.
	key, csr, _ := identity.NewAgentKeyAndCSR()
	issued, err := e.analystCA.SignAnalystCSR(csr, "bob", pki.RoleReader, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	analyst := tls.Certificate{Certificate: [][]byte{issued.DER}, PrivateKey: key}
	if _, err := pb.NewQueryServiceClient(e.dial(c.addr, &analyst)).ListHosts(context.Background(), &pb.ListHostsRequest{}); err != nil {
		t.Fatalf("ListHosts with an analyst certificate: %v", err)
	}
	_, err = pb.NewQueryServiceClient(e.dial(c.addr, &a.cert)).ListHosts(context.Background(), &pb.ListHostsRequest{})
	wantCode(t, "query with an agent certificate", err, codes.PermissionDenied)
	_, err = pb.NewCollectorServiceClient(e.dial(c.addr, &analyst)).Ingest(context.Background(), batch(heartbeat(4, 2, 3)))
	wantCode(t, "ingest with an analyst certificate", err, codes.PermissionDenied)
}

// TestOutOfOrderAndResync: late and repeated reports are acknowledged
// again; a delta on a base the store does not have asks for a snapshot.
func TestOutOfOrderAndResync(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	ac := e.agentClient(c, e.enroll(c, guidA))
	ingest(t, ac, snapshot(1, guidA, 0, logon("0x1", "alice")), delta(2, 1, 1, []*pb.LogonSession{logon("0x2", "bob")}))
	before := e.intervals()

	// An old report again (out of order, below the high-water mark).
	if r := ingest(t, ac, delta(2, 1, 1, nil, "0x1")); r.GetAcknowledgedSequence() != 2 || r.GetResyncRequired() {
		t.Fatalf("old report: %v", r)
	}
	if !equal(before, e.intervals()) {
		t.Fatal("an old report changed the store")
	}
	// Out of order inside a batch: refused whole.
	_, err := ac.Ingest(context.Background(), batch(heartbeat(4, 2, 3), heartbeat(3, 2, 2)))
	wantCode(t, "decreasing sequences", err, codes.InvalidArgument)
	// A gap: report 3 was lost, 4 is based on it.
	r := ingest(t, ac, heartbeat(5, 2, 4), delta(7, 6, 6, nil, "0x1"))
	if r.GetAcknowledgedSequence() != 5 || !r.GetResyncRequired() {
		t.Fatalf("delta on a missing base: %v, want ack 5 and resync", r)
	}
	if !equal(before, e.intervals()) {
		t.Fatal("an unapplicable delta changed the store")
	}
	// The agent resyncs with a snapshot.
	r = ingest(t, ac, snapshot(8, guidA, 7, logon("0x2", "bob")))
	if r.GetAcknowledgedSequence() != 8 || r.GetResyncRequired() {
		t.Fatalf("resync snapshot: %v", r)
	}
	want := []string{guidA + " 0x1 closed", guidA + " 0x2 open"}
	if got := e.intervals(); !equal(got, want) {
		t.Fatalf("after resync: %v, want %v", got, want)
	}
}

// TestRenewal: an agent renews with a new key and keeps its id; the new
// certificate works; an expired one renews by proof at Enroll.
func TestRenewal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	a := e.enroll(c, guidA)
	key, csr, _ := identity.NewAgentKeyAndCSR()
	resp, err := e.agentClient(c, a).Renew(context.Background(), &pb.RenewRequest{CsrDer: csr})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(resp.GetCertificateDer())
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.trust.AgentIdentityFromCert(leaf, time.Now())
	if err != nil || id.AgentID != a.id || id.MachineGUID != guidA {
		t.Fatalf("renewed certificate: %+v, %v", id, err)
	}
	renewed := &agent{id: a.id, guid: guidA, key: key, der: resp.GetCertificateDer(),
		cert: tls.Certificate{Certificate: [][]byte{resp.GetCertificateDer()}, PrivateKey: key}}
	// The previous certificate still works while the new one is unused (a
	// lost Renew response); once the new one is used, it is refused (C6;
	// TestStolenPreviousCertificate).
	ingest(t, e.agentClient(c, a), snapshot(1, guidA, 0, logon("0x1", "alice")))
	ingest(t, e.agentClient(c, renewed), heartbeat(2, 1, 1))
	stored, err := e.st.Agent(context.Background(), a.id)
	if err != nil || stored.CertSerial != id.Serial {
		t.Fatalf("store records serial %q, want %q (%v)", stored.CertSerial, id.Serial, err)
	}
	_, err = e.agentClient(c, renewed).Renew(context.Background(), &pb.RenewRequest{CsrDer: []byte("not a CSR")})
	wantCode(t, "renew with a malformed CSR", err, codes.InvalidArgument)
	// After a second renewal the first certificate is refused.
	key3, csr3, _ := identity.NewAgentKeyAndCSR()
	resp, err = e.agentClient(c, renewed).Renew(context.Background(), &pb.RenewRequest{CsrDer: csr3})
	if err != nil {
		t.Fatal(err)
	}
	renewed = &agent{id: a.id, guid: guidA, key: key3, der: resp.GetCertificateDer(),
		cert: tls.Certificate{Certificate: [][]byte{resp.GetCertificateDer()}, PrivateKey: key3}}
	_, err = e.agentClient(c, a).Ingest(context.Background(), batch(heartbeat(3, 1, 2)))
	wantCode(t, "ingest with a certificate two renewals old", err, codes.PermissionDenied)

	// Eight days later the certificate has expired: renew by proof.
	e.skew.Store(int64(8 * 24 * time.Hour))
	_, err = e.agentClient(c, renewed).Ingest(context.Background(), batch(heartbeat(4, 1, 3)))
	wantCode(t, "ingest with an expired certificate", err, codes.Unauthenticated)
	key2, csr2, _ := identity.NewAgentKeyAndCSR()
	proof, err := identity.SignRenewalProof(renewed.key, csr2)
	if err != nil {
		t.Fatal(err)
	}
	req := &pb.EnrollRequest{CsrDer: csr2, Host: &pb.Host{MachineGuid: guidA}, PreviousCertificateDer: renewed.der, RenewalProof: proof}
	er, err := pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Enroll(context.Background(), req)
	if err != nil || er.GetAgentId() != a.id {
		t.Fatalf("enroll by renewal proof: %v, %v", er, err)
	}
	_ = key2
	// The proof of an older certificate (not the latest) is refused.
	proof, _ = identity.SignRenewalProof(a.key, csr2)
	_, err = pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Enroll(context.Background(),
		&pb.EnrollRequest{CsrDer: csr2, Host: &pb.Host{MachineGuid: guidA}, PreviousCertificateDer: a.der, RenewalProof: proof})
	wantCode(t, "renewal proof of a superseded certificate", err, codes.Unauthenticated)
}

// TestDisabledAgent: a disabled agent is refused at once, on every call.
func TestDisabledAgent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	a := e.enroll(c, guidA)
	ac := e.agentClient(c, a)
	ingest(t, ac, snapshot(1, guidA, 0, logon("0x1", "alice")))
	if err := e.st.SetAgentDisabled(context.Background(), a.id, true); err != nil {
		t.Fatal(err)
	}
	before := e.intervals()
	_, err := ac.Ingest(context.Background(), batch(delta(2, 1, 1, nil, "0x1")))
	wantCode(t, "ingest by a disabled agent", err, codes.PermissionDenied)
	_, csr, _ := identity.NewAgentKeyAndCSR()
	_, err = ac.Renew(context.Background(), &pb.RenewRequest{CsrDer: csr})
	wantCode(t, "renew by a disabled agent", err, codes.PermissionDenied)
	if !equal(before, e.intervals()) {
		t.Fatal("a disabled agent changed the store")
	}
	// Its machine cannot simply enroll again either.
	key, csr, _ := identity.NewAgentKeyAndCSR()
	_ = key
	_, err = pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Enroll(context.Background(),
		&pb.EnrollRequest{EnrollmentSecret: e.secret, CsrDer: csr, Host: &pb.Host{MachineGuid: guidB}})
	if err != nil {
		t.Fatalf("enrolling another machine: %v", err)
	}
}

// TestAgentCannotWriteForAnotherHost: an agent's reports name its own host
// only; another GUID in a report is refused and nothing is stored.
func TestAgentCannotWriteForAnotherHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	a := e.enroll(c, guidA)
	b := e.enroll(c, guidB)
	ingest(t, e.agentClient(c, a), snapshot(1, guidA, 0, logon("0x1", "alice")))
	before := e.intervals()
	bc := e.agentClient(c, b)
	_, err := bc.Ingest(context.Background(), batch(snapshot(1, guidA, 1, logon("0x9", "mallory"))))
	wantCode(t, "snapshot for another host", err, codes.InvalidArgument)
	if !strings.Contains(status.Convert(err).Message(), "snapshot.host.machine_guid") {
		t.Errorf("the refusal does not name the field: %v", err)
	}
	d := delta(2, 1, 1, nil, "0x1")
	d.GetDelta().Host = &pb.Host{MachineGuid: strings.ToUpper("{" + guidA + "}")}
	_, err = bc.Ingest(context.Background(), batch(d))
	wantCode(t, "delta for another host", err, codes.InvalidArgument)
	// Enrolling the first host's GUID again is refused.
	_, csr, _ := identity.NewAgentKeyAndCSR()
	_, err = pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Enroll(context.Background(),
		&pb.EnrollRequest{EnrollmentSecret: e.secret, CsrDer: csr, Host: &pb.Host{MachineGuid: guidA}})
	wantCode(t, "enrolling an enrolled machine", err, codes.FailedPrecondition)
	if !equal(before, e.intervals()) {
		t.Fatal("the second agent changed the first host's history")
	}
}

// TestBadInputs: each bad input gets its status, writes nothing, and the
// collector keeps serving.
func TestBadInputs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, func(cfg *server.Config) {
		cfg.MaxMessageBytes = 64 << 10
		cfg.MaxSessionsPerSnapshot = 50
		cfg.MaxStringBytes = 512
	})
	a := e.enroll(c, guidA)
	ac := e.agentClient(c, a)
	ingest(t, ac, snapshot(1, guidA, 0, logon("0x1", "alice")))

	otherCA, _ := pki.NewCA("other CA", 24*time.Hour, time.Now())
	key, csr, _ := identity.NewAgentKeyAndCSR()
	foreign, _ := otherCA.SignAgentCSR(csr, a.id, guidA, time.Hour, time.Now())
	foreignCert := tls.Certificate{Certificate: [][]byte{foreign.DER}, PrivateKey: key}

	many := make([]*pb.LogonSession, 51)
	for i := range many {
		many[i] = logon(string(rune('a'+i%26))+strings.Repeat("x", i), "u")
	}
	huge := make([]*pb.LogonSession, 40)
	for i := range huge {
		huge[i] = logon(strings.Repeat("y", 10)+string(rune('a'+i)), strings.Repeat("z", 500))
		huge[i].Caption = strings.Repeat("c", 500)
		huge[i].Description = strings.Repeat("d", 500)
	}
	contradiction := logon("0x5", "eve")
	contradiction.LogonType = pb.LogonType_LOGON_TYPE_NETWORK // raw says 10
	noTime := snapshot(2, guidA, 1)
	noTime.GetSnapshot().TakenAt = nil
	// (A taken_at far ahead is accepted and corrected: clockskew_test.go.)
	old := snapshot(2, guidA, 1)
	old.GetSnapshot().TakenAt = timestamppb.New(time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC))
	longString := logon("0x6", strings.Repeat("n", 600))

	q, qctx := e.queryClient(c)
	noToken := pb.NewQueryServiceClient(e.dial(c.addr, nil))
	badToken := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer sa_nope")

	cases := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"ingest without a client certificate", func() error {
			_, err := pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Ingest(context.Background(), batch(heartbeat(2, 1, 1)))
			return err
		}, codes.Unauthenticated},
		{"renew without a client certificate", func() error {
			_, err := pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Renew(context.Background(), &pb.RenewRequest{CsrDer: csr})
			return err
		}, codes.Unauthenticated},
		// A Go client does not send a certificate the collector's list of
		// acceptable CAs does not name: the call has none.
		{"certificate from another CA", func() error {
			_, err := pb.NewCollectorServiceClient(e.dial(c.addr, &foreignCert)).Ingest(context.Background(), batch(heartbeat(2, 1, 1)))
			return err
		}, codes.Unauthenticated},
		// A client that sends it anyway fails the TLS handshake: a transport
		// failure, not an RPC status.
		{"certificate from another CA, forced", func() error {
			cfg := identity.ClientTLSConfig(e.roots, "localhost", nil)
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreignCert, nil }
			conn, err := grpc.NewClient(c.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
			if err != nil {
				return err
			}
			defer conn.Close()
			_, err = pb.NewCollectorServiceClient(conn).Ingest(context.Background(), batch(heartbeat(2, 1, 1)))
			return err
		}, codes.Unavailable},
		{"oversized message", func() error {
			_, err := ac.Ingest(context.Background(), batch(snapshot(2, guidA, 1, huge...), snapshot(3, guidA, 1, huge...),
				snapshot(4, guidA, 1, huge...)))
			return err
		}, codes.ResourceExhausted},
		{"too many sessions", func() error {
			_, err := ac.Ingest(context.Background(), batch(snapshot(2, guidA, 1, many...)))
			return err
		}, codes.InvalidArgument},
		{"string too long", func() error {
			_, err := ac.Ingest(context.Background(), batch(snapshot(2, guidA, 1, longString)))
			return err
		}, codes.InvalidArgument},
		{"enum contradicts raw", func() error {
			_, err := ac.Ingest(context.Background(), batch(snapshot(2, guidA, 1, contradiction)))
			return err
		}, codes.InvalidArgument},
		{"missing taken_at", func() error { _, err := ac.Ingest(context.Background(), batch(noTime)); return err }, codes.InvalidArgument},
		{"taken_at before 1990", func() error { _, err := ac.Ingest(context.Background(), batch(old)); return err }, codes.InvalidArgument},
		{"sequence 0", func() error { _, err := ac.Ingest(context.Background(), batch(heartbeat(0, 1, 1))); return err }, codes.InvalidArgument},
		{"heartbeat without base", func() error { _, err := ac.Ingest(context.Background(), batch(heartbeat(2, 0, 1))); return err }, codes.InvalidArgument},
		{"empty report", func() error { _, err := ac.Ingest(context.Background(), batch(&pb.Report{Sequence: 2})); return err }, codes.InvalidArgument},
		{"empty batch", func() error { _, err := ac.Ingest(context.Background(), &pb.IngestRequest{}); return err }, codes.InvalidArgument},
		{"valid then invalid report: nothing stored", func() error {
			_, err := ac.Ingest(context.Background(), batch(delta(2, 1, 1, nil, "0x1"), snapshot(3, guidA, 2, contradiction)))
			return err
		}, codes.InvalidArgument},
		{"enroll with a bad secret", func() error {
			_, err := pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Enroll(context.Background(),
				&pb.EnrollRequest{EnrollmentSecret: "nope", CsrDer: csr, Host: &pb.Host{MachineGuid: guidB}})
			return err
		}, codes.Unauthenticated},
		{"enroll with a malformed CSR", func() error {
			_, err := pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Enroll(context.Background(),
				&pb.EnrollRequest{EnrollmentSecret: e.secret, CsrDer: []byte{0x30, 0x03, 1, 2, 3}, Host: &pb.Host{MachineGuid: guidB}})
			return err
		}, codes.InvalidArgument},
		{"enroll with a malformed GUID", func() error {
			_, err := pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Enroll(context.Background(),
				&pb.EnrollRequest{EnrollmentSecret: e.secret, CsrDer: csr, Host: &pb.Host{MachineGuid: "'; DROP TABLE agent; --"}})
			return err
		}, codes.InvalidArgument},
		{"query without credentials", func() error {
			_, err := noToken.ListHosts(context.Background(), &pb.ListHostsRequest{})
			return err
		}, codes.Unauthenticated},
		{"query with a bad token", func() error { _, err := noToken.ListHosts(badToken, &pb.ListHostsRequest{}); return err }, codes.Unauthenticated},
		{"SQL-looking host", func() error {
			r, err := q.WhoWasOn(qctx, &pb.WhoWasOnRequest{Host: "x' OR '1'='1", At: at(0)})
			if err == nil && len(r.GetLogonSessions())+len(r.GetServerSessions()) > 0 {
				t.Errorf("SQL-looking host matched sessions: %v", r)
			}
			return err
		}, codes.OK},
		{"SQL-looking account", func() error {
			_, err := q.AccountTimeline(qctx, &pb.AccountTimelineRequest{Account: `x'; DELETE FROM logon_session; --`, StartTime: at(-1), EndTime: at(1)})
			return err
		}, codes.InvalidArgument},
		{"SQL-looking account with a backslash", func() error {
			r, err := q.AccountTimeline(qctx, &pb.AccountTimelineRequest{Account: `CORP\x' OR 1=1; --`, StartTime: at(-60), EndTime: at(60)})
			if err == nil && len(r.GetLogonSessions()) > 0 {
				t.Errorf("SQL-looking account matched sessions: %v", r)
			}
			return err
		}, codes.OK},
		{"inverted range", func() error {
			_, err := q.AccountTimeline(qctx, &pb.AccountTimelineRequest{Account: `CORP\alice`, StartTime: at(1), EndTime: at(-1)})
			return err
		}, codes.InvalidArgument},
		{"missing range", func() error {
			_, err := q.ListServerSessions(qctx, &pb.ListServerSessionsRequest{FromComputer: "x"})
			return err
		}, codes.InvalidArgument},
		{"page size too large", func() error { _, err := q.ListHosts(qctx, &pb.ListHostsRequest{PageSize: 5000}); return err }, codes.InvalidArgument},
		{"forged page token", func() error { _, err := q.ListHosts(qctx, &pb.ListHostsRequest{PageToken: "q1.AAAA"}); return err }, codes.InvalidArgument},
		{"unknown logon type", func() error {
			_, err := q.ListOpenSessions(qctx, &pb.ListOpenSessionsRequest{LogonTypes: []pb.LogonType{99}})
			return err
		}, codes.InvalidArgument},
	}
	health := healthpb.NewHealthClient(e.dial(c.addr, nil))
	for _, tc := range cases {
		before, agents := e.intervals(), e.rowCount("agent")
		err := tc.call()
		if got := status.Code(err); got != tc.want {
			t.Errorf("%s: got %v (%v), want %v", tc.name, got, err, tc.want)
		}
		if after := e.intervals(); !equal(before, after) || e.rowCount("agent") != agents {
			t.Errorf("%s: the store changed:\n%v\n%v", tc.name, before, after)
		}
		if _, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("after %s the collector does not serve: %v", tc.name, err)
		}
	}
	// And it still ingests.
	if r := ingest(t, ac, heartbeat(2, 1, 1)); r.GetAcknowledgedSequence() != 2 {
		t.Fatalf("ack after bad inputs: %v", r)
	}
}

// TestStoreDownPushesBack: with the store unreachable the collector answers
// UNAVAILABLE with a RetryInfo, and comes back with the store.
func TestStoreDownPushesBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	a := e.enroll(c, guidA)
	// A second collector whose store points at a port nobody listens on.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "postgres://x:x@" + lis.Addr().String() + "/x?connect_timeout=1"
	lis.Close()
	pool, err := pgxpool.New(context.Background(), dead) // connects lazily
	if err != nil {
		t.Fatal(err)
	}
	deadStore := store.New(pool)
	t.Cleanup(deadStore.Close)
	d := e.start(deadStore, nil)
	_, err = e.agentClient(d, a).Ingest(context.Background(), batch(snapshot(1, guidA, 0, logon("0x1", "alice"))))
	wantCode(t, "ingest with the store down", err, codes.Unavailable)
	var retry *errdetails.RetryInfo
	for _, det := range status.Convert(err).Details() {
		if r, ok := det.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
		t.Fatalf("no RetryInfo in %v", status.Convert(err).Proto())
	}
	// The working collector takes the same batch.
	ingest(t, e.agentClient(c, a), snapshot(1, guidA, 0, logon("0x1", "alice")))
}

// TestTwoCollectors: two collectors on one database take one agent's
// batches, sent to both at once, without duplicating an interval.
func TestTwoCollectors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c1 := e.start(nil, nil)
	c2 := e.start(nil, nil)
	a := e.enroll(c1, guidA)
	b := e.enroll(c2, guidB)
	clients := []pb.CollectorServiceClient{e.agentClient(c1, a), e.agentClient(c2, a)}
	bclients := []pb.CollectorServiceClient{e.agentClient(c1, b), e.agentClient(c2, b)}

	reports := []*pb.Report{snapshot(1, guidA, 0, logon("0x1", "alice"), logon("0x2", "bob"))}
	base := uint64(1)
	for i := 2; i <= 20; i++ {
		id := "0x" + string(rune('a'+i))
		reports = append(reports, delta(uint64(i), base, i, []*pb.LogonSession{logon(id, "u")}, "0x"+string(rune('a'+i-1))))
		base = uint64(i)
	}
	breports := []*pb.Report{snapshot(1, guidB, 0, logon("0x1", "carol"))}
	// Each batch of two reports goes to both collectors at once.
	for i := 0; i < len(reports); i += 2 {
		var wg sync.WaitGroup
		for k := range clients {
			for _, cl := range []pb.CollectorServiceClient{clients[k], bclients[k]} {
				rs := reports[i:min(i+2, len(reports))]
				if cl == bclients[k] {
					if i > 0 {
						continue
					}
					rs = breports
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := cl.Ingest(context.Background(), batch(rs...)); err != nil {
						t.Errorf("Ingest %d: %v", i, err)
					}
				}()
			}
		}
		wg.Wait()
	}
	got := e.intervals()
	want := []string{guidA + " 0x1 open", guidA + " 0x2 open"}
	for i := 2; i <= 20; i++ {
		state := "closed"
		if i == 20 {
			state = "open"
		}
		want = append(want, guidA+" 0x"+string(rune('a'+i))+" "+state)
	}
	want = append(want, guidB+" 0x1 open")
	slices.Sort(want)
	if !equal(got, want) {
		t.Fatalf("two collectors stored:\n%v\nwant\n%v", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestRestartLosesNothingAcknowledged: the collector stops in the middle of
// a stream of batches; a new one on the same database takes the agent's
// resends; everything acknowledged is stored, once.
func TestRestartLosesNothingAcknowledged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c1 := e.start(nil, nil)
	a := e.enroll(c1, guidA)

	var reports []*pb.Report
	reports = append(reports, snapshot(1, guidA, 0, logon("0x1", "alice")))
	for i := 2; i <= 30; i++ {
		reports = append(reports, delta(uint64(i), uint64(i-1), i, []*pb.LogonSession{logon("0x"+string(rune('a'+i)), "u")}))
	}
	// The agent's spool: it removes what is acknowledged.
	spool := reports
	send := func(cl pb.CollectorServiceClient) error {
		n := min(3, len(spool))
		r, err := cl.Ingest(context.Background(), batch(spool[:n]...))
		if err != nil {
			return err
		}
		for len(spool) > 0 && spool[0].GetSequence() <= r.GetAcknowledgedSequence() {
			spool = spool[1:]
		}
		return nil
	}
	cl := e.agentClient(c1, a)
	stopped := make(chan struct{})
	var acked atomic.Int64
	go func() {
		// A hard stop once a few batches are acknowledged: calls in flight
		// are cut off wherever they are, commit included.
		for acked.Load() < 6 {
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		c1.srv.Shutdown(ctx)
		close(stopped)
	}()
	for len(spool) > 0 {
		if err := send(cl); err != nil {
			break
		}
		acked.Store(int64(reports[len(reports)-len(spool)-1].GetSequence()))
	}
	<-stopped
	// Everything acknowledged so far is stored.
	stored := len(e.intervals())
	if int64(stored) < acked.Load() {
		t.Fatalf("%d reports acknowledged, only %d intervals stored", acked.Load(), stored)
	}
	c2 := e.start(nil, nil)
	cl = e.agentClient(c2, a)
	for len(spool) > 0 {
		if err := send(cl); err != nil {
			t.Fatalf("after restart: %v", err)
		}
	}
	if got := len(e.intervals()); got != 30 {
		t.Fatalf("%d intervals after the restart, want 30: %v", got, e.intervals())
	}
	t.Logf("acknowledged before the restart: %d of 30", acked.Load())
}

// TestMetricsAndHealth: the health service serves, the metrics handler
// exports the collector's series.
func TestMetricsAndHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	a := e.enroll(c, guidA)
	ingest(t, e.agentClient(c, a), snapshot(1, guidA, 0, logon("0x1", "alice")))
	h := healthpb.NewHealthClient(e.dial(c.addr, nil))
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "sessionaudit.v1.CollectorService"})
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health: %v, %v", r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Reflection, for grpcurl, when enabled.
	r := e.start(nil, func(cfg *server.Config) { cfg.EnableReflection = true })
	stream, err := reflectionpb.NewServerReflectionClient(e.dial(r.addr, nil)).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	list, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	if !strings.Contains(fmt.Sprint(list.GetListServicesResponse()), "sessionaudit.v1.QueryService") {
		t.Errorf("reflection lists %v", list.GetListServicesResponse())
	}
	stream.CloseSend()

	rec := httptest.NewRecorder()
	c.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, name := range []string{"sessionaudit_batches_total{result=\"ok\"} 1", "sessionaudit_ingest_seconds_count 1",
		"sessionaudit_agents_connected 1", "sessionaudit_sessions_total{kind=\"logon\"} 1", "sessionaudit_enrollments_total{result=\"ok\"} 1"} {
		if !strings.Contains(body, name) {
			t.Errorf("metrics lack %q", name)
		}
	}
}

// TestPlaintextDev: without TLS the collector listens on loopback only,
// serves token queries, refuses agent calls, and says so in its metrics.
func TestPlaintextDev(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := server.Config{CA: e.agentCA, InsecurePlaintextDev: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv, err := server.New(cfg, e.st)
	if err != nil {
		t.Fatal(err)
	}
	wide, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer wide.Close()
	if err := srv.Serve(wide); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("Serve on 0.0.0.0 without TLS: %v", err)
	}
	srv, err = server.New(cfg, e.st)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	defer srv.Shutdown(context.Background())
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.token)
	if _, err := pb.NewQueryServiceClient(conn).ListHosts(ctx, &pb.ListHostsRequest{}); err != nil {
		t.Fatalf("token query without TLS: %v", err)
	}
	_, err = pb.NewCollectorServiceClient(conn).Ingest(context.Background(), batch(heartbeat(2, 1, 1)))
	wantCode(t, "ingest without TLS", err, codes.Unauthenticated)
	rec := httptest.NewRecorder()
	srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "sessionaudit_insecure_plaintext 1") {
		t.Error("metrics do not say the collector runs without TLS")
	}
}

// lockHost holds the host's row lock, so that every Ingest for it waits in
// the store as it would on a slow database; the returned func releases it.
func (e *env) lockHost(guid string) func() {
	e.t.Helper()
	ctx := context.Background()
	tx, err := e.st.Pool().Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM host WHERE machine_guid = $1 FOR UPDATE`, guid); err != nil {
		e.t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { tx.Rollback(ctx) }) }
	e.t.Cleanup(release)
	return release
}

// TestSlowStorePushesBack: with the store slow, an agent gets
// RESOURCE_EXHAUSTED beyond its in-flight limit, others get UNAVAILABLE
// with a RetryInfo once the store slots are busy, a write that outlives
// IngestTimeout is pushed back (and not stored), and Shutdown lets a batch
// in flight finish.
func TestSlowStorePushesBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, func(cfg *server.Config) {
		cfg.MaxInFlightPerAgent = 1
		cfg.MaxConcurrentIngests = 1
		cfg.IngestQueueWait = 100 * time.Millisecond
		cfg.IngestTimeout = time.Second
	})
	a := e.enroll(c, guidA)
	b := e.enroll(c, guidB)
	ac, bc := e.agentClient(c, a), e.agentClient(c, b)
	ingest(t, ac, snapshot(1, guidA, 0, logon("0x1", "alice")))
	before := e.intervals()

	release := e.lockHost(guidA)
	slow := make(chan error, 1)
	go func() {
		_, err := ac.Ingest(context.Background(), batch(delta(2, 1, 1, []*pb.LogonSession{logon("0x2", "bob")})))
		slow <- err
	}()
	time.Sleep(300 * time.Millisecond) // the batch is waiting in the store
	_, err := ac.Ingest(context.Background(), batch(heartbeat(3, 1, 2)))
	wantCode(t, "second batch in flight", err, codes.ResourceExhausted)
	_, err = bc.Ingest(context.Background(), batch(snapshot(1, guidB, 0)))
	wantCode(t, "batch while every store slot is busy", err, codes.Unavailable)
	if len(status.Convert(err).Details()) == 0 {
		t.Error("no RetryInfo with the pushback")
	}
	// The store stays slow beyond IngestTimeout: pushed back, not stored.
	wantCode(t, "batch beyond IngestTimeout", <-slow, codes.Unavailable)
	if !equal(before, e.intervals()) {
		t.Fatal("a batch that timed out was stored")
	}
	release()

	// Shutdown waits for the batch in flight.
	release = e.lockHost(guidA)
	go func() {
		r, err := ac.Ingest(context.Background(), batch(delta(2, 1, 1, []*pb.LogonSession{logon("0x2", "bob")})))
		if err == nil && r.GetAcknowledgedSequence() != 2 {
			err = status.Errorf(codes.Internal, "ack %d", r.GetAcknowledgedSequence())
		}
		slow <- err
	}()
	time.Sleep(300 * time.Millisecond)
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- c.srv.Shutdown(ctx)
	}()
	time.Sleep(200 * time.Millisecond)
	release()
	if err := <-slow; err != nil {
		t.Fatalf("batch in flight during Shutdown: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := e.intervals(); len(got) != 2 {
		t.Fatalf("after shutdown: %v", got)
	}
}

// TestEnrollNameClash: an agent enrolling for a host name that another
// host with an enabled agent has is enrolled, and alerted on (C12); a
// disabled agent's host does not count.
func TestEnrollNameClash(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	clashes := func() string {
		rec := httptest.NewRecorder()
		c.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, line := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(line, "sessionaudit_enrollment_name_clashes_total ") {
				return strings.TrimPrefix(line, "sessionaudit_enrollment_name_clashes_total ")
			}
		}
		return "absent"
	}
	// enroll names the host "ws-" and the GUID's first four characters.
	first := e.enroll(c, "abcd0000-0000-0000-0000-000000000001")
	if got := clashes(); got != "0" {
		t.Fatalf("after one host: clashes = %s, want 0", got)
	}
	e.enroll(c, "abce0000-0000-0000-0000-000000000002")
	if got := clashes(); got != "0" {
		t.Fatalf("after a host of another name: clashes = %s, want 0", got)
	}
	e.enroll(c, "abcd0000-0000-0000-0000-000000000003") // ws-abcd again
	if got := clashes(); got != "1" {
		t.Fatalf("after a host taking ws-abcd: clashes = %s, want 1", got)
	}
	guids, err := e.st.HostsNamedLike(context.Background(), "WS-ABCD", "corp", "abcd0000-0000-0000-0000-000000000003")
	if err != nil || len(guids) != 1 || guids[0] != first.guid {
		t.Fatalf("HostsNamedLike = %v, %v; want [%s]", guids, err, first.guid)
	}
	if err := e.st.SetAgentDisabled(context.Background(), first.id, true); err != nil {
		t.Fatal(err)
	}
	guids, err = e.st.HostsNamedLike(context.Background(), "ws-abcd", "CORP", "abcd0000-0000-0000-0000-000000000003")
	if err != nil || len(guids) != 0 {
		t.Fatalf("HostsNamedLike after disabling the first agent = %v, %v; want none", guids, err)
	}
}
