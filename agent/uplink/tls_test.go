package uplink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// handshake runs a TLS handshake between a collector presenting
// serverCert and an agent with cfg; it returns the agent's error.
func handshake(t *testing.T, serverCert tls.Certificate, cfg *tls.Config) error {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS13})
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Handshake()
		b.Close()
	}()
	a.SetDeadline(time.Now().Add(10 * time.Second))
	err := tls.Client(a, cfg).Handshake()
	a.Close()
	<-done
	return err
}

func TestPinVerification(t *testing.T) {
	p := newTestPKI(t)
	caPin := SPKIPin(p.caCert)
	leafPin := SPKIPin(p.serverCert.Leaf)
	otherPKI := newTestPKI(t)
	wrongPin := SPKIPin(otherPKI.caCert)
	noCert := func() *tls.Certificate { return nil }

	for _, tc := range []struct {
		name       string
		pool       *x509.CertPool
		pins       []string
		serverName string
		serverCert tls.Certificate
		wantErr    string // "" for success
	}{
		{"pool only", p.pool, nil, "localhost", p.serverCert, ""},
		{"pool and CA pin", p.pool, []string{caPin}, "localhost", p.serverCert, ""},
		{"pool and leaf pin", p.pool, []string{leafPin}, "localhost", p.serverCert, ""},
		{"pool and wrong pin", p.pool, []string{wrongPin}, "localhost", p.serverCert, ErrPinMismatch.Error()},
		{"pool, rollover pins", p.pool, []string{wrongPin, caPin}, "localhost", p.serverCert, ""},
		{"CA pin only", nil, []string{caPin}, "localhost", p.serverCert, ""},
		{"leaf pin only", nil, []string{leafPin}, "localhost", p.serverCert, ""},
		{"wrong pin only", nil, []string{wrongPin}, "localhost", p.serverCert, ErrPinMismatch.Error()},
		{"CA pin only, wrong name", nil, []string{caPin}, "collector.example", p.serverCert, "not collector.example"},
		{"pool of another CA", otherPKI.pool, []string{caPin}, "localhost", p.serverCert, "unknown authority"},
		{"CA pin only, another CA's collector", nil, []string{caPin}, "localhost", otherPKI.serverCert, ErrPinMismatch.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := clientTLSConfig(tc.pool, tc.pins, tc.serverName, time.Now, noCert)
			err := handshake(t, tc.serverCert, cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("handshake refused: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("handshake: %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestPinOnlyChecksExpiry: with pins only, an expired collector
// certificate is refused as with a pool (the clock is the agent's).
func TestPinOnlyChecksExpiry(t *testing.T) {
	p := newTestPKI(t)
	later := func() time.Time { return time.Now().Add(60 * 24 * time.Hour) }
	cfg := clientTLSConfig(nil, []string{SPKIPin(p.caCert)}, "localhost", later, func() *tls.Certificate { return nil })
	var ie x509.CertificateInvalidError
	if err := handshake(t, p.serverCert, cfg); !errors.As(err, &ie) || ie.Reason != x509.Expired {
		t.Fatalf("handshake with an expired collector certificate: %v, want x509 Expired", err)
	}
}

func TestNormalizePins(t *testing.T) {
	pin := strings.Repeat("ab", 32)
	got, err := normalizePins([]string{" SHA256:" + strings.ToUpper(pin) + " "})
	if err != nil || len(got) != 1 || got[0] != pin {
		t.Fatalf("normalizePins = %v, %v; want [%s]", got, err, pin)
	}
	for _, bad := range []string{"", "abc", strings.Repeat("zz", 32), strings.Repeat("ab", 31)} {
		if _, err := normalizePins([]string{bad}); err == nil {
			t.Errorf("pin %q accepted", bad)
		}
	}
}

// TestNewRefusesNoTrustAnchor: without a CA file or a pin the agent does
// not connect at all (no system roots, no trust on first use).
func TestNewRefusesNoTrustAnchor(t *testing.T) {
	_, err := New(Options{Address: "collector:8443", StateDir: t.TempDir(), Host: nil})
	if err == nil {
		t.Fatal("New without Host accepted")
	}
	_, err = New(Options{Address: "collector:8443", StateDir: t.TempDir(), Host: testHost})
	if err == nil || !strings.Contains(err.Error(), "no trust anchor") {
		t.Fatalf("New without CA or pin: %v, want a refusal naming the trust anchor", err)
	}
}
