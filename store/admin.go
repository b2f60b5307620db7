package store

// Enrollment secrets, enrolled agents and analysts' API tokens: the
// collector's access-control data, kept in the same database as the history.
// Secrets and tokens are stored as SHA-256 hashes; the clear value is shown
// once, when it is created.

import (
	"context"
	"errors"
	"time"
)

// Errors of the access-control data. Each is matched with errors.Is; the
// errors returned wrap them with the input they concern.
var (
	// ErrNotFound: no such agent, secret or token.
	ErrNotFound = errors.New("not found")
	// ErrBadSecret: the enrollment secret is unknown, revoked, expired or
	// used up. Callers must not tell an agent which.
	ErrBadSecret = errors.New("enrollment secret not valid")
	// ErrMachineEnrolled: the machine GUID is held by an enabled agent and no
	// admin allowed a re-enrollment.
	ErrMachineEnrolled = errors.New("machine already enrolled by an enabled agent")
	// ErrBadToken: the API token is unknown, revoked or expired.
	ErrBadToken = errors.New("API token not valid")
)

// Role is what an analyst may do.
type Role string

// Roles.
const (
	// RoleReader may run queries.
	RoleReader Role = "reader"
	// RoleAdmin may run queries and administer the collector.
	RoleAdmin Role = "admin"
)

// EnrollmentSecret describes an enrollment secret (never its value).
type EnrollmentSecret struct {
	ID    string
	Label string
	// MaxUses is 0 for unlimited.
	MaxUses int
	Uses    int
	// ExpiresAt and RevokedAt are zero when not set.
	CreatedAt, ExpiresAt, RevokedAt time.Time
}

// NewEnrollment is what EnrollAgent records for a new agent.
type NewEnrollment struct {
	// Secret is the clear enrollment secret the agent presented.
	Secret string
	// AgentID is the id the collector assigned (server/pki.NewAgentID).
	AgentID string
	// Host carries the machine GUID (required) and the facts the agent sent.
	Host Host
	// CertSerial and CertNotAfter describe the certificate issued.
	CertSerial   string
	CertNotAfter time.Time
	// Source is the agent's network address, for the audit trail.
	Source string
}

// Agent is an enrolled agent.
type Agent struct {
	ID          string
	MachineGUID string
	Hostname    string
	// SecretID is the enrollment secret used (empty for agents the store
	// learnt of without enrollment, e.g. in tests).
	SecretID   string
	EnrolledAt time.Time
	Disabled   bool
	// DisabledAt is zero while enabled.
	DisabledAt   time.Time
	CertSerial   string
	CertNotAfter time.Time
	// LastReceived is when the collector last received a report from it.
	LastReceived time.Time
}

// APIToken describes an analyst's API token (never its value).
type APIToken struct {
	ID   string
	Name string
	Role Role
	// ExpiresAt, RevokedAt and LastUsed are zero when not set.
	CreatedAt, ExpiresAt, RevokedAt, LastUsed time.Time
}

// CreateEnrollmentSecret makes a new secret and returns its id and its clear
// value, which is not stored. maxUses 0 means unlimited; a zero expiresAt
// means it never expires.
func (s *Store) CreateEnrollmentSecret(ctx context.Context, label string, maxUses int, expiresAt time.Time) (id, secret string, err error) {
	panic("unimplemented")
}

// ListEnrollmentSecrets lists every secret, newest first.
func (s *Store) ListEnrollmentSecrets(ctx context.Context) ([]EnrollmentSecret, error) {
	panic("unimplemented")
}

// RevokeEnrollmentSecret revokes a secret at once; agents enrolled with it
// keep working.
func (s *Store) RevokeEnrollmentSecret(ctx context.Context, id string) error {
	panic("unimplemented")
}

// EnrollAgent atomically uses one use of the secret and records the agent
// (and its host, created by machine GUID when new). It fails with
// ErrBadSecret or ErrMachineEnrolled, and then changes nothing.
func (s *Store) EnrollAgent(ctx context.Context, e NewEnrollment) error {
	panic("unimplemented")
}

// AllowReenrollment lets the next enrollment of machineGUID succeed although
// an enabled agent holds it, until expiresAt; that enrollment disables the
// old agent in the same transaction.
func (s *Store) AllowReenrollment(ctx context.Context, machineGUID string, expiresAt time.Time) error {
	panic("unimplemented")
}

// Agent returns one agent, or an error matching ErrNotFound.
func (s *Store) Agent(ctx context.Context, id string) (Agent, error) {
	panic("unimplemented")
}

// ListAgents lists every agent, ordered by host name then id.
func (s *Store) ListAgents(ctx context.Context) ([]Agent, error) {
	panic("unimplemented")
}

// SetAgentDisabled disables or enables an agent. A disabled agent's
// certificate stops working at the next call the collector checks.
func (s *Store) SetAgentDisabled(ctx context.Context, id string, disabled bool) error {
	panic("unimplemented")
}

// RecordAgentCertificate records the certificate issued to an agent at
// renewal.
func (s *Store) RecordAgentCertificate(ctx context.Context, id, serial string, notAfter time.Time) error {
	panic("unimplemented")
}

// CreateAPIToken makes a token for an analyst and returns its id and clear
// value, which is not stored. A zero expiresAt means it never expires.
func (s *Store) CreateAPIToken(ctx context.Context, name string, role Role, expiresAt time.Time) (id, token string, err error) {
	panic("unimplemented")
}

// VerifyAPIToken returns the token's description, or an error matching
// ErrBadToken. It records the time of use.
func (s *Store) VerifyAPIToken(ctx context.Context, token string) (APIToken, error) {
	panic("unimplemented")
}

// ListAPITokens lists every token, newest first.
func (s *Store) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	panic("unimplemented")
}

// RevokeAPIToken revokes a token at once.
func (s *Store) RevokeAPIToken(ctx context.Context, id string) error {
	panic("unimplemented")
}
