package uplink

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// testPKI is a minimal CA of the test's own, with a collector certificate
// for "localhost" and 127.0.0.1. It issues agent certificates named as the
// protocol says (proto/identity), so that the agent's tests need nothing of
// the collector's packages.
type testPKI struct {
	caCert     *x509.Certificate
	caKey      *ecdsa.PrivateKey
	serverCert tls.Certificate
	pool       *x509.CertPool
}

// testClockSkew backdates certificates as the collector's CA does.
const testClockSkew = 5 * time.Minute

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	now := time.Now()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "uplink test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{caCert: caCert, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serverDER, err := p.sign(&x509.Certificate{
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, &serverKey.PublicKey, 30*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(serverDER)
	if err != nil {
		t.Fatal(err)
	}
	p.serverCert = tls.Certificate{Certificate: [][]byte{serverDER, der}, PrivateKey: serverKey, Leaf: leaf}
	return p
}

// sign issues tmpl for pub, valid from now less testClockSkew for validity.
func (p *testPKI) sign(tmpl *x509.Certificate, pub any, validity time.Duration, now time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(2))
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-testClockSkew), now.Add(validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	return x509.CreateCertificate(rand.Reader, tmpl, p.caCert, pub, p.caKey)
}

// issuedAgent is what Enroll and Renew return.
type issuedAgent struct {
	DER, CADER           []byte
	NotAfter, RenewAfter time.Time
}

// signAgentCSR issues the agent certificate the collector would for csr:
// the identity URIs of agentID and guid, client authentication only,
// renewal due at two thirds of the lifetime.
func (p *testPKI) signAgentCSR(csrDER []byte, agentID, guid string, validity time.Duration, now time.Time) (issuedAgent, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return issuedAgent{}, fmt.Errorf("parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return issuedAgent{}, fmt.Errorf("CSR signature: %w", err)
	}
	if err := identity.ValidateAgentID(agentID); err != nil {
		return issuedAgent{}, err
	}
	if err := identity.ValidateMachineGUID(guid); err != nil {
		return issuedAgent{}, err
	}
	der, err := p.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: agentID},
		URIs:        []*url.URL{identity.AgentURI(agentID), identity.HostURI(guid)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, csr.PublicKey, validity, now)
	if err != nil {
		return issuedAgent{}, err
	}
	notBefore := now.Add(-testClockSkew)
	return issuedAgent{DER: der, CADER: p.caCert.Raw, NotAfter: now.Add(validity).Truncate(time.Second),
		RenewAfter: notBefore.Add(now.Add(validity).Sub(notBefore) * 2 / 3)}, nil
}

// agentNames checks that cert was issued by the test CA and is valid at now
// (when now is not zero), and returns the agent and machine it names.
func (p *testPKI) agentNames(cert *x509.Certificate, now time.Time) (agentID, guid string, err error) {
	if err := cert.CheckSignatureFrom(p.caCert); err != nil {
		return "", "", fmt.Errorf("certificate %s not issued by the test CA: %w", cert.SerialNumber.Text(16), err)
	}
	if !now.IsZero() && (now.Before(cert.NotBefore) || now.After(cert.NotAfter)) {
		return "", "", fmt.Errorf("certificate %s valid %v to %v, not at %v", cert.SerialNumber.Text(16), cert.NotBefore, cert.NotAfter, now)
	}
	return identity.AgentNames(cert)
}

// issue makes an agent identity as Enroll would, valid for validity from
// now.
func (p *testPKI) issue(t *testing.T, agentID, guid string, validity time.Duration, now time.Time) *Identity {
	t.Helper()
	key, csr, err := identity.NewAgentKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	ic, err := p.signAgentCSR(csr, agentID, guid, validity, now)
	if err != nil {
		t.Fatal(err)
	}
	id, err := newIdentity(key, ic.DER, [][]byte{ic.CADER}, ic.NotAfter, ic.RenewAfter)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

const (
	testGUID  = "0a1b2c3d-0000-4000-8000-0000000000aa"
	testAgent = "agent-1"
)

func pemChain(id *Identity) []byte { return identity.EncodeCertificatesPEM(id.ChainDER...) }

func testHost() *pb.Host { return &pb.Host{MachineGuid: testGUID, Hostname: "ws-test", Domain: "CORP"} }
