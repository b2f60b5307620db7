package pki

import (
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

// clientCert issues a client certificate with sign and wraps it for
// crypto/tls.
func clientCert(t *testing.T, sign func(csr []byte) (IssuedCertificate, error)) *tls.Certificate {
	t.Helper()
	key := ecKey(t, elliptic.P256())
	is, err := sign(csrFor(t, key, nil))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: append([][]byte{is.DER}, is.ChainDER...), PrivateKey: key, Leaf: is.Certificate}
}

// TestHandshake runs real TLS handshakes on loopback with ServerTLSConfig
// and ClientTLSConfig (crypto/tls checks times against the real clock).
func TestHandshake(t *testing.T) {
	now := time.Now()
	agentCA := newTestCA(t, "agents", now.Add(-time.Hour))
	analystCA := newTestCA(t, "analysts", now.Add(-time.Hour))
	foreignCA := newTestCA(t, "foreign", now.Add(-time.Hour))
	trust := newTrust(t, agentCA, analystCA)
	serverCert, err := agentCA.IssueServerCert([]string{"collector.test"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 24*time.Hour, now)
	if err != nil {
		t.Fatalf("IssueServerCert: %v", err)
	}
	serverCfg := ServerTLSConfig(serverCert, trust)
	serverCAs := x509.NewCertPool()
	serverCAs.AddCert(agentCA.Certificate())

	agent := clientCert(t, func(csr []byte) (IssuedCertificate, error) {
		return agentCA.SignAgentCSR(csr, testAgentID, testGUID, time.Hour, now)
	})
	analyst := clientCert(t, func(csr []byte) (IssuedCertificate, error) {
		return analystCA.SignAnalystCSR(csr, "alice", RoleAdmin, time.Hour, now)
	})
	foreign := clientCert(t, func(csr []byte) (IssuedCertificate, error) {
		return foreignCA.SignAgentCSR(csr, testAgentID, testGUID, time.Hour, now)
	})
	// An attacker's client sends its certificate whatever CAs the server
	// names as acceptable; crypto/tls's client would otherwise send none.
	forcedForeign := identity.ClientTLSConfig(serverCAs, "collector.test", nil)
	forcedForeign.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return foreign, nil }
	tls12 := identity.ClientTLSConfig(serverCAs, "collector.test", agent)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	tests := []struct {
		name          string
		client        *tls.Config
		wantHandshake bool
		// check runs on the server's side of a completed handshake.
		check func(t *testing.T, state tls.ConnectionState)
		// refusal is part of the server's or the client's error when the
		// handshake must fail.
		refusal string
	}{
		{"no client certificate (Enroll)", identity.ClientTLSConfig(serverCAs, "collector.test", nil), true,
			func(t *testing.T, s tls.ConnectionState) {
				if _, err := trust.VerifyAgent(s, time.Now()); !errors.Is(err, ErrNoClientCertificate) {
					t.Errorf("VerifyAgent: %v; want ErrNoClientCertificate", err)
				}
			}, ""},
		{"agent certificate", identity.ClientTLSConfig(serverCAs, "collector.test", agent), true,
			func(t *testing.T, s tls.ConnectionState) {
				if s.Version != tls.VersionTLS13 {
					t.Errorf("version %x; want TLS 1.3", s.Version)
				}
				id, err := trust.VerifyAgent(s, time.Now())
				if err != nil || id.AgentID != testAgentID || id.MachineGUID != testGUID {
					t.Errorf("VerifyAgent = %+v, %v; want agent %s on %s", id, err, testAgentID, testGUID)
				}
				if _, err := trust.VerifyAnalyst(s, time.Now()); !errors.Is(err, ErrAgentCertificate) {
					t.Errorf("VerifyAnalyst: %v; want ErrAgentCertificate", err)
				}
			}, ""},
		{"analyst certificate", identity.ClientTLSConfig(serverCAs, "collector.test", analyst), true,
			func(t *testing.T, s tls.ConnectionState) {
				id, err := trust.VerifyAnalyst(s, time.Now())
				if err != nil || id.Name != "alice" || id.Role != RoleAdmin {
					t.Errorf("VerifyAnalyst = %+v, %v", id, err)
				}
				if _, err := trust.VerifyAgent(s, time.Now()); !errors.Is(err, ErrAnalystCertificate) {
					t.Errorf("VerifyAgent: %v; want ErrAnalystCertificate", err)
				}
			}, ""},
		{"foreign CA certificate, sent anyway", forcedForeign, false, nil, "signed by unknown authority"},
		// crypto/tls's client sends no certificate that none of the
		// server's CAs issued, so the server sees none.
		{"foreign CA certificate, withheld by the client", identity.ClientTLSConfig(serverCAs, "collector.test", foreign), true,
			func(t *testing.T, s tls.ConnectionState) {
				if _, err := trust.VerifyAgent(s, time.Now()); !errors.Is(err, ErrNoClientCertificate) {
					t.Errorf("VerifyAgent: %v; want ErrNoClientCertificate", err)
				}
			}, ""},
		{"TLS 1.2 only client", tls12, false, nil, "unsupported versions"},
		// The client refuses a server name the certificate does not carry.
		{"wrong server name", identity.ClientTLSConfig(serverCAs, "other.test", agent), false, nil, "not other.test"},
		// The server's certificate (ServerAuth) does not pass as a client's.
		{"server certificate as client", identity.ClientTLSConfig(serverCAs, "collector.test", &serverCert), false, nil, "incompatible key usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type result struct {
				state tls.ConnectionState
				err   error
			}
			done := make(chan result, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- result{err: err}
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				s := tls.Server(c, serverCfg)
				if err := s.Handshake(); err != nil {
					done <- result{err: err}
					return
				}
				_, err = s.Write([]byte("k"))
				done <- result{state: s.ConnectionState(), err: err}
			}()
			raw, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			raw.SetDeadline(time.Now().Add(10 * time.Second))
			c := tls.Client(raw, tt.client)
			// In TLS 1.3 a refused client certificate shows on the first
			// read, after the client's side of the handshake is done.
			clientErr := c.Handshake()
			if clientErr == nil {
				_, clientErr = io.ReadFull(c, make([]byte, 1))
			}
			c.Close()
			r := <-done
			if tt.wantHandshake {
				if r.err != nil || clientErr != nil {
					t.Fatalf("handshake failed: server %v, client %v", r.err, clientErr)
				}
				tt.check(t, r.state)
				return
			}
			t.Logf("server: %v; client: %v", r.err, clientErr)
			if r.err == nil || clientErr == nil {
				t.Fatalf("handshake succeeded (server error %v, client error %v); want it refused", r.err, clientErr)
			}
			if !strings.Contains(r.err.Error()+" "+clientErr.Error(), tt.refusal) {
				t.Errorf("refused, but not with %q", tt.refusal)
			}
		})
	}
}
