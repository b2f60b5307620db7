package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

// kindAnalyst is the authority of analyst identity URIs; the agent's and
// the host's are identity.KindAgent and identity.KindHost.
const kindAnalyst = "analyst"

// Role is what an analyst may do.
type Role string

// The analyst roles.
const (
	// RoleReader may run queries.
	RoleReader Role = "reader"
	// RoleAdmin may also run admin commands (secrets, agents, analysts).
	RoleAdmin Role = "admin"
)

// Errors a caller maps to a status. Each error returned wraps one of them.
var (
	// ErrNoClientCertificate means the peer sent no client certificate.
	ErrNoClientCertificate = errors.New("no client certificate")
	// ErrUntrusted means no CA of either kind signed the certificate, or it
	// is expired, not yet valid, a CA's or not for client authentication.
	ErrUntrusted = errors.New("certificate not trusted")
	// ErrAgentCertificate means an agent certificate was presented where an
	// analyst one is required.
	ErrAgentCertificate = errors.New("agent certificate where an analyst certificate is required")
	// ErrAnalystCertificate means an analyst certificate was presented where
	// an agent one is required.
	ErrAnalystCertificate = errors.New("analyst certificate where an agent certificate is required")
	// ErrBadIdentity means the certificate chains to the right CA but its names
	// are not exactly the identity that CA issues (missing, doubled, mixed
	// or malformed).
	ErrBadIdentity = errors.New("certificate identity malformed")
	// ErrInvalidName means an agent id, machine GUID, analyst name or role
	// given to the CA is malformed. It is identity.ErrInvalidName, so that
	// either package's check matches errors.Is.
	ErrInvalidName = identity.ErrInvalidName
)

var analystNamePattern = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9._@-]{0,62}[a-z0-9])?$`)

// ValidateAnalystName reports whether name is a well-formed analyst name:
// 1 to 64 lower-case letters, digits and inner '.', '_', '@', '-'.
func ValidateAnalystName(name string) error {
	if !analystNamePattern.MatchString(name) {
		return fmt.Errorf("%w: analyst name %q: want 1-64 of [a-z0-9._@-], starting and ending with a letter or digit", ErrInvalidName, name)
	}
	return nil
}

// ValidateRole reports whether r is a known analyst role.
func ValidateRole(r Role) error {
	if r != RoleReader && r != RoleAdmin {
		return fmt.Errorf("%w: analyst role %q: want %q or %q", ErrInvalidName, string(r), RoleReader, RoleAdmin)
	}
	return nil
}

// AnalystURI is the URI SAN naming an analyst and role:
// sessionaudit://analyst/<name>?role=<role>.
func AnalystURI(name string, role Role) *url.URL {
	return &url.URL{Scheme: identity.Scheme, Host: kindAnalyst, Path: "/" + name, RawQuery: "role=" + string(role)}
}

// AgentIdentity is who an agent certificate speaks for.
type AgentIdentity struct {
	// AgentID is the id the collector assigned at enrollment.
	AgentID string
	// MachineGUID is the host the agent was enrolled for.
	MachineGUID string
	// Serial is the certificate's serial number, lower-case hex: the
	// collector may record the latest it issued per agent.
	Serial string
	// NotAfter is when the certificate expires.
	NotAfter time.Time
}

// AnalystIdentity is who an analyst certificate speaks for.
type AnalystIdentity struct {
	// Name is the analyst's name.
	Name string
	// Role is what the analyst may do.
	Role Role
	// Serial is the certificate's serial number, lower-case hex.
	Serial string
	// NotAfter is when the certificate expires.
	NotAfter time.Time
}

// Trust is the collector's view of the two client CAs. The agent and
// analyst CAs must be different CAs, neither signed by the other; each CA
// given is a trust anchor in its own right, so a client certificate counts
// only if one of them signed it directly.
type Trust struct {
	agent, analyst *x509.CertPool
	clientCAs      *x509.CertPool
}

// NewTrust builds a Trust from the agent CAs' and the analyst CAs'
// certificates (more than one of a kind during a CA rotation). At least one
// agent CA is required; analysts may have none (then only tokens work). It
// refuses a certificate that is not a CA, and any overlap between the two
// kinds: the same key in both, or a CA of one kind signed by a CA of the
// other.
func NewTrust(agentCAs, analystCAs []*x509.Certificate) (*Trust, error) {
	if len(agentCAs) == 0 {
		return nil, errors.New("pki: trust: no agent CA given")
	}
	t := &Trust{agent: x509.NewCertPool(), analyst: x509.NewCertPool(), clientCAs: x509.NewCertPool()}
	for _, c := range agentCAs {
		if err := checkIsCA(c); err != nil {
			return nil, fmt.Errorf("pki: trust: agent CA: %w", err)
		}
		t.agent.AddCert(c)
		t.clientCAs.AddCert(c)
	}
	for _, c := range analystCAs {
		if err := checkIsCA(c); err != nil {
			return nil, fmt.Errorf("pki: trust: analyst CA: %w", err)
		}
		t.analyst.AddCert(c)
		t.clientCAs.AddCert(c)
	}
	for _, a := range agentCAs {
		for _, b := range analystCAs {
			switch {
			case publicKeysEqual(a.PublicKey, b.PublicKey):
				return nil, fmt.Errorf("pki: trust: agent CA %q and analyst CA %q have the same key; they must be separate CAs",
					a.Subject.String(), b.Subject.String())
			case a.CheckSignatureFrom(b) == nil:
				return nil, fmt.Errorf("pki: trust: agent CA %q is signed by analyst CA %q; they must be separate CAs",
					a.Subject.String(), b.Subject.String())
			case b.CheckSignatureFrom(a) == nil:
				return nil, fmt.Errorf("pki: trust: analyst CA %q is signed by agent CA %q; they must be separate CAs",
					b.Subject.String(), a.Subject.String())
			}
		}
	}
	return t, nil
}

// ClientCAs returns the pool crypto/tls verifies client certificates
// against: every agent and analyst CA.
func (t *Trust) ClientCAs() *x509.CertPool { return t.clientCAs }

// VerifyAgent returns the agent identity of the peer of a TLS connection
// (for gRPC: credentials.TLSInfo.State from peer.FromContext) at time now.
// Call it on every RPC but Enroll: it checks expiry again, because a
// connection outlives the handshake.
func (t *Trust) VerifyAgent(state tls.ConnectionState, now time.Time) (AgentIdentity, error) {
	leaf, err := peerLeaf(state)
	if err != nil {
		return AgentIdentity{}, err
	}
	return t.AgentIdentityFromCert(leaf, now)
}

// VerifyAnalyst returns the analyst identity of the peer of a TLS connection
// at time now; see VerifyAgent.
func (t *Trust) VerifyAnalyst(state tls.ConnectionState, now time.Time) (AnalystIdentity, error) {
	leaf, err := peerLeaf(state)
	if err != nil {
		return AnalystIdentity{}, err
	}
	return t.AnalystIdentityFromCert(leaf, now)
}

// AgentIdentityFromCert returns the identity of an agent certificate: it
// must be signed by an agent CA, valid at now, for client authentication,
// and name exactly one agent and one host, nothing else. An analyst
// certificate gives ErrAnalystCertificate, whatever names it carries.
func (t *Trust) AgentIdentityFromCert(cert *x509.Certificate, now time.Time) (AgentIdentity, error) {
	if err := verifyLeaf(cert, t.agent, now); err != nil {
		if verifyLeaf(cert, t.analyst, now) == nil {
			return AgentIdentity{}, fmt.Errorf("pki: certificate %s: %w", serialHex(cert), ErrAnalystCertificate)
		}
		return AgentIdentity{}, fmt.Errorf("pki: certificate %s as an agent: %w: %w", serialHex(cert), ErrUntrusted, err)
	}
	names, err := identityNames(cert)
	if err != nil {
		return AgentIdentity{}, err
	}
	if names.agentID == "" || names.machineGUID == "" || names.analyst != "" {
		return AgentIdentity{}, fmt.Errorf("pki: certificate %s: %w: an agent certificate names exactly one agent and one host and no analyst",
			serialHex(cert), ErrBadIdentity)
	}
	return AgentIdentity{AgentID: names.agentID, MachineGUID: names.machineGUID, Serial: serialHex(cert), NotAfter: cert.NotAfter}, nil
}

// AnalystIdentityFromCert returns the identity of an analyst certificate: it
// must be signed by an analyst CA, valid at now, for client authentication,
// and name exactly one analyst with a role, nothing else. An agent
// certificate gives ErrAgentCertificate, whatever names it carries.
func (t *Trust) AnalystIdentityFromCert(cert *x509.Certificate, now time.Time) (AnalystIdentity, error) {
	if err := verifyLeaf(cert, t.analyst, now); err != nil {
		if verifyLeaf(cert, t.agent, now) == nil {
			return AnalystIdentity{}, fmt.Errorf("pki: certificate %s: %w", serialHex(cert), ErrAgentCertificate)
		}
		return AnalystIdentity{}, fmt.Errorf("pki: certificate %s as an analyst: %w: %w", serialHex(cert), ErrUntrusted, err)
	}
	names, err := identityNames(cert)
	if err != nil {
		return AnalystIdentity{}, err
	}
	if names.analyst == "" || names.agentID != "" || names.machineGUID != "" {
		return AnalystIdentity{}, fmt.Errorf("pki: certificate %s: %w: an analyst certificate names exactly one analyst and no agent or host",
			serialHex(cert), ErrBadIdentity)
	}
	return AnalystIdentity{Name: names.analyst, Role: names.role, Serial: serialHex(cert), NotAfter: cert.NotAfter}, nil
}

// peerLeaf returns the client certificate of a completed handshake.
func peerLeaf(state tls.ConnectionState) (*x509.Certificate, error) {
	if !state.HandshakeComplete {
		return nil, errors.New("pki: TLS handshake not complete")
	}
	if len(state.PeerCertificates) == 0 {
		return nil, fmt.Errorf("pki: %w", ErrNoClientCertificate)
	}
	return state.PeerCertificates[0], nil
}

// verifyLeaf checks that cert is an end-entity certificate for client
// authentication, signed directly by a CA of pool, valid at now. Peer-sent
// intermediates are deliberately not used.
func verifyLeaf(cert *x509.Certificate, pool *x509.CertPool, now time.Time) error {
	if cert.IsCA {
		return errors.New("is a CA certificate")
	}
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       pool, // never nil: a nil pool would mean the system roots
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err
}

// names is what a certificate's subject alternative names say.
type names struct {
	agentID, machineGUID string
	analyst              string
	role                 Role
}

// identityNames parses a certificate's subject alternative names, which must
// all be identity URIs, each kind at most once.
func identityNames(cert *x509.Certificate) (names, error) {
	var n names
	fail := func(format string, args ...any) (names, error) {
		return names{}, fmt.Errorf("pki: certificate %s: %w: %s", serialHex(cert), ErrBadIdentity, fmt.Sprintf(format, args...))
	}
	if len(cert.DNSNames)+len(cert.EmailAddresses)+len(cert.IPAddresses) > 0 {
		return fail("has DNS, email or IP names; identity certificates carry URIs only")
	}
	for _, u := range cert.URIs {
		s := u.String()
		if u.Scheme != identity.Scheme || u.Opaque != "" || u.User != nil || u.Fragment != "" || u.RawPath != "" {
			return fail("URI %q is not a %s identity", s, identity.Scheme)
		}
		value := strings.TrimPrefix(u.Path, "/")
		var want *url.URL
		switch u.Host {
		case identity.KindAgent:
			if n.agentID != "" || identity.ValidateAgentID(value) != nil {
				return fail("URI %q: second or malformed agent id", s)
			}
			n.agentID, want = value, identity.AgentURI(value)
		case identity.KindHost:
			if n.machineGUID != "" || identity.ValidateMachineGUID(value) != nil {
				return fail("URI %q: second or malformed machine GUID", s)
			}
			n.machineGUID, want = value, identity.HostURI(value)
		case kindAnalyst:
			role := Role(u.Query().Get("role"))
			if n.analyst != "" || ValidateAnalystName(value) != nil || ValidateRole(role) != nil {
				return fail("URI %q: second or malformed analyst name or role", s)
			}
			n.analyst, n.role, want = value, role, AnalystURI(value, role)
		default:
			return fail("URI %q names an unknown kind %q", s, u.Host)
		}
		if want.String() != s {
			return fail("URI %q is not in canonical form %q", s, want.String())
		}
	}
	return n, nil
}

// serialHex is cert's serial number in lower-case hex.
func serialHex(cert *x509.Certificate) string {
	if cert.SerialNumber == nil {
		return "(no serial)"
	}
	return cert.SerialNumber.Text(16)
}
