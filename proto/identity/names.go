package identity

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Scheme is the URI scheme of every identity a sessionaudit CA writes into
// certificates.
const Scheme = "sessionaudit"

// The authorities ("hosts") of the identity URIs.
const (
	// KindAgent names an agent: sessionaudit://agent/<agent id>.
	KindAgent = "agent"
	// KindHost names a machine: sessionaudit://host/<machine GUID>.
	KindHost = "host"
)

// ErrInvalidName means an agent id or machine GUID is malformed. Every
// validation error of this package wraps it.
var ErrInvalidName = errors.New("invalid name")

// NilMachineGUID is the nil UUID, which no machine may claim.
const NilMachineGUID = "00000000-0000-0000-0000-000000000000"

var (
	agentIDPattern     = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$`)
	machineGUIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// NormalizeMachineGUID returns g in the protocol's canonical form as far as
// spelling goes: surrounding spaces and one pair of braces removed, lower
// case. It does not validate; ParseMachineGUID does both. Windows writes the
// registry's MachineGuid as "6F1C2A34-..." or "{6f1c2a34-...}"; certificates,
// reports and the store carry "6f1c2a34-...".
func NormalizeMachineGUID(g string) string {
	g = strings.TrimSpace(g)
	if strings.HasPrefix(g, "{") && strings.HasSuffix(g, "}") {
		g = g[1 : len(g)-1]
	}
	return strings.ToLower(g)
}

// ValidateMachineGUID reports whether guid is a machine GUID in the
// protocol's canonical form: a lower-case UUID (8-4-4-4-12 hexadecimal
// digits) without braces or spaces, not the nil UUID.
func ValidateMachineGUID(guid string) error {
	if !machineGUIDPattern.MatchString(guid) {
		return fmt.Errorf("%w: machine GUID %q: want a lower-case UUID without braces, e.g. 6f1c2a34-9b1e-4c3a-8d2f-0a1b2c3d4e5f", ErrInvalidName, guid)
	}
	if guid == NilMachineGUID {
		return fmt.Errorf("%w: machine GUID %q is the nil UUID", ErrInvalidName, guid)
	}
	return nil
}

// ParseMachineGUID returns raw in canonical form (NormalizeMachineGUID)
// after checking that the result is a valid machine GUID
// (ValidateMachineGUID). Every place that takes a machine GUID from outside
// — the registry, a report, a command line, a query — goes through it.
func ParseMachineGUID(raw string) (string, error) {
	g := NormalizeMachineGUID(raw)
	if err := ValidateMachineGUID(g); err != nil {
		if g != raw {
			return "", fmt.Errorf("%w (given as %q)", err, raw)
		}
		return "", err
	}
	return g, nil
}

// ValidateAgentID reports whether id is a well-formed agent id: 1 to 64
// lower-case letters, digits and inner hyphens (NewAgentID makes one).
func ValidateAgentID(id string) error {
	if !agentIDPattern.MatchString(id) {
		return fmt.Errorf("%w: agent id %q: want 1-64 of [a-z0-9-], not starting or ending with '-'", ErrInvalidName, id)
	}
	return nil
}

// NewAgentID returns a fresh random agent id: a lower-case version 4 UUID.
func NewAgentID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// AgentURI is the URI SAN naming agent id: sessionaudit://agent/<id>.
func AgentURI(agentID string) *url.URL {
	return &url.URL{Scheme: Scheme, Host: KindAgent, Path: "/" + agentID}
}

// HostURI is the URI SAN naming the host: sessionaudit://host/<machine GUID>.
func HostURI(machineGUID string) *url.URL {
	return &url.URL{Scheme: Scheme, Host: KindHost, Path: "/" + machineGUID}
}

// AgentNames returns the agent id and machine GUID an agent certificate
// names, each exactly once and in canonical form. It reads names only: it
// does not check who signed the certificate (the collector does that with
// server/pki). URIs of other schemes or kinds are ignored here; the
// collector's stricter check refuses them.
func AgentNames(cert *x509.Certificate) (agentID, machineGUID string, err error) {
	for _, u := range cert.URIs {
		if u.Scheme != Scheme {
			continue
		}
		v := strings.TrimPrefix(u.Path, "/")
		switch u.Host {
		case KindAgent:
			if agentID != "" || ValidateAgentID(v) != nil || u.String() != AgentURI(v).String() {
				return "", "", fmt.Errorf("certificate %s: %w: URI %q is a second or malformed agent id", serial(cert), ErrInvalidName, u)
			}
			agentID = v
		case KindHost:
			if machineGUID != "" || ValidateMachineGUID(v) != nil || u.String() != HostURI(v).String() {
				return "", "", fmt.Errorf("certificate %s: %w: URI %q is a second or malformed machine GUID", serial(cert), ErrInvalidName, u)
			}
			machineGUID = v
		}
	}
	if agentID == "" || machineGUID == "" {
		return "", "", fmt.Errorf("certificate %s carries no agent id and machine GUID (URIs %v)", serial(cert), cert.URIs)
	}
	return agentID, machineGUID, nil
}

// serial is cert's serial number in lower-case hex.
func serial(cert *x509.Certificate) string {
	if cert.SerialNumber == nil {
		return "(no serial)"
	}
	return cert.SerialNumber.Text(16)
}
