package uplink

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/pki"
)

// testPKI is a CA with a collector certificate for "localhost" and
// 127.0.0.1.
type testPKI struct {
	ca         *pki.CA
	serverCert tls.Certificate
	pool       *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA("uplink test CA", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 30*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	return &testPKI{ca: ca, serverCert: sc, pool: pool}
}

// issue makes an agent identity as Enroll would, valid for validity from
// now.
func (p *testPKI) issue(t *testing.T, agentID, guid string, validity time.Duration, now time.Time) *Identity {
	t.Helper()
	key, csr, err := pki.NewAgentKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	ic, err := p.ca.SignAgentCSR(csr, agentID, guid, validity, now)
	if err != nil {
		t.Fatal(err)
	}
	id, err := newIdentity(key, ic.DER, ic.ChainDER, ic.Certificate.NotAfter, ic.RenewAfter)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

const (
	testGUID  = "0a1b2c3d-0000-4000-8000-0000000000aa"
	testAgent = "agent-1"
)

func pemChain(id *Identity) []byte { return pki.EncodeCertificatesPEM(id.ChainDER...) }

func testHost() *pb.Host { return &pb.Host{MachineGuid: testGUID, Hostname: "ws-test", Domain: "CORP"} }
