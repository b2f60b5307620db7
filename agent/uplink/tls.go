package uplink

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

// SPKIPin returns the pin of cert as Options.CAPins takes it: the SHA-256
// of its SubjectPublicKeyInfo, lower-case hexadecimal.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// normalizePins returns pins lower-cased, without a "sha256:" prefix, or
// an error naming a pin that is not 64 hexadecimal digits.
func normalizePins(pins []string) ([]string, error) {
	out := make([]string, 0, len(pins))
	for _, p := range pins {
		p = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(p)), "sha256:")
		if b, err := hex.DecodeString(p); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("CA pin %q: want the SHA-256 of a SubjectPublicKeyInfo, 64 hexadecimal digits", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// ErrPinMismatch means the collector's certificate chain holds no key
// whose pin is configured.
var ErrPinMismatch = errors.New("no certificate of the collector's chain has a pinned key")

// clientTLSConfig returns the agent's TLS configuration: identity.ClientTLSConfig
// (TLS 1.3, the collector verified under serverName) plus pinning, and the
// client certificate taken from getCert at each handshake.
//
// Trust decision, in order:
//   - pool and pins: the chain must verify against pool (as always), and one
//     certificate of a verified chain must have a pinned key.
//   - pins only: a certificate of the chain the collector sends must have a
//     pinned key, and the leaf must verify (time, name, serverAuth) with
//     that certificate as the only root. A pin is thus a trust anchor, set
//     by the administrator like a CA file; never a first-use decision.
//   - neither: refused by New; the system roots are never used.
func clientTLSConfig(pool *x509.CertPool, pins []string, serverName string, now func() time.Time,
	getCert func() *tls.Certificate) *tls.Config {
	cfg := identity.ClientTLSConfig(pool, serverName, nil)
	cfg.Time = now
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c := getCert(); c != nil {
			return c, nil
		}
		return &tls.Certificate{}, nil // none: Enroll, or an expired identity
	}
	if len(pins) == 0 {
		return cfg
	}
	if pool != nil {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			for _, chain := range cs.VerifiedChains {
				for _, c := range chain {
					if slices.Contains(pins, SPKIPin(c)) {
						return nil
					}
				}
			}
			return fmt.Errorf("uplink: collector %s: %w (pins %v)", serverName, ErrPinMismatch, pins)
		}
		return cfg
	}
	// Pins only: the standard verification (against an empty pool) would
	// refuse every chain, so it is replaced, not skipped: VerifyConnection
	// below verifies the chain to the pinned certificate.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return verifyPinnedChain(cs.PeerCertificates, pins, serverName, now())
	}
	return cfg
}

// verifyPinnedChain verifies peer (leaf first) with the first certificate
// of it that has a pinned key as the only root.
func verifyPinnedChain(peer []*x509.Certificate, pins []string, serverName string, now time.Time) error {
	if len(peer) == 0 {
		return fmt.Errorf("uplink: collector %s sent no certificate", serverName)
	}
	for _, anchor := range peer {
		if !slices.Contains(pins, SPKIPin(anchor)) {
			continue
		}
		roots := x509.NewCertPool()
		roots.AddCert(anchor)
		inter := x509.NewCertPool()
		for _, c := range peer[1:] {
			inter.AddCert(c)
		}
		_, err := peer[0].Verify(x509.VerifyOptions{
			Roots: roots, Intermediates: inter, DNSName: serverName, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			return fmt.Errorf("uplink: collector %s: certificate %q with a pinned key does not validate the chain: %w",
				serverName, anchor.Subject, err)
		}
		return nil
	}
	return fmt.Errorf("uplink: collector %s (certificate %q, issuer %q): %w (pins %v); if the pin is of the CA, the collector must send the CA certificate in its chain, or set CACertificate",
		serverName, peer[0].Subject, peer[0].Issuer, ErrPinMismatch, pins)
}
