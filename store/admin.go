package store

// Enrollment secrets, enrolled agents and analysts' API tokens: the
// collector's access-control data, kept in the same database as the history.
// Secrets and tokens are stored as SHA-256 hashes; the clear value is shown
// once, when it is created.
//
// A presented secret or token is found by the SHA-256 of its value
// (secret_sha256, token_sha256: unique indexes). The index lookup is not
// constant-time, but what it compares is a hash the caller cannot steer
// towards a stored one: learning how many leading bytes of some stored hash
// match a guess reveals nothing usable about the value (SHA-256 is preimage
// resistant), and the values carry 256 random bits. The row found is compared
// again with crypto/subtle. The scheme is docs/design/0003-security.md (C3, C9);
// the tables are in docs/design/0002-storage.md ("Access-control data").

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sessionaudit/sessionaudit/proto/identity"
	"github.com/sessionaudit/sessionaudit/proto/limits"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
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

// Prefixes of the clear values, so that a leaked secret or token is
// recognisable (by people and by secret scanners). The rest of the value is
// 32 random bytes in unpadded base64url (43 characters).
const (
	EnrollmentSecretPrefix = "sae_"
	APITokenPrefix         = "sat_"
)

// Limits of the access-control data's free-text inputs.
const (
	// MaxLabelBytes is the longest secret label or token name accepted.
	MaxLabelBytes = 128
	// MaxSourceBytes is the longest source address accepted.
	MaxSourceBytes = 256
	// maxPresentedBytes is the longest presented secret or token looked up;
	// a longer one cannot be valid.
	maxPresentedBytes = 512
	// lastUsedGranularity: VerifyAPIToken writes last_used only when the
	// stored value is older than this, not on every query.
	lastUsedGranularity = time.Minute
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
	// VDIPool marks a secret for VDI pools (CreateVDIPoolSecret).
	VDIPool bool
}

// NewEnrollment is what EnrollAgent records for a new agent.
type NewEnrollment struct {
	// Secret is the clear enrollment secret the agent presented.
	Secret string
	// AgentID is the id the collector assigned (server/identity.NewAgentID).
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
	// PreviousCertSerial is the certificate issued before CertSerial (empty
	// before the first renewal), for clone detection (docs/design/0003-security.md C6).
	PreviousCertSerial string
	// Source is the network address the agent enrolled from (empty for agents
	// the store learnt of without enrollment).
	Source string
	// CertUsedAt is when the collector first accepted a call with
	// CertSerial (MarkAgentCertificateUsed); zero while it has not. From
	// then on the previous certificate is refused (docs/design/0003-security.md C6).
	CertUsedAt time.Time
	// KeyReuseAt is when a call with a superseded certificate of the agent
	// was first refused (FlagAgentKeyReuse): its key is in use twice, a
	// copied key or a cloned machine; zero when never. KeyReuseSerial is
	// the serial of the latest such call.
	KeyReuseAt     time.Time
	KeyReuseSerial string
}

// MachineEnrolledError is the error behind ErrMachineEnrolled: it names the
// enabled agents that hold the machine GUID, for the alert the collector
// raises (docs/design/0003-security.md C4).
type MachineEnrolledError struct {
	MachineGUID string
	// AgentID is the agent refused (enrolling, or being enabled).
	AgentID string
	// Holders are the enabled agents of the machine GUID (none for a clone
	// of a host whose agents are all disabled).
	Holders []Agent
	// Clone is set when the refused enrollment presented a usable SMBIOS
	// UUID other than the host's: by identity.Match a clone of a golden
	// image, a different machine, which the collector enrols again under
	// its clone host key (identity.CloneHostKey; 0003-security.md,
	// "Machine identity that survives cloning"). HostSMBIOSUUID and
	// SMBIOSUUID are the two UUIDs.
	Clone                      bool
	HostSMBIOSUUID, SMBIOSUUID string
}

// Error names the machine, the refused agent and the holders' enrollments.
func (e *MachineEnrolledError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "store: agent %q for machine %s refused: %v", e.AgentID, e.MachineGUID, ErrMachineEnrolled)
	if e.Clone {
		fmt.Fprintf(&b, " (a clone: SMBIOS UUID %s, the host's is %s)", e.SMBIOSUUID, e.HostSMBIOSUUID)
	}
	b.WriteString(":")
	for i, a := range e.Holders {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " agent %q", a.ID)
		if a.SecretID == "" {
			b.WriteString(" (not enrolled: learnt from its reports)")
			continue
		}
		fmt.Fprintf(&b, " enrolled %s from %q with secret %s", a.EnrolledAt.UTC().Format(time.RFC3339), a.Source, a.SecretID)
	}
	return b.String()
}

// Is reports whether target is ErrMachineEnrolled.
func (e *MachineEnrolledError) Is(target error) bool { return target == ErrMachineEnrolled }

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
//
// The label (1 to MaxLabelBytes bytes of text) says what the secret is for,
// e.g. the site or OU whose Group Policy carries it. A negative maxUses or an
// expiresAt not after now is invalid input.
func (s *Store) CreateEnrollmentSecret(ctx context.Context, label string, maxUses int, expiresAt time.Time) (id, secret string, err error) {
	return s.createEnrollmentSecret(ctx, label, maxUses, expiresAt, false)
}

// CreateVDIPoolSecret is CreateEnrollmentSecret for a VDI pool: an
// enrollment with it of a machine already enrolled supersedes the machine's
// enabled agents without an allowance (AllowReenrollment), when each of them
// was enrolled with a pool secret too: non-persistent desktops lose their
// state at every boot and enroll again (0003-security.md, "Machine identity
// that survives cloning"). A clone is never a re-enrollment.
func (s *Store) CreateVDIPoolSecret(ctx context.Context, label string, maxUses int, expiresAt time.Time) (id, secret string, err error) {
	return s.createEnrollmentSecret(ctx, label, maxUses, expiresAt, true)
}

func (s *Store) createEnrollmentSecret(ctx context.Context, label string, maxUses int, expiresAt time.Time, pool bool) (id, secret string, err error) {
	now := pgTime(s.now())
	if err := validText("label", label, MaxLabelBytes, false); err != nil {
		return "", "", err
	}
	if maxUses < 0 || maxUses > 1<<31-1 {
		return "", "", &FieldError{Field: "maxUses", Reason: fmt.Sprintf("%d is not 0 (unlimited) or a positive 32-bit count", maxUses)}
	}
	if err := validExpiry("expiresAt", expiresAt, now); err != nil {
		return "", "", err
	}
	id, err = newID()
	if err != nil {
		return "", "", err
	}
	secret, sum, err := newCredential(EnrollmentSecretPrefix)
	if err != nil {
		return "", "", err
	}
	var max *int32
	if maxUses > 0 {
		m := int32(maxUses)
		max = &m
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO enrollment_secret (id, label, secret_sha256, max_uses, created_at, expires_at, vdi_pool)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, id, label, sum[:], max, now, tsOpt(pgTime(expiresAt)), pool)
	if err != nil {
		return "", "", fmt.Errorf("store: create enrollment secret %q: %w", label, err)
	}
	return id, secret, nil
}

// ListEnrollmentSecrets lists every secret, newest first.
func (s *Store) ListEnrollmentSecrets(ctx context.Context) ([]EnrollmentSecret, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, label, coalesce(max_uses, 0), uses, created_at, expires_at, revoked_at, vdi_pool
		FROM enrollment_secret ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("store: list enrollment secrets: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (EnrollmentSecret, error) {
		var e EnrollmentSecret
		var expires, revoked pgtype.Timestamptz
		err := r.Scan(&e.ID, &e.Label, &e.MaxUses, &e.Uses, &e.CreatedAt, &expires, &revoked, &e.VDIPool)
		e.CreatedAt, e.ExpiresAt, e.RevokedAt = e.CreatedAt.UTC(), nullTime(expires), nullTime(revoked)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: list enrollment secrets: %w", err)
	}
	return out, nil
}

// RevokeEnrollmentSecret revokes a secret at once; agents enrolled with it
// keep working. Revoking a revoked secret keeps the first revocation time.
func (s *Store) RevokeEnrollmentSecret(ctx context.Context, id string) error {
	if err := validKey("id", id); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE enrollment_secret SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1`,
		id, pgTime(s.now()))
	if err != nil {
		return fmt.Errorf("store: revoke enrollment secret %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: revoke enrollment secret %s: %w", id, ErrNotFound)
	}
	return nil
}

// EnrollAgent atomically uses one use of the secret and records the agent
// (and its host, created by machine GUID when new). It fails with
// ErrBadSecret or ErrMachineEnrolled, and then changes nothing.
//
// The secret is checked first, so that a caller without a valid secret
// learns nothing about the machine GUID. The host's facts are recorded only
// when the enrollment creates the host; later facts come with the reports.
// A re-enrollment allowance (AllowReenrollment) for the GUID is consumed by
// any successful enrollment. Invalid fields (AgentID, Host.MachineGUID,
// CertSerial, Source, an AgentID already taken) fail with a *FieldError.
// The error text says why a secret was refused, for the collector's log; the
// agent must only be told that it was.
func (s *Store) EnrollAgent(ctx context.Context, e NewEnrollment) error {
	if err := validKey("AgentID", e.AgentID); err != nil {
		return err
	}
	guid, err := validMachineGUID("Host.MachineGUID", e.Host.MachineGUID)
	if err != nil {
		return err
	}
	smbios, err := identity.CanonicalSMBIOSUUID(e.Host.SMBIOSUUID)
	if err != nil {
		return &FieldError{Field: "Host.SMBIOSUUID", Reason: err.Error()}
	}
	if err := validKey("CertSerial", e.CertSerial); err != nil {
		return err
	}
	if e.CertNotAfter.IsZero() {
		return &FieldError{Field: "CertNotAfter", Reason: "missing"}
	}
	if err := validText("Source", e.Source, MaxSourceBytes, true); err != nil {
		return err
	}
	presented, ok := presentedHash(e.Secret)
	if !ok {
		return fmt.Errorf("store: enroll agent %q: secret empty or too long: %w", e.AgentID, ErrBadSecret)
	}
	now := pgTime(s.now())
	fact := func(v string) string { c, _ := cleanString(v, limits.MaxStringBytes); return c }

	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The secret's row lock serializes the enrollments that use it, so
		// that the use count cannot be overrun.
		var secretID string
		var stored []byte
		var maxUses *int32
		var uses int32
		var expires, revoked pgtype.Timestamptz
		var pool bool
		err := tx.QueryRow(ctx, `SELECT id, secret_sha256, max_uses, uses, expires_at, revoked_at, vdi_pool
			FROM enrollment_secret WHERE secret_sha256 = $1 FOR UPDATE`, presented[:]).
			Scan(&secretID, &stored, &maxUses, &uses, &expires, &revoked, &pool)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && subtle.ConstantTimeCompare(stored, presented[:]) != 1) {
			return fmt.Errorf("store: enroll agent %q: secret unknown: %w", e.AgentID, ErrBadSecret)
		}
		if err != nil {
			return fmt.Errorf("store: enroll agent %q: read secret: %w", e.AgentID, err)
		}
		switch {
		case revoked.Valid:
			return fmt.Errorf("store: enroll agent %q: secret %s revoked at %s: %w", e.AgentID, secretID, nullTime(revoked).Format(time.RFC3339), ErrBadSecret)
		case expires.Valid && !now.Before(nullTime(expires)):
			return fmt.Errorf("store: enroll agent %q: secret %s expired at %s: %w", e.AgentID, secretID, nullTime(expires).Format(time.RFC3339), ErrBadSecret)
		case maxUses != nil && uses >= *maxUses:
			return fmt.Errorf("store: enroll agent %q: secret %s used up (%d of %d uses): %w", e.AgentID, secretID, uses, *maxUses, ErrBadSecret)
		}
		if _, err := tx.Exec(ctx, `UPDATE enrollment_secret SET uses = uses + 1 WHERE id = $1`, secretID); err != nil {
			return fmt.Errorf("store: enroll agent %q: count the secret's use: %w", e.AgentID, err)
		}

		// The host's row is the lock of everything about the machine GUID
		// (as in Ingest): concurrent enrollments of one GUID take turns.
		hostID, hostSMBIOS, err := lockHost(ctx, tx, guid, smbios, now, e.Host, fact)
		if err != nil {
			return fmt.Errorf("store: enroll agent %q for machine %s: %w", e.AgentID, guid, err)
		}
		holders, err := queryAgents(ctx, tx, `WHERE a.host_id = $1 AND a.disabled_at IS NULL ORDER BY a.agent_id FOR UPDATE OF a`, hostID)
		if err != nil {
			return fmt.Errorf("store: enroll agent %q for machine %s: read its agents: %w", e.AgentID, guid, err)
		}
		// Same machine GUID, another SMBIOS UUID: a clone of the host's
		// image (identity.Match), refused as such even when no enabled
		// agent holds the host, so that it never takes the host's history.
		clone := identity.Match(identity.Machine{MachineGUID: guid, SMBIOSUUID: smbios},
			identity.Machine{MachineGUID: guid, SMBIOSUUID: hostSMBIOS}) == identity.Clone
		if len(holders) > 0 || clone {
			var allowed pgtype.Timestamptz
			err := tx.QueryRow(ctx, `SELECT expires_at FROM reenrollment_allowance WHERE machine_guid = $1 FOR UPDATE`, guid).Scan(&allowed)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("store: enroll agent %q for machine %s: read re-enrollment allowance: %w", e.AgentID, guid, err)
			}
			if (!allowed.Valid || !now.Before(nullTime(allowed))) && !(pool && !clone && poolHolders(ctx, tx, holders)) {
				// An allowance is the admin's word that this is the same
				// machine (a VM moved to another hypervisor changes its
				// SMBIOS UUID); without one, a clone is told apart.
				return &MachineEnrolledError{MachineGUID: guid, AgentID: e.AgentID, Holders: holders,
					Clone: clone, HostSMBIOSUUID: hostSMBIOS, SMBIOSUUID: smbios}
			}
			ids := make([]string, len(holders))
			for i, a := range holders {
				ids[i] = a.ID
			}
			if _, err := tx.Exec(ctx, `UPDATE agent SET disabled_at = $2 WHERE agent_id = ANY($1)`, ids, now); err != nil {
				return fmt.Errorf("store: enroll agent %q for machine %s: disable the agents it replaces: %w", e.AgentID, guid, err)
			}
		}
		if smbios != "" && smbios != hostSMBIOS {
			// A host enrolled before issue 3/7 learns its SMBIOS UUID; an
			// allowed re-enrollment takes the new one.
			if _, err := tx.Exec(ctx, `UPDATE host SET smbios_uuid = $2 WHERE host_id = $1`, hostID, smbios); err != nil {
				return fmt.Errorf("store: enroll agent %q for machine %s: record the SMBIOS UUID: %w", e.AgentID, guid, err)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM reenrollment_allowance WHERE machine_guid = $1`, guid); err != nil {
			return fmt.Errorf("store: enroll agent %q for machine %s: consume re-enrollment allowance: %w", e.AgentID, guid, err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO agent (agent_id, host_id, first_received, last_received,
				secret_id, enrolled_at, cert_serial, cert_not_after, source_addr)
			VALUES ($1, $2, NULL, NULL, $3, $4, $5, $6, $7)`,
			e.AgentID, hostID, secretID, now, e.CertSerial, pgTime(e.CertNotAfter), e.Source)
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "23505" {
			return &FieldError{Field: "AgentID", Reason: fmt.Sprintf("%q is already an agent", e.AgentID)}
		}
		if err != nil {
			return fmt.Errorf("store: enroll agent %q for machine %s: %w", e.AgentID, guid, err)
		}
		return nil
	})
	return err
}

// poolHolders reports whether every one of holders was enrolled with a VDI
// pool secret (CreateVDIPoolSecret); false when it cannot tell.
func poolHolders(ctx context.Context, tx pgx.Tx, holders []Agent) bool {
	ids := make([]string, len(holders))
	for i, a := range holders {
		ids[i] = a.ID
	}
	var all bool
	err := tx.QueryRow(ctx, `SELECT count(*) = $2 FROM agent a JOIN enrollment_secret s ON s.id = a.secret_id
		WHERE a.agent_id = ANY($1) AND s.vdi_pool`, ids, len(ids)).Scan(&all)
	return err == nil && all
}

// lockHost returns the host_id of guid and the SMBIOS UUID it has on
// record, creating the host with the given facts and smbios when it is new,
// and holds the host's row lock.
func lockHost(ctx context.Context, tx pgx.Tx, guid, smbios string, now time.Time, h Host, fact func(string) string) (int32, string, error) {
	var id int32
	err := tx.QueryRow(ctx, `INSERT INTO host (machine_guid, hostname, domain, os_caption, os_version, os_build,
			agent_version, first_received, last_received, smbios_uuid)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)
		ON CONFLICT (machine_guid) DO NOTHING RETURNING host_id`,
		guid, fact(h.Hostname), fact(h.Domain), fact(h.OSCaption), fact(h.OSVersion), fact(h.OSBuild),
		fact(h.AgentVersion), now, smbios).Scan(&id)
	if err == nil {
		return id, smbios, nil // new: the insert holds its lock
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, "", fmt.Errorf("create host: %w", err)
	}
	// Hosts are never deleted, so the conflicting row is still there.
	var stored string
	if err := tx.QueryRow(ctx, `SELECT host_id, smbios_uuid FROM host WHERE machine_guid = $1 FOR UPDATE`, guid).Scan(&id, &stored); err != nil {
		return 0, "", fmt.Errorf("lock host: %w", err)
	}
	return id, stored, nil
}

// AllowReenrollment lets the next enrollment of machineGUID succeed although
// an enabled agent holds it, until expiresAt; that enrollment disables the
// old agent in the same transaction.
//
// A new allowance replaces the previous one of the GUID. The GUID need not be
// known yet. expiresAt must be after now.
func (s *Store) AllowReenrollment(ctx context.Context, machineGUID string, expiresAt time.Time) error {
	guid, err := validMachineGUID("machineGUID", machineGUID)
	if err != nil {
		return err
	}
	now := pgTime(s.now())
	if expiresAt.IsZero() {
		return &FieldError{Field: "expiresAt", Reason: "missing: an allowance must expire"}
	}
	if err := validExpiry("expiresAt", expiresAt, now); err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO reenrollment_allowance (machine_guid, expires_at, created_at) VALUES ($1, $2, $3)
		ON CONFLICT (machine_guid) DO UPDATE SET expires_at = excluded.expires_at, created_at = excluded.created_at`,
		guid, pgTime(expiresAt), now)
	if err != nil {
		return fmt.Errorf("store: allow re-enrollment of machine %s: %w", guid, err)
	}
	return nil
}

// agentSelect reads Agent values; queryAgents appends the rest of the query.
const agentSelect = `SELECT a.agent_id, h.machine_guid, h.hostname, coalesce(a.secret_id, ''), a.enrolled_at,
	a.disabled_at, coalesce(a.cert_serial, ''), a.cert_not_after, coalesce(a.previous_cert_serial, ''),
	coalesce(a.source_addr, ''), a.last_received, a.cert_used_at, a.key_reuse_at, coalesce(a.key_reuse_serial, '')
	FROM agent a JOIN host h ON h.host_id = a.host_id `

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func queryAgents(ctx context.Context, q querier, rest string, args ...any) ([]Agent, error) {
	rows, err := q.Query(ctx, agentSelect+rest, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Agent, error) {
		var a Agent
		var enrolled, disabled, notAfter, last, used, reuse pgtype.Timestamptz
		err := r.Scan(&a.ID, &a.MachineGUID, &a.Hostname, &a.SecretID, &enrolled, &disabled,
			&a.CertSerial, &notAfter, &a.PreviousCertSerial, &a.Source, &last, &used, &reuse, &a.KeyReuseSerial)
		a.EnrolledAt, a.DisabledAt, a.CertNotAfter, a.LastReceived = nullTime(enrolled), nullTime(disabled), nullTime(notAfter), nullTime(last)
		a.CertUsedAt, a.KeyReuseAt = nullTime(used), nullTime(reuse)
		a.Disabled = disabled.Valid
		return a, err
	})
}

// Agent returns one agent, or an error matching ErrNotFound.
func (s *Store) Agent(ctx context.Context, id string) (Agent, error) {
	if err := validKey("id", id); err != nil {
		return Agent{}, err
	}
	as, err := queryAgents(ctx, s.pool, `WHERE a.agent_id = $1`, id)
	if err != nil {
		return Agent{}, fmt.Errorf("store: read agent %q: %w", id, err)
	}
	if len(as) == 0 {
		return Agent{}, fmt.Errorf("store: agent %q: %w", id, ErrNotFound)
	}
	return as[0], nil
}

// ListAgents lists every agent, ordered by host name then id.
func (s *Store) ListAgents(ctx context.Context) ([]Agent, error) {
	as, err := queryAgents(ctx, s.pool, `ORDER BY h.hostname, a.agent_id`)
	if err != nil {
		return nil, fmt.Errorf("store: list agents: %w", err)
	}
	return as, nil
}

// SetAgentDisabled disables or enables an agent. A disabled agent's
// certificate stops working at the next call the collector checks.
//
// Disabling a disabled agent keeps the first time. Enabling an agent whose
// machine GUID another enabled agent holds fails with a
// *MachineEnrolledError: one enabled agent per machine (docs/design/0003-security.md C4).
func (s *Store) SetAgentDisabled(ctx context.Context, id string, disabled bool) error {
	if err := validKey("id", id); err != nil {
		return err
	}
	now := pgTime(s.now())
	if disabled {
		tag, err := s.pool.Exec(ctx, `UPDATE agent SET disabled_at = coalesce(disabled_at, $2) WHERE agent_id = $1`, id, now)
		if err != nil {
			return fmt.Errorf("store: disable agent %q: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("store: disable agent %q: %w", id, ErrNotFound)
		}
		return nil
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Host lock first, as EnrollAgent and Ingest take it.
		var guid string
		err := tx.QueryRow(ctx, `SELECT h.machine_guid FROM host h
			WHERE h.host_id = (SELECT host_id FROM agent WHERE agent_id = $1) FOR UPDATE`, id).Scan(&guid)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("store: enable agent %q: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("store: enable agent %q: lock its host: %w", id, err)
		}
		others, err := queryAgents(ctx, tx, `WHERE h.machine_guid = $1 AND a.agent_id <> $2 AND a.disabled_at IS NULL
			ORDER BY a.agent_id`, guid, id)
		if err != nil {
			return fmt.Errorf("store: enable agent %q: read the host's agents: %w", id, err)
		}
		if len(others) > 0 {
			return &MachineEnrolledError{MachineGUID: guid, AgentID: id, Holders: others}
		}
		tag, err := tx.Exec(ctx, `UPDATE agent SET disabled_at = NULL
			WHERE agent_id = $1 AND host_id = (SELECT host_id FROM host WHERE machine_guid = $2)`, id, guid)
		if err != nil {
			return fmt.Errorf("store: enable agent %q: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("store: enable agent %q: it moved to another host meanwhile; try again", id)
		}
		return nil
	})
}

// RecordAgentCertificate records the certificate issued to an agent at
// renewal.
//
// The agent's current serial becomes its previous one, and the new one is
// not used yet (CertUsedAt); recording the current serial again (a retried
// call) changes nothing.
func (s *Store) RecordAgentCertificate(ctx context.Context, id, serial string, notAfter time.Time) error {
	if err := validKey("id", id); err != nil {
		return err
	}
	if err := validKey("serial", serial); err != nil {
		return err
	}
	if notAfter.IsZero() {
		return &FieldError{Field: "notAfter", Reason: "missing"}
	}
	tag, err := s.pool.Exec(ctx, `UPDATE agent SET previous_cert_serial = cert_serial, cert_serial = $2, cert_not_after = $3,
		cert_used_at = NULL
		WHERE agent_id = $1 AND cert_serial IS DISTINCT FROM $2`, id, serial, pgTime(notAfter))
	if err != nil {
		return fmt.Errorf("store: record certificate %s of agent %q: %w", serial, id, err)
	}
	if tag.RowsAffected() == 0 {
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM agent WHERE agent_id = $1)`, id).Scan(&exists); err != nil {
			return fmt.Errorf("store: record certificate %s of agent %q: %w", serial, id, err)
		}
		if !exists {
			return fmt.Errorf("store: record certificate %s of agent %q: %w", serial, id, ErrNotFound)
		}
	}
	return nil
}

// MarkAgentCertificateUsed records that the collector accepted a call of
// the agent with the certificate serial: when serial is the agent's latest
// (CertSerial) and not marked yet, CertUsedAt becomes now, and from then on
// its previous certificate is refused (docs/design/0003-security.md C6). It
// reports whether it marked it; any other serial, or an unknown agent,
// changes nothing.
func (s *Store) MarkAgentCertificateUsed(ctx context.Context, id, serial string) (bool, error) {
	if err := validKey("id", id); err != nil {
		return false, err
	}
	if err := validKey("serial", serial); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE agent SET cert_used_at = $3
		WHERE agent_id = $1 AND lower(cert_serial) = lower($2) AND cert_used_at IS NULL`, id, serial, pgTime(s.now()))
	if err != nil {
		return false, fmt.Errorf("store: mark certificate %s of agent %q used: %w", serial, id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// FlagAgentKeyReuse flags an agent whose superseded certificate serial was
// presented after its successor had been used: the agent's key is in use
// twice (docs/design/0003-security.md C6). The first time is kept
// (KeyReuseAt), the serial is the latest presented. The flag stays until an
// admin disables the agent (the hosts list shows it only for enabled
// agents). An unknown agent is ErrNotFound.
func (s *Store) FlagAgentKeyReuse(ctx context.Context, id, serial string) error {
	if err := validKey("id", id); err != nil {
		return err
	}
	if err := validKey("serial", serial); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE agent SET key_reuse_at = coalesce(key_reuse_at, $3), key_reuse_serial = $2
		WHERE agent_id = $1`, id, serial, pgTime(s.now()))
	if err != nil {
		return fmt.Errorf("store: flag agent %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: flag agent %q: %w", id, ErrNotFound)
	}
	return nil
}

// CreateAPIToken makes a token for an analyst and returns its id and clear
// value, which is not stored. A zero expiresAt means it never expires.
//
// The name (1 to MaxLabelBytes bytes of text) is the analyst's, logged with
// every query. role is RoleReader or RoleAdmin.
func (s *Store) CreateAPIToken(ctx context.Context, name string, role Role, expiresAt time.Time) (id, token string, err error) {
	now := pgTime(s.now())
	if err := validText("name", name, MaxLabelBytes, false); err != nil {
		return "", "", err
	}
	if role != RoleReader && role != RoleAdmin {
		return "", "", &FieldError{Field: "role", Reason: fmt.Sprintf("%q is not %q or %q", role, RoleReader, RoleAdmin)}
	}
	if err := validExpiry("expiresAt", expiresAt, now); err != nil {
		return "", "", err
	}
	id, err = newID()
	if err != nil {
		return "", "", err
	}
	token, sum, err := newCredential(APITokenPrefix)
	if err != nil {
		return "", "", err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO api_token (id, name, role, token_sha256, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, id, name, string(role), sum[:], now, tsOpt(pgTime(expiresAt)))
	if err != nil {
		return "", "", fmt.Errorf("store: create API token %q: %w", name, err)
	}
	return id, token, nil
}

// VerifyAPIToken returns the token's description, or an error matching
// ErrBadToken. It records the time of use.
//
// The time of use is written at most once a minute per token, so that
// queries do not each cost a write.
func (s *Store) VerifyAPIToken(ctx context.Context, token string) (APIToken, error) {
	presented, ok := presentedHash(token)
	if !ok || !strings.HasPrefix(strings.TrimSpace(token), APITokenPrefix) {
		return APIToken{}, fmt.Errorf("store: API token malformed: %w", ErrBadToken)
	}
	now := pgTime(s.now())
	var t APIToken
	var stored []byte
	var role string
	var expires, revoked, used pgtype.Timestamptz
	err := s.pool.QueryRow(ctx, `SELECT id, name, role, token_sha256, created_at, expires_at, revoked_at, last_used
		FROM api_token WHERE token_sha256 = $1`, presented[:]).
		Scan(&t.ID, &t.Name, &role, &stored, &t.CreatedAt, &expires, &revoked, &used)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && subtle.ConstantTimeCompare(stored, presented[:]) != 1) {
		return APIToken{}, fmt.Errorf("store: API token unknown: %w", ErrBadToken)
	}
	if err != nil {
		return APIToken{}, fmt.Errorf("store: verify API token: %w", err)
	}
	t.Role, t.CreatedAt = Role(role), t.CreatedAt.UTC()
	t.ExpiresAt, t.RevokedAt, t.LastUsed = nullTime(expires), nullTime(revoked), nullTime(used)
	switch {
	case revoked.Valid:
		return APIToken{}, fmt.Errorf("store: API token %s (%q) revoked at %s: %w", t.ID, t.Name, t.RevokedAt.Format(time.RFC3339), ErrBadToken)
	case expires.Valid && !now.Before(t.ExpiresAt):
		return APIToken{}, fmt.Errorf("store: API token %s (%q) expired at %s: %w", t.ID, t.Name, t.ExpiresAt.Format(time.RFC3339), ErrBadToken)
	}
	if t.LastUsed.IsZero() || now.Sub(t.LastUsed) >= lastUsedGranularity {
		// Conditional, so that concurrent verifications write once.
		_, err := s.pool.Exec(ctx, `UPDATE api_token SET last_used = $2
			WHERE id = $1 AND (last_used IS NULL OR last_used <= $3)`, t.ID, now, now.Add(-lastUsedGranularity))
		if err != nil {
			return APIToken{}, fmt.Errorf("store: record use of API token %s: %w", t.ID, err)
		}
		t.LastUsed = now
	}
	return t, nil
}

// ListAPITokens lists every token, newest first.
func (s *Store) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, role, created_at, expires_at, revoked_at, last_used
		FROM api_token ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("store: list API tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIToken, error) {
		var t APIToken
		var role string
		var expires, revoked, used pgtype.Timestamptz
		err := r.Scan(&t.ID, &t.Name, &role, &t.CreatedAt, &expires, &revoked, &used)
		t.Role, t.CreatedAt = Role(role), t.CreatedAt.UTC()
		t.ExpiresAt, t.RevokedAt, t.LastUsed = nullTime(expires), nullTime(revoked), nullTime(used)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: list API tokens: %w", err)
	}
	return out, nil
}

// RevokeAPIToken revokes a token at once.
//
// Revoking a revoked token keeps the first revocation time; an unknown id is
// ErrNotFound.
func (s *Store) RevokeAPIToken(ctx context.Context, id string) error {
	if err := validKey("id", id); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE api_token SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1`, id, pgTime(s.now()))
	if err != nil {
		return fmt.Errorf("store: revoke API token %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: revoke API token %s: %w", id, ErrNotFound)
	}
	return nil
}

// newID returns a short random id (16 hex digits) for a secret or token. It
// is public: it names the credential in lists and logs.
func newID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("store: random id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// newCredential returns a clear value (prefix and 256 random bits) and its
// SHA-256.
func newCredential(prefix string) (string, [sha256.Size]byte, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", [sha256.Size]byte{}, fmt.Errorf("store: random credential: %w", err)
	}
	v := prefix + base64.RawURLEncoding.EncodeToString(b[:])
	return v, sha256.Sum256([]byte(v)), nil
}

// presentedHash returns the SHA-256 of a presented secret or token, without
// surrounding white space (copied from a policy or a file); false when it is
// empty or too long to be one.
func presentedHash(v string) ([sha256.Size]byte, bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > maxPresentedBytes {
		return [sha256.Size]byte{}, false
	}
	return sha256.Sum256([]byte(v)), true
}

// validText checks a free-text parameter: valid UTF-8 without control
// characters, at most max bytes, and not empty unless emptyOK.
func validText(field, s string, max int, emptyOK bool) error {
	switch {
	case s == "" && !emptyOK:
		return &FieldError{Field: field, Reason: "empty"}
	case strings.TrimSpace(s) == "" && s != "":
		return &FieldError{Field: field, Reason: "only white space"}
	case len(s) > max:
		return &FieldError{Field: field, Reason: fmt.Sprintf("%d bytes, longer than %d", len(s), max)}
	case !utf8.ValidString(s):
		return &FieldError{Field: field, Reason: "not valid UTF-8"}
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return &FieldError{Field: field, Reason: "contains a control character"}
	}
	return nil
}

// validExpiry checks an optional expiry: zero, or after now.
func validExpiry(field string, t, now time.Time) error {
	if !t.IsZero() && !pgTime(t).After(now) {
		return &FieldError{Field: field, Reason: fmt.Sprintf("%s is not after now (%s)", t.UTC().Format(time.RFC3339), now.Format(time.RFC3339))}
	}
	return nil
}

// HostsNamedLike returns the machine GUIDs of the other hosts, with an
// enabled agent, whose host name and domain equal hostname and domain
// (without regard to case), excluding machineGUID: a new enrollment that
// takes the name of a known host may be a fake host (docs/design/0003-security.md C12).
func (s *Store) HostsNamedLike(ctx context.Context, hostname, domain, machineGUID string) ([]string, error) {
	if hostname == "" {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT h.machine_guid FROM host h JOIN agent a ON a.host_id = h.host_id
		WHERE lower(h.hostname) = lower($1) AND lower(h.domain) = lower($2) AND h.machine_guid <> $3
		  AND a.disabled_at IS NULL
		ORDER BY h.machine_guid`, hostname, domain, machineGUID)
	if err != nil {
		return nil, fmt.Errorf("store: find hosts named %q: %w", hostname, err)
	}
	guids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: find hosts named %q: %w", hostname, err)
	}
	return guids, nil
}
