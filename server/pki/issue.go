package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

// Limits on what the CA signs.
const (
	// MaxCSRSize is the largest DER CSR SignAgentCSR and SignAnalystCSR
	// parse.
	MaxCSRSize = 16 << 10
	// MinValidity is the shortest lifetime the CA issues.
	MinValidity = 10 * time.Minute
	// DefaultAgentValidity is the agent certificate lifetime the collector
	// should use unless configured otherwise.
	DefaultAgentValidity = 7 * 24 * time.Hour
	// MaxAgentValidity is the longest agent certificate lifetime SignAgentCSR
	// issues.
	MaxAgentValidity = 90 * 24 * time.Hour
	// MaxAnalystValidity is the longest analyst certificate lifetime
	// SignAnalystCSR issues.
	MaxAnalystValidity = 365 * 24 * time.Hour
)

// ErrInvalidCSR means a certificate signing request is malformed, badly
// signed or for a key the CA refuses. Errors from SignAgentCSR and SignAnalystCSR about
// the request wrap it (the RPC layer answers INVALID_ARGUMENT).
var ErrInvalidCSR = errors.New("invalid certificate signing request")

// IssuedCertificate is a certificate the CA just signed.
type IssuedCertificate struct {
	// Certificate is the parsed certificate.
	Certificate *x509.Certificate
	// DER is the certificate, DER-encoded.
	DER []byte
	// ChainDER is the issuing CA's chain, DER-encoded, issuer first; send it
	// with the certificate.
	ChainDER [][]byte
	// RenewAfter is when the holder should renew: a random point between
	// 1/2 and 2/3 of the lifetime, so that a fleet enrolled at once does not
	// renew at once and a failed renewal leaves a third of the lifetime for
	// retries.
	RenewAfter time.Time
}

// SignAgentCSR issues an agent's client certificate for the public key of
// csrDER, bound to agentID and machineGUID, valid from now (less ClockSkew)
// to now + validity. Everything else in the request (subject, names,
// extensions) is ignored: the CA decides the certificate's contents. The key
// must be ECDSA P-256 or P-384, Ed25519, or RSA of 2048 to 4096 bits (for
// hardware-bound keys that offer nothing else). The certificate is for
// client authentication only and cannot sign certificates.
func (ca *CA) SignAgentCSR(csrDER []byte, agentID, machineGUID string, validity time.Duration, now time.Time) (IssuedCertificate, error) {
	if err := identity.ValidateAgentID(agentID); err != nil {
		return IssuedCertificate{}, fmt.Errorf("pki: sign agent CSR: %w", err)
	}
	if err := identity.ValidateMachineGUID(machineGUID); err != nil {
		return IssuedCertificate{}, fmt.Errorf("pki: sign agent CSR for agent %s: %w", agentID, err)
	}
	if validity < MinValidity || validity > MaxAgentValidity {
		return IssuedCertificate{}, fmt.Errorf("pki: sign agent CSR for agent %s: validity %v is outside [%v, %v]",
			agentID, validity, MinValidity, MaxAgentValidity)
	}
	pub, err := checkCSR(csrDER)
	if err != nil {
		return IssuedCertificate{}, fmt.Errorf("pki: agent %s: %w", agentID, err)
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: agentID, Organization: []string{"sessionaudit agent"}},
		URIs:    []*url.URL{identity.AgentURI(agentID), identity.HostURI(machineGUID)},
	}
	issued, err := ca.issueClient(tmpl, pub, validity, now)
	if err != nil {
		return IssuedCertificate{}, fmt.Errorf("pki: issue certificate for agent %s: %w", agentID, err)
	}
	return issued, nil
}

// SignAnalystCSR issues an analyst's client certificate for the public key
// of csrDER, naming the analyst and role, valid from now (less ClockSkew) to
// now + validity; see SignAgentCSR for what is checked and ignored. Sign it
// with the analyst CA, never the agent CA.
func (ca *CA) SignAnalystCSR(csrDER []byte, name string, role Role, validity time.Duration, now time.Time) (IssuedCertificate, error) {
	if err := ValidateAnalystName(name); err != nil {
		return IssuedCertificate{}, fmt.Errorf("pki: sign analyst CSR: %w", err)
	}
	if err := ValidateRole(role); err != nil {
		return IssuedCertificate{}, fmt.Errorf("pki: sign analyst CSR for %s: %w", name, err)
	}
	if validity < MinValidity || validity > MaxAnalystValidity {
		return IssuedCertificate{}, fmt.Errorf("pki: sign analyst CSR for %s: validity %v is outside [%v, %v]",
			name, validity, MinValidity, MaxAnalystValidity)
	}
	pub, err := checkCSR(csrDER)
	if err != nil {
		return IssuedCertificate{}, fmt.Errorf("pki: analyst %s: %w", name, err)
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: name, Organization: []string{"sessionaudit analyst"}},
		URIs:    []*url.URL{AnalystURI(name, role)},
	}
	issued, err := ca.issueClient(tmpl, pub, validity, now)
	if err != nil {
		return IssuedCertificate{}, fmt.Errorf("pki: issue certificate for analyst %s: %w", name, err)
	}
	return issued, nil
}

// IssueServerCert issues the collector's TLS server certificate for a fresh
// ECDSA P-256 key that stays in memory, for dnsNames and ips (at least one
// name in all), valid from now (less ClockSkew) to now + validity. The
// result carries the CA's chain and its parsed Leaf. A collector can issue
// one at start and again before it expires, so that no server key is ever
// written to disk.
func (ca *CA) IssueServerCert(dnsNames []string, ips []net.IP, validity time.Duration, now time.Time) (tls.Certificate, error) {
	if len(dnsNames)+len(ips) == 0 {
		return tls.Certificate{}, errors.New("pki: issue server certificate: no DNS name or IP address given")
	}
	for _, n := range dnsNames {
		if n == "" || len(n) > 253 || strings.ContainsAny(n, " /:@") {
			return tls.Certificate{}, fmt.Errorf("pki: issue server certificate: DNS name %q is malformed", n)
		}
	}
	if validity < MinValidity {
		return tls.Certificate{}, fmt.Errorf("pki: issue server certificate for %v: validity %v is under %v", dnsNames, validity, MinValidity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue server certificate: generate key: %w", err)
	}
	cn := "sessionaudit collector"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"sessionaudit collector"}},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	issued, err := ca.issue(tmpl, key.Public(), validity, now)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue server certificate for %v %v: %w", dnsNames, ips, err)
	}
	return tls.Certificate{
		Certificate: append([][]byte{issued.DER}, issued.ChainDER...),
		PrivateKey:  key,
		Leaf:        issued.Certificate,
	}, nil
}

// checkCSR parses csrDER, checks its key against the CA's policy (before
// the signature, so that a huge key costs nothing) and its signature, and
// returns its public key. Nothing else of the request is used.
func checkCSR(csrDER []byte) (crypto.PublicKey, error) {
	if len(csrDER) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalidCSR)
	}
	if len(csrDER) > MaxCSRSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidCSR, len(csrDER), MaxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("%w: parse: %w", ErrInvalidCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify with the request's own key: %w", ErrInvalidCSR, err)
	}
	return csr.PublicKey, nil
}

// checkPublicKey says why the CA refuses to certify pub, if it does.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("ECDSA key on curve %s; want P-256 or P-384", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 || bits > 4096 {
			return fmt.Errorf("RSA key of %d bits; want 2048 to 4096 (ECDSA P-256 preferred)", bits)
		}
	default:
		return fmt.Errorf("%T public key; want ECDSA P-256 or P-384, Ed25519, or RSA 2048-4096", pub)
	}
	return nil
}

// issueClient issues a client-authentication certificate from tmpl, whose
// Subject and URIs the caller set.
func (ca *CA) issueClient(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration, now time.Time) (IssuedCertificate, error) {
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.issue(tmpl, pub, validity, now)
}

// issue fills in what every end-entity certificate shares (serial, validity,
// key usage, not a CA), signs tmpl for pub and suggests a renewal time. It
// refuses to issue past the CA's own expiry: an operator must rotate the CA
// rather than see lifetimes shrink silently.
func (ca *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration, now time.Time) (IssuedCertificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return IssuedCertificate{}, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-ClockSkew)
	tmpl.NotAfter = now.Add(validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	if now.Before(ca.cert.NotBefore) || now.After(ca.cert.NotAfter) {
		return IssuedCertificate{}, fmt.Errorf("CA %q is valid from %v to %v, not at %v",
			ca.cert.Subject.String(), ca.cert.NotBefore, ca.cert.NotAfter, now)
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		return IssuedCertificate{}, fmt.Errorf("CA %q expires at %v, before the certificate would (%v); rotate the CA",
			ca.cert.Subject.String(), ca.cert.NotAfter, tmpl.NotAfter)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.signer)
	if err != nil {
		return IssuedCertificate{}, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return IssuedCertificate{}, fmt.Errorf("parse issued certificate: %w", err)
	}
	jitter := time.Duration(mrand.Int64N(int64(validity/6) + 1))
	return IssuedCertificate{
		Certificate: cert,
		DER:         der,
		ChainDER:    ca.ChainDER(),
		RenewAfter:  now.Add(validity/2 + jitter),
	}, nil
}
