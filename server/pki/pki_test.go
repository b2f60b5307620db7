package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	testAgentID = "3f6c1d2e-8a4b-4c5d-9e0f-112233445566"
	testGUID    = "6f1c2a34-9b1e-4c3a-8d2f-0a1b2c3d4e5f"
	otherGUID   = "0a0b0c0d-1111-4222-8333-444455556666"
)

// rsa2048 is one RSA key shared by the tests: generating them is slow.
var rsa2048 = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newTestCA(t *testing.T, name string, now time.Time) *CA {
	t.Helper()
	ca, err := NewCA(name, 365*24*time.Hour, now)
	if err != nil {
		t.Fatalf("NewCA(%q): %v", name, err)
	}
	return ca
}

func newTrust(t *testing.T, agent, analyst *CA) *Trust {
	t.Helper()
	tr, err := NewTrust([]*x509.Certificate{agent.Certificate()}, []*x509.Certificate{analyst.Certificate()})
	if err != nil {
		t.Fatalf("NewTrust: %v", err)
	}
	return tr
}

func csrFor(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest(%T): %v", key, err)
	}
	return der
}

func ecKey(t *testing.T, c elliptic.Curve) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignAgentCSRRoundTrip(t *testing.T) {
	agentCA := newTestCA(t, "agents", testNow.Add(-time.Hour))
	analystCA := newTestCA(t, "analysts", testNow.Add(-time.Hour))
	trust := newTrust(t, agentCA, analystCA)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	agentKey, agentCSR, err := identity.NewAgentKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		key  crypto.PublicKey
		csr  []byte
	}{
		{"NewAgentKeyAndCSR", agentKey.Public(), agentCSR},
		{"ECDSA P-384", nil, nil},
		{"Ed25519", edKey.Public(), csrFor(t, edKey, nil)},
		{"RSA 2048", rsa2048().Public(), csrFor(t, rsa2048(), nil)},
	}
	p384 := ecKey(t, elliptic.P384())
	tests[1].key, tests[1].csr = p384.Public(), csrFor(t, p384, nil)
	const validity = 6 * time.Hour
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issued, err := agentCA.SignAgentCSR(tt.csr, testAgentID, testGUID, validity, testNow)
			if err != nil {
				t.Fatalf("SignAgentCSR: %v", err)
			}
			c := issued.Certificate
			if !publicKeysEqual(tt.key, c.PublicKey) {
				t.Errorf("certificate key is not the CSR's key")
			}
			if c.IsCA || !c.BasicConstraintsValid {
				t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want false, true", c.IsCA, c.BasicConstraintsValid)
			}
			if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(c.UnknownExtKeyUsage) > 0 {
				t.Errorf("ExtKeyUsage = %v %v; want client auth only", c.ExtKeyUsage, c.UnknownExtKeyUsage)
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %v; want digital signature only", c.KeyUsage)
			}
			if !c.NotBefore.Equal(testNow.Add(-ClockSkew)) || !c.NotAfter.Equal(testNow.Add(validity)) {
				t.Errorf("validity %v - %v; want %v - %v", c.NotBefore, c.NotAfter, testNow.Add(-ClockSkew), testNow.Add(validity))
			}
			if bits := c.SerialNumber.BitLen(); c.SerialNumber.Sign() <= 0 || bits > 128 || bits < 64 {
				t.Errorf("serial %v: %d bits; want a positive random 128-bit number", c.SerialNumber, bits)
			}
			lo, hi := testNow.Add(validity/2), testNow.Add(validity*2/3)
			if issued.RenewAfter.Before(lo) || issued.RenewAfter.After(hi) {
				t.Errorf("RenewAfter %v outside [%v, %v]", issued.RenewAfter, lo, hi)
			}
			if len(issued.ChainDER) != 1 || !bytes.Equal(issued.ChainDER[0], agentCA.Certificate().Raw) {
				t.Errorf("ChainDER is not the CA's certificate")
			}
			parsed, err := x509.ParseCertificate(issued.DER)
			if err != nil || !parsed.Equal(c) {
				t.Fatalf("DER does not parse to Certificate: %v", err)
			}
			id, err := trust.AgentIdentityFromCert(parsed, testNow)
			if err != nil {
				t.Fatalf("AgentIdentityFromCert: %v", err)
			}
			want := AgentIdentity{AgentID: testAgentID, MachineGUID: testGUID, Serial: c.SerialNumber.Text(16), NotAfter: c.NotAfter}
			if id != want {
				t.Errorf("identity = %+v; want %+v", id, want)
			}
		})
	}
}

func TestSignAgentCSRRejects(t *testing.T) {
	ca := newTestCA(t, "agents", testNow.Add(-time.Hour))
	good := csrFor(t, ecKey(t, elliptic.P256()), nil)
	badSig := bytes.Clone(good)
	badSig[len(badSig)-1] ^= 0x01
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		csr       []byte
		agentID   string
		guid      string
		validity  time.Duration
		wantIs    error
		wantInErr string
		shortCA   bool // sign with a CA that expires in two days
	}{
		{"wrong signature", badSig, testAgentID, testGUID, time.Hour, ErrInvalidCSR, "signature", false},
		{"RSA 1024", csrFor(t, rsa1024, nil), testAgentID, testGUID, time.Hour, ErrInvalidCSR, "RSA key of 1024 bits", false},
		{"ECDSA P-224", csrFor(t, ecKey(t, elliptic.P224()), nil), testAgentID, testGUID, time.Hour, ErrInvalidCSR, "curve P-224", false},
		{"ECDSA P-521", csrFor(t, ecKey(t, elliptic.P521()), nil), testAgentID, testGUID, time.Hour, ErrInvalidCSR, "curve P-521", false},
		{"empty", nil, testAgentID, testGUID, time.Hour, ErrInvalidCSR, "empty", false},
		{"garbage", []byte("not a CSR"), testAgentID, testGUID, time.Hour, ErrInvalidCSR, "parse", false},
		{"too large", make([]byte, MaxCSRSize+1), testAgentID, testGUID, time.Hour, ErrInvalidCSR, "more than", false},
		{"GUID upper case", good, testAgentID, strings.ToUpper(testGUID), time.Hour, ErrInvalidName, strings.ToUpper(testGUID), false},
		{"GUID with braces", good, testAgentID, "{" + testGUID + "}", time.Hour, ErrInvalidName, "{" + testGUID + "}", false},
		{"GUID nil", good, testAgentID, "00000000-0000-0000-0000-000000000000", time.Hour, ErrInvalidName, "nil UUID", false},
		{"GUID empty", good, testAgentID, "", time.Hour, ErrInvalidName, `machine GUID ""`, false},
		{"agent id with slash", good, "a/../b", testGUID, time.Hour, ErrInvalidName, `"a/../b"`, false},
		{"agent id upper case", good, "Agent1", testGUID, time.Hour, ErrInvalidName, `"Agent1"`, false},
		{"agent id empty", good, "", testGUID, time.Hour, ErrInvalidName, `agent id ""`, false},
		{"validity too long", good, testAgentID, testGUID, MaxAgentValidity + time.Hour, nil, "outside", false},
		{"validity too short", good, testAgentID, testGUID, time.Minute, nil, "outside", false},
		{"outlives the CA", good, testAgentID, testGUID, 89 * 24 * time.Hour, nil, "rotate the CA", true},
	}
	shortCA, err := NewCA("short", 48*time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signer := ca
			if tt.shortCA {
				signer = shortCA
			}
			issued, err := signer.SignAgentCSR(tt.csr, tt.agentID, tt.guid, tt.validity, testNow)
			if err == nil {
				t.Fatalf("SignAgentCSR succeeded (serial %v); want an error", issued.Certificate.SerialNumber)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q does not wrap %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantInErr)
			}
		})
	}
}

// A CSR that asks for everything gets nothing but its key certified.
func TestSignAgentCSRIgnoresRequest(t *testing.T) {
	ca := newTestCA(t, "agents", testNow.Add(-time.Hour))
	analystCA := newTestCA(t, "analysts", testNow.Add(-time.Hour))
	trust := newTrust(t, ca, analystCA)
	mustExt := func(id asn1.ObjectIdentifier, v any) pkix.Extension {
		b, err := asn1.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return pkix.Extension{Id: id, Critical: true, Value: b}
	}
	type basicConstraints struct {
		IsCA       bool `asn1:"optional"`
		MaxPathLen int  `asn1:"optional,default:-1"`
	}
	req := &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "victim-agent", Organization: []string{"sessionaudit analyst"}},
		DNSNames:       []string{"collector.example"},
		EmailAddresses: []string{"eve@example.com"},
		IPAddresses:    []net.IP{net.IPv4(10, 0, 0, 1)},
		URIs:           []*url.URL{identity.AgentURI("victim-agent"), identity.HostURI(otherGUID), AnalystURI("eve", RoleAdmin)},
		ExtraExtensions: []pkix.Extension{
			mustExt(asn1.ObjectIdentifier{2, 5, 29, 19}, basicConstraints{IsCA: true, MaxPathLen: 5}),
			mustExt(asn1.ObjectIdentifier{2, 5, 29, 37}, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}, {2, 5, 29, 37, 0}}),
			mustExt(asn1.ObjectIdentifier{2, 5, 29, 15}, asn1.BitString{Bytes: []byte{0x06}, BitLength: 7}), // keyCertSign, cRLSign
		},
	}
	issued, err := ca.SignAgentCSR(csrFor(t, ecKey(t, elliptic.P256()), req), testAgentID, testGUID, time.Hour, testNow)
	if err != nil {
		t.Fatalf("SignAgentCSR: %v", err)
	}
	c := issued.Certificate
	checks := []struct {
		what string
		ok   bool
	}{
		{"not a CA", !c.IsCA && c.MaxPathLen <= 0},
		{"client auth only", slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) && len(c.UnknownExtKeyUsage) == 0},
		{"digital signature only", c.KeyUsage == x509.KeyUsageDigitalSignature},
		{"no DNS, email or IP names", len(c.DNSNames)+len(c.EmailAddresses)+len(c.IPAddresses) == 0},
		{"the CA's URIs only", len(c.URIs) == 2 && c.URIs[0].String() == identity.AgentURI(testAgentID).String() && c.URIs[1].String() == identity.HostURI(testGUID).String()},
		{"the CA's subject", c.Subject.CommonName == testAgentID && slices.Equal(c.Subject.Organization, []string{"sessionaudit agent"})},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("certificate is not %s: %+v", ch.what, c)
		}
	}
	wantExt := []string{"2.5.29.15", "2.5.29.37", "2.5.29.19", "2.5.29.35", "2.5.29.17"} // KU, EKU, BC, AKI, SAN
	for _, e := range c.Extensions {
		if !slices.Contains(wantExt, e.Id.String()) {
			t.Errorf("unexpected extension %v in certificate", e.Id)
		}
	}
	id, err := trust.AgentIdentityFromCert(c, testNow)
	if err != nil || id.AgentID != testAgentID || id.MachineGUID != testGUID {
		t.Errorf("identity = %+v, %v; want agent %s on %s", id, err, testAgentID, testGUID)
	}
	if _, err := trust.AnalystIdentityFromCert(c, testNow); !errors.Is(err, ErrAgentCertificate) {
		t.Errorf("AnalystIdentityFromCert = %v; want ErrAgentCertificate", err)
	}
}

func TestVerify(t *testing.T) {
	agentCA := newTestCA(t, "agents", testNow.Add(-60*24*time.Hour))
	analystCA := newTestCA(t, "analysts", testNow.Add(-60*24*time.Hour))
	foreignCA := newTestCA(t, "foreign", testNow.Add(-60*24*time.Hour))
	trust := newTrust(t, agentCA, analystCA)
	key := ecKey(t, elliptic.P256())
	csr := csrFor(t, key, nil)

	agentAt := func(ca *CA, issuedAt time.Time, validity time.Duration) *x509.Certificate {
		t.Helper()
		is, err := ca.SignAgentCSR(csr, testAgentID, testGUID, validity, issuedAt)
		if err != nil {
			t.Fatal(err)
		}
		return is.Certificate
	}
	analyst := func(ca *CA) *x509.Certificate {
		t.Helper()
		is, err := ca.SignAnalystCSR(csr, "alice@example.com", RoleReader, 24*time.Hour, testNow)
		if err != nil {
			t.Fatal(err)
		}
		return is.Certificate
	}
	// forge signs what a CA would never issue, to show that the checks do
	// not rest on the issuance rules alone.
	forge := func(ca *CA, eku x509.ExtKeyUsage, dns []string, uris ...string) *x509.Certificate {
		t.Helper()
		tmpl := &x509.Certificate{DNSNames: dns, ExtKeyUsage: []x509.ExtKeyUsage{eku}}
		for _, s := range uris {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.URIs = append(tmpl.URIs, u)
		}
		is, err := ca.issue(tmpl, key.Public(), 24*time.Hour, testNow)
		if err != nil {
			t.Fatal(err)
		}
		return is.Certificate
	}
	agentURI, hostURI := identity.AgentURI(testAgentID).String(), identity.HostURI(testGUID).String()
	analystURI := AnalystURI("mallory", RoleAdmin).String()
	client := x509.ExtKeyUsageClientAuth

	const asAgent, asAnalyst = "agent", "analyst"
	tests := []struct {
		name   string
		cert   *x509.Certificate
		as     string
		wantIs error // nil: success
	}{
		{"agent as agent", agentAt(agentCA, testNow, time.Hour), asAgent, nil},
		{"analyst as analyst", analyst(analystCA), asAnalyst, nil},
		{"expired agent", agentAt(agentCA, testNow.Add(-8*24*time.Hour), 7*24*time.Hour), asAgent, ErrUntrusted},
		{"not yet valid agent", agentAt(agentCA, testNow.Add(time.Hour), 7*24*time.Hour), asAgent, ErrUntrusted},
		{"agent of a foreign CA", agentAt(foreignCA, testNow, time.Hour), asAgent, ErrUntrusted},
		{"analyst of a foreign CA", analyst(foreignCA), asAnalyst, ErrUntrusted},
		{"agent as analyst", agentAt(agentCA, testNow, time.Hour), asAnalyst, ErrAgentCertificate},
		{"analyst as agent", analyst(analystCA), asAgent, ErrAnalystCertificate},
		{"agent CA, forged analyst name, as analyst", forge(agentCA, client, nil, analystURI), asAnalyst, ErrAgentCertificate},
		{"agent CA, forged analyst name, as agent", forge(agentCA, client, nil, analystURI), asAgent, ErrBadIdentity},
		{"analyst CA, agent names, as agent", forge(analystCA, client, nil, agentURI, hostURI), asAgent, ErrAnalystCertificate},
		{"agent and analyst names", forge(agentCA, client, nil, agentURI, hostURI, analystURI), asAgent, ErrBadIdentity},
		{"no names", forge(agentCA, client, nil), asAgent, ErrBadIdentity},
		{"agent without host", forge(agentCA, client, nil, agentURI), asAgent, ErrBadIdentity},
		{"two agents", forge(agentCA, client, nil, agentURI, hostURI, identity.AgentURI("other").String()), asAgent, ErrBadIdentity},
		{"extra DNS name", forge(agentCA, client, []string{"x.example"}, agentURI, hostURI), asAgent, ErrBadIdentity},
		{"foreign URI", forge(agentCA, client, nil, agentURI, hostURI, "spiffe://example/agent"), asAgent, ErrBadIdentity},
		{"non-canonical URI", forge(agentCA, client, nil, agentURI+"?role=admin", hostURI), asAgent, ErrBadIdentity},
		{"upper-case GUID", forge(agentCA, client, nil, agentURI, "sessionaudit://host/"+strings.ToUpper(testGUID)), asAgent, ErrBadIdentity},
		{"analyst unknown role", forge(analystCA, client, nil, "sessionaudit://analyst/bob?role=root"), asAnalyst, ErrBadIdentity},
		{"server auth only", forge(agentCA, x509.ExtKeyUsageServerAuth, nil, agentURI, hostURI), asAgent, ErrUntrusted},
		{"CA certificate as client", agentCA.Certificate(), asAgent, ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{tt.cert}}
			var err error
			if tt.as == asAgent {
				var id AgentIdentity
				id, err = trust.VerifyAgent(state, testNow)
				if err == nil && (id.AgentID != testAgentID || id.MachineGUID != testGUID) {
					t.Errorf("identity %+v", id)
				}
			} else {
				var id AnalystIdentity
				id, err = trust.VerifyAnalyst(state, testNow)
				if err == nil && (id.Name != "alice@example.com" || id.Role != RoleReader) {
					t.Errorf("identity %+v", id)
				}
			}
			switch {
			case tt.wantIs == nil && err != nil:
				t.Errorf("error %v; want success", err)
			case tt.wantIs != nil && !errors.Is(err, tt.wantIs):
				t.Errorf("error %v; want %v", err, tt.wantIs)
			}
		})
	}

	t.Run("expired reason", func(t *testing.T) {
		_, err := trust.AgentIdentityFromCert(agentAt(agentCA, testNow.Add(-8*24*time.Hour), 7*24*time.Hour), testNow)
		var inv x509.CertificateInvalidError
		if !errors.As(err, &inv) || inv.Reason != x509.Expired {
			t.Errorf("error %v; want an x509 Expired error inside", err)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		state := tls.ConnectionState{HandshakeComplete: true}
		if _, err := trust.VerifyAgent(state, testNow); !errors.Is(err, ErrNoClientCertificate) {
			t.Errorf("VerifyAgent: %v; want ErrNoClientCertificate", err)
		}
		if _, err := trust.VerifyAnalyst(state, testNow); !errors.Is(err, ErrNoClientCertificate) {
			t.Errorf("VerifyAnalyst: %v; want ErrNoClientCertificate", err)
		}
	})
	t.Run("no analyst CA", func(t *testing.T) {
		agentsOnly, err := NewTrust([]*x509.Certificate{agentCA.Certificate()}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// An empty analyst pool must trust nothing, not the system roots.
		if _, err := agentsOnly.AnalystIdentityFromCert(analyst(analystCA), testNow); !errors.Is(err, ErrUntrusted) {
			t.Errorf("error %v; want ErrUntrusted", err)
		}
	})
}

func TestSignAnalystCSR(t *testing.T) {
	ca := newTestCA(t, "analysts", testNow.Add(-time.Hour))
	csr := csrFor(t, ecKey(t, elliptic.P256()), nil)
	tests := []struct {
		name, analyst string
		role          Role
		wantURI       string // "" means an error naming wantInErr
		wantInErr     string
	}{
		{"reader", "alice", RoleReader, "sessionaudit://analyst/alice?role=reader", ""},
		{"admin with mail name", "bob.smith@example.com", RoleAdmin, "sessionaudit://analyst/bob.smith@example.com?role=admin", ""},
		{"unknown role", "alice", "root", "", `"root"`},
		{"bad name", "Alice Smith", RoleReader, "", `"Alice Smith"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is, err := ca.SignAnalystCSR(csr, tt.analyst, tt.role, 24*time.Hour, testNow)
			if tt.wantURI == "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantInErr) {
					t.Fatalf("error %v; want one naming %s", err, tt.wantInErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(is.Certificate.URIs) != 1 || is.Certificate.URIs[0].String() != tt.wantURI {
				t.Errorf("URIs %v; want [%s]", is.Certificate.URIs, tt.wantURI)
			}
		})
	}
}

func TestNewTrustRefusesOverlap(t *testing.T) {
	agentCA := newTestCA(t, "agents", testNow)
	analystCA := newTestCA(t, "analysts", testNow)
	// A sub-CA of the agent CA, as a careless enterprise set-up would make.
	subKey := ecKey(t, elliptic.P256())
	subDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big1(), Subject: pkix.Name{CommonName: "analysts under agents"},
		NotBefore: testNow, NotAfter: testNow.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, agentCA.Certificate(), subKey.Public(), agentCA.signer)
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := x509.ParseCertificate(subDER)
	leaf, err := agentCA.SignAgentCSR(csrFor(t, subKey, nil), testAgentID, testGUID, time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name            string
		agent, analysts []*x509.Certificate
		wantInErr       string
	}{
		{"same CA for both", []*x509.Certificate{agentCA.Certificate()}, []*x509.Certificate{agentCA.Certificate()}, "same key"},
		{"analyst CA under agent CA", []*x509.Certificate{agentCA.Certificate()}, []*x509.Certificate{sub}, "signed by agent CA"},
		{"leaf as CA", []*x509.Certificate{leaf.Certificate}, []*x509.Certificate{analystCA.Certificate()}, "not a CA"},
		{"no agent CA", nil, []*x509.Certificate{analystCA.Certificate()}, "no agent CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTrust(tt.agent, tt.analysts)
			if err == nil || !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("NewTrust: %v; want an error containing %q", err, tt.wantInErr)
			}
		})
	}
}
