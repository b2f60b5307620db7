package server_test

// End-to-end tests of what a compromised or cloned agent may not do
// (docs/design/0003-security.md, the section of 2026-12-04): use a stolen
// previous certificate once its successor is used (C6), or take another
// host's name unnoticed (C12).

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sessionaudit/sessionaudit/proto/identity"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server"
	"google.golang.org/grpc/codes"
)

// logBuffer collects a collector's log lines (safe for its goroutines).
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the log lines of level that contain every one of words.
func (l *logBuffer) lines(level string, words ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if !strings.Contains(line, "level="+level) {
			continue
		}
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// startLogged starts a collector whose log (WARN and above) goes to a
// buffer.
func (e *env) startLogged() (*collector, *logBuffer) {
	logs := &logBuffer{}
	c := e.start(nil, func(cfg *server.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	return c, logs
}

// metric returns the value of the series named exactly series ("name" or
// `name{label="v"}`), "absent" when there is none.
func (c *collector) metric(series string) string {
	rec := httptest.NewRecorder()
	c.srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return "absent"
}

// renew renews a's certificate with a new key and returns the agent with
// the new certificate.
func (e *env) renew(t *testing.T, c *collector, a *agent) *agent {
	t.Helper()
	key, csr, err := identity.NewAgentKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.agentClient(c, a).Renew(context.Background(), &pb.RenewRequest{CsrDer: csr})
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	return &agent{id: a.id, guid: a.guid, key: key, der: resp.GetCertificateDer(),
		cert: tls.Certificate{Certificate: [][]byte{resp.GetCertificateDer()}, PrivateKey: key}}
}

func serialOf(t *testing.T, a *agent) string {
	t.Helper()
	leaf, err := x509.ParseCertificate(a.der)
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Text(16)
}

// A thief holding an agent's previous certificate and key (a copied key, a
// cloned machine) is refused, on Ingest and on Renew, once the agent's
// newer certificate has been used; the refusal is an ALERT at ERROR level,
// counted in sessionaudit_agent_key_reuse_total, and the agent is flagged
// in the store, in the agent list and in the hosts list. Before, both kept
// ingesting and renewing, with a WARN line only.
func TestStolenPreviousCertificate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, logs := e.startLogged()
	ctx := context.Background()

	// The real agent renews and uses its new certificate; the thief keeps
	// the one before.
	real1 := e.enroll(c, guidA)
	thief := real1
	real2 := e.renew(t, c, real1)
	ingest(t, e.agentClient(c, real2), snapshot(1, guidA, 0, logon("0x1", "alice")))

	_, err := e.agentClient(c, thief).Ingest(ctx, batch(snapshot(2, guidA, 1, logon("0x66", "mallory"))))
	wantCode(t, "ingest with the previous certificate after the latest was used", err, codes.PermissionDenied)
	_, csr, _ := identity.NewAgentKeyAndCSR()
	_, err = e.agentClient(c, thief).Renew(ctx, &pb.RenewRequest{CsrDer: csr})
	wantCode(t, "renew with the previous certificate after the latest was used", err, codes.PermissionDenied)
	if got := c.metric(`sessionaudit_agent_key_reuse_total{method="Ingest"}`); got != "1" {
		t.Errorf("key reuse on Ingest counted %s, want 1", got)
	}
	if got := c.metric(`sessionaudit_agent_key_reuse_total{method="Renew"}`); got != "1" {
		t.Errorf("key reuse on Renew counted %s, want 1", got)
	}
	if alerts := logs.lines("ERROR", "ALERT", real1.id, serialOf(t, thief)); len(alerts) != 2 {
		t.Errorf("%d ERROR ALERT lines naming the agent and the stolen serial, want 2:\n%s", len(alerts), logs)
	}
	stored, err := e.st.Agent(ctx, real1.id)
	if err != nil {
		t.Fatal(err)
	}
	if stored.KeyReuseAt.IsZero() || !strings.EqualFold(stored.KeyReuseSerial, serialOf(t, thief)) || stored.CertUsedAt.IsZero() {
		t.Errorf("stored agent: key reuse at %v serial %q (want the thief's %s), latest used at %v",
			stored.KeyReuseAt, stored.KeyReuseSerial, serialOf(t, thief), stored.CertUsedAt)
	}
	q, qctx := e.queryClient(c)
	hosts, err := q.ListHosts(qctx, &pb.ListHostsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts.GetHosts()) != 1 || hosts.GetHosts()[0].GetAgentKeyReuseAt() == nil {
		t.Errorf("hosts list does not flag the host: %v", hosts.GetHosts())
	}
	// Only the real agent's session is stored, and it goes on working.
	ingest(t, e.agentClient(c, real2), heartbeat(2, 1, 1))
	if got, want := e.intervals(), []string{guidA + " 0x1 open"}; !equal(got, want) {
		t.Errorf("intervals %v, want %v", got, want)
	}

	// The other order: the thief renews first and uses the new
	// certificate; then the real agent's (previous) certificate is refused,
	// and the host is flagged all the same.
	realB := e.enroll(c, guidB)
	thiefB := e.renew(t, c, realB)
	ingest(t, e.agentClient(c, thiefB), snapshot(1, guidB, 0, logon("0x66", "mallory")))
	_, err = e.agentClient(c, realB).Ingest(ctx, batch(snapshot(2, guidB, 1, logon("0x1", "bob"))))
	wantCode(t, "the real agent after the thief's renewal was used", err, codes.PermissionDenied)
	if stored, err := e.st.Agent(ctx, realB.id); err != nil || stored.KeyReuseAt.IsZero() {
		t.Errorf("agent %s not flagged: %+v, %v", realB.id, stored, err)
	}

	// A lost Renew response is not a clone: the previous certificate works
	// while the new one is unused, and the retried renewal too.
	const guidC = "0a1b2c3d-0000-4000-8000-00000000000c"
	a := e.enroll(c, guidC)
	_ = e.renew(t, c, a) // response lost
	ingest(t, e.agentClient(c, a), snapshot(1, guidC, 0, logon("0x1", "carol")))
	a3 := e.renew(t, c, a)
	ingest(t, e.agentClient(c, a3), heartbeat(2, 1, 1))
	if stored, err := e.st.Agent(ctx, a.id); err != nil || !stored.KeyReuseAt.IsZero() {
		t.Errorf("agent %s flagged after a lost Renew response: %+v, %v", a.id, stored, err)
	}
	if got := c.metric(`sessionaudit_agent_key_reuse_total{method="Ingest"}`); got != "2" {
		t.Errorf("key reuse on Ingest counted %s, want 2", got)
	}
}

// hostReport is a snapshot of guid reporting the host name hostname.
func hostReport(seq uint64, guid, hostname string, min int, sessions ...*pb.LogonSession) *pb.Report {
	r := snapshot(seq, guid, min, sessions...)
	r.GetSnapshot().Host.Hostname = hostname
	return r
}

// A host enrolled as MHOST that later reports itself as DC37, the name of
// another host: the rename is recorded in its name history and raised as
// an ALERT with a metric, and a query by DC37 answers both hosts' sessions
// marked ambiguous, with both machine GUIDs.
func TestRenameToAnotherHostsName(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c, logs := e.startLogged()
	ctx := context.Background()
	const guidDC, guidM = "0a1b2c3d-0000-4000-8000-0000000000dc", "0a1b2c3d-0000-4000-8000-00000000000e"
	dc := e.enroll(c, guidDC)
	ingest(t, e.agentClient(c, dc), hostReport(1, guidDC, "DC37", 0, logon("0x1", "alice")))
	m := e.enroll(c, guidM)
	ingest(t, e.agentClient(c, m), hostReport(1, guidM, "MHOST", 0))
	if got := c.metric("sessionaudit_rename_name_clashes_total"); got != "0" {
		t.Fatalf("renames to free names counted as clashes: %s", got)
	}
	ingest(t, e.agentClient(c, m), hostReport(2, guidM, "DC37", 1, logon("0x66", "mallory")))
	if got := c.metric("sessionaudit_rename_name_clashes_total"); got != "1" {
		t.Errorf("rename clashes = %s, want 1", got)
	}
	if alerts := logs.lines("ERROR", "ALERT", guidM, guidDC, "hostname=DC37", "from_hostname=MHOST"); len(alerts) != 1 {
		t.Errorf("%d ERROR ALERT lines naming both hosts and both names, want 1:\n%s", len(alerts), logs)
	}
	hist, err := e.st.HostNameHistory(ctx, guidM)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range hist {
		names = append(names, n.Hostname)
		if n.Since.IsZero() || (n.Hostname != "DC37" && n.Until.IsZero()) {
			t.Errorf("name %s: since %v until %v", n.Hostname, n.Since, n.Until)
		}
	}
	if got, want := strings.Join(names, ","), "ws-0a1b,MHOST,DC37"; got != want {
		t.Errorf("name history %s, want %s", got, want)
	}

	q, qctx := e.queryClient(c)
	who, err := q.WhoWasOn(qctx, &pb.WhoWasOnRequest{Host: "dc37", At: at(2)})
	if err != nil {
		t.Fatal(err)
	}
	var amb []string
	for _, h := range who.GetAmbiguousHosts() {
		amb = append(amb, h.GetMachineGuid()+"="+h.GetHostname())
	}
	if got, want := strings.Join(amb, " "), guidM+"=DC37 "+guidDC+"=DC37"; got != want { // by machine GUID
		t.Errorf("WhoWasOn(dc37) ambiguous hosts %q, want %q", got, want)
	}
	if n := len(who.GetLogonSessions()); n != 2 {
		t.Errorf("WhoWasOn(dc37): %d logon sessions, want both hosts' 2", n)
	}
	who, err = q.WhoWasOn(qctx, &pb.WhoWasOnRequest{Host: guidDC, At: at(2)})
	if err != nil {
		t.Fatal(err)
	}
	if len(who.GetAmbiguousHosts()) != 0 || len(who.GetLogonSessions()) != 1 || who.GetLogonSessions()[0].GetHost().GetMachineGuid() != guidDC {
		t.Errorf("WhoWasOn(the DC's GUID): %v", who)
	}
	list, err := q.ListLogonSessions(qctx, &pb.ListLogonSessionsRequest{Host: "DC37", StartTime: at(-60), EndTime: at(60)})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetAmbiguousHosts()) != 2 || len(list.GetLogonSessions()) != 2 {
		t.Errorf("ListLogonSessions(DC37): %d ambiguous hosts, %d sessions; want 2 and 2", len(list.GetAmbiguousHosts()), len(list.GetLogonSessions()))
	}
	open, err := q.ListOpenSessions(qctx, &pb.ListOpenSessionsRequest{Host: "DC37"})
	if err != nil {
		t.Fatal(err)
	}
	if len(open.GetAmbiguousHosts()) != 2 {
		t.Errorf("ListOpenSessions(DC37): ambiguous hosts %v", open.GetAmbiguousHosts())
	}
	smb, err := q.ListServerSessions(qctx, &pb.ListServerSessionsRequest{ToHost: "DC37", StartTime: at(-60), EndTime: at(60)})
	if err != nil {
		t.Fatal(err)
	}
	if len(smb.GetAmbiguousHosts()) != 2 {
		t.Errorf("ListServerSessions(to DC37): ambiguous hosts %v", smb.GetAmbiguousHosts())
	}
}
