package store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/limits"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionaudit/sessionaudit/store/storetest"
)

// fakeClock is the store's clock in the access-control tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newAdminStore is newTestStore with a clock the test moves, starting at
// t0+30d.
func newAdminStore(t *testing.T) (*Store, *fakeClock) {
	t.Helper()
	url := storetest.NewDatabase(t, Migrate)
	ctx := context.Background()
	clock := &fakeClock{t: t0.Add(30 * 24 * time.Hour)}
	s, err := Open(ctx, url, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.EnsurePartitionsBetween(ctx, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	return s, clock
}

func guidN(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

var certNotAfter = t0.Add(37 * 24 * time.Hour)

func enrollment(secret, agentID, machineGUID string) NewEnrollment {
	return NewEnrollment{
		Secret:       secret,
		AgentID:      agentID,
		Host:         Host{MachineGUID: machineGUID, Hostname: "host-" + agentID, Domain: "contoso.local", OSCaption: "Windows 11"},
		CertSerial:   "serial-" + agentID,
		CertNotAfter: certNotAfter,
		Source:       "192.0.2.10:50000",
	}
}

func mustSecret(t *testing.T, s *Store, label string, maxUses int, expiresAt time.Time) (string, string) {
	t.Helper()
	id, secret, err := s.CreateEnrollmentSecret(context.Background(), label, maxUses, expiresAt)
	if err != nil {
		t.Fatalf("CreateEnrollmentSecret: %v", err)
	}
	return id, secret
}

func mustEnroll(t *testing.T, s *Store, e NewEnrollment) {
	t.Helper()
	if err := s.EnrollAgent(context.Background(), e); err != nil {
		t.Fatalf("EnrollAgent %s: %v", e.AgentID, err)
	}
}

func secretByID(t *testing.T, s *Store, id string) EnrollmentSecret {
	t.Helper()
	list, err := s.ListEnrollmentSecrets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if e.ID == id {
			return e
		}
	}
	t.Fatalf("secret %s not listed", id)
	return EnrollmentSecret{}
}

func mustAgent(t *testing.T, s *Store, id string) Agent {
	t.Helper()
	a, err := s.Agent(context.Background(), id)
	if err != nil {
		t.Fatalf("Agent %s: %v", id, err)
	}
	return a
}

// ingestFor stores one full report of agentID for machineGUID, creating the
// agent as Ingest does for agents it has not seen.
func ingestFor(t *testing.T, s *Store, agentID, machineGUID, hostname string) {
	t.Helper()
	res, err := s.Ingest(context.Background(), agentID, machineGUID, []Report{{Sequence: 1, Kind: KindSnapshot, TakenAt: t0,
		Host: &Host{MachineGUID: machineGUID, Hostname: hostname}}})
	if err != nil || len(res.Rejected) > 0 {
		t.Fatalf("Ingest: %v %v", err, res.Rejected)
	}
}

func countRows(t *testing.T, s *Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A secret is created with its limits, counts its uses, and refuses the
// enrollment past its last use without changing anything.
func TestEnrollmentSecretLifecycle(t *testing.T) {
	s, clock := newAdminStore(t)
	ctx := context.Background()
	now := clock.Now()
	expires := now.Add(24 * time.Hour)
	id, secret := mustSecret(t, s, "site Paris", 2, expires)
	if !strings.HasPrefix(secret, EnrollmentSecretPrefix) {
		t.Errorf("secret %q lacks the prefix %q", secret, EnrollmentSecretPrefix)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(secret, EnrollmentSecretPrefix)); err != nil || len(raw) != 32 {
		t.Errorf("secret %q: body is not 32 bytes of base64url (%d bytes, %v)", secret, len(raw), err)
	}
	if len(id) != 16 {
		t.Errorf("id %q: want 16 hex digits", id)
	}
	want := EnrollmentSecret{ID: id, Label: "site Paris", MaxUses: 2, CreatedAt: now, ExpiresAt: expires}
	if got := secretByID(t, s, id); got != want {
		t.Errorf("listed %+v, want %+v", got, want)
	}

	e := enrollment(secret, "agent-a", "{4C4C4544-0042-3510-8052-B4C04F4D4E31}")
	mustEnroll(t, s, e)
	if got := secretByID(t, s, id).Uses; got != 1 {
		t.Errorf("uses after one enrollment = %d, want 1", got)
	}
	a := mustAgent(t, s, "agent-a")
	wantAgent := Agent{ID: "agent-a", MachineGUID: guid, Hostname: "host-agent-a", SecretID: id, EnrolledAt: now,
		CertSerial: "serial-agent-a", CertNotAfter: certNotAfter, Source: "192.0.2.10:50000"}
	if a != wantAgent {
		t.Errorf("agent = %+v\nwant     %+v", a, wantAgent)
	}

	mustEnroll(t, s, enrollment(secret, "agent-b", guidN(2)))
	err := s.EnrollAgent(ctx, enrollment(secret, "agent-c", guidN(3)))
	if !errors.Is(err, ErrBadSecret) {
		t.Fatalf("third enrollment with a 2-use secret: %v, want ErrBadSecret", err)
	}
	if got := secretByID(t, s, id).Uses; got != 2 {
		t.Errorf("uses = %d, want 2", got)
	}
	if _, err := s.Agent(ctx, "agent-c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused agent: Agent = %v, want ErrNotFound", err)
	}
	if n := countRows(t, s, `SELECT count(*) FROM host WHERE machine_guid = $1`, guidN(3)); n != 0 {
		t.Errorf("refused enrollment created its host")
	}
}

// Unknown, expired and revoked secrets are all ErrBadSecret, and a refusal
// changes nothing.
func TestEnrollmentSecretRefusals(t *testing.T) {
	s, clock := newAdminStore(t)
	ctx := context.Background()
	expID, expSecret := mustSecret(t, s, "expiring", 0, clock.Now().Add(time.Hour))
	revID, revSecret := mustSecret(t, s, "revoked", 0, time.Time{})
	// Both work at first.
	mustEnroll(t, s, enrollment(expSecret, "agent-1", guidN(1)))
	mustEnroll(t, s, enrollment(revSecret, "agent-2", guidN(2)))

	clock.Add(time.Hour)
	revokedAt := clock.Now()
	if err := s.RevokeEnrollmentSecret(ctx, revID); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if err := s.RevokeEnrollmentSecret(ctx, revID); err != nil {
		t.Fatalf("revoking again: %v", err)
	}
	if got := secretByID(t, s, revID).RevokedAt; !got.Equal(revokedAt) {
		t.Errorf("revoked at %v, want the first revocation %v", got, revokedAt)
	}
	if err := s.RevokeEnrollmentSecret(ctx, "0123456789abcdef"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking an unknown secret: %v, want ErrNotFound", err)
	}

	unknown, _, err := newCredential(EnrollmentSecretPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, secret string }{
		{"expired", expSecret},
		{"revoked", revSecret},
		{"unknown", unknown},
		{"empty", ""},
		{"another prefix", "sat_" + strings.TrimPrefix(expSecret, EnrollmentSecretPrefix)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := s.EnrollAgent(ctx, enrollment(tt.secret, "agent-x", guidN(9)))
			if !errors.Is(err, ErrBadSecret) {
				t.Fatalf("EnrollAgent: %v, want ErrBadSecret", err)
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("the error repeats the secret: %v", err)
			}
		})
	}
	for _, id := range []string{expID, revID} {
		if got := secretByID(t, s, id).Uses; got != 1 {
			t.Errorf("secret %s: uses = %d after refusals, want 1", id, got)
		}
	}
	if n := countRows(t, s, `SELECT count(*) FROM agent`); n != 2 {
		t.Errorf("%d agents, want the 2 enrolled before the refusals", n)
	}
	// Agents enrolled with the revoked secret keep working.
	if a := mustAgent(t, s, "agent-2"); a.Disabled {
		t.Errorf("agent of a revoked secret was disabled")
	}
}

// Neither the clear secret nor the clear token is stored anywhere in the
// database; their SHA-256 is.
func TestSecretsAndTokensStoredHashed(t *testing.T) {
	s, _ := newAdminStore(t)
	ctx := context.Background()
	sid, secret := mustSecret(t, s, "hashed", 0, time.Time{})
	mustEnroll(t, s, enrollment(secret, "agent-1", guidN(1)))
	tid, token, err := s.CreateAPIToken(ctx, "alice", RoleAdmin, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyAPIToken(ctx, token); err != nil {
		t.Fatal(err)
	}
	rows, err := s.pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var dump strings.Builder
	for _, tb := range tables {
		var text string
		if err := s.pool.QueryRow(ctx, fmt.Sprintf(`SELECT coalesce(string_agg(t::text, E'\n'), '') FROM %q t`, tb)).Scan(&text); err != nil {
			t.Fatal(err)
		}
		dump.WriteString(strings.ToLower(text))
	}
	if !strings.Contains(dump.String(), sid) || !strings.Contains(dump.String(), tid) {
		t.Fatalf("the dump of %v lacks the secret's or the token's id: the scan sees nothing", tables)
	}
	for what, v := range map[string]string{"secret": secret, "token": token} {
		body := v[len(EnrollmentSecretPrefix):]
		raw, err := base64.RawURLEncoding.DecodeString(body)
		if err != nil {
			t.Fatal(err)
		}
		for _, form := range []string{body, hex.EncodeToString(raw)} {
			if strings.Contains(dump.String(), strings.ToLower(form)) {
				t.Errorf("the %s is stored in clear (%q)", what, form)
			}
		}
	}
	sum := sha256.Sum256([]byte(secret))
	if n := countRows(t, s, `SELECT count(*) FROM enrollment_secret WHERE id = $1 AND secret_sha256 = $2`, sid, sum[:]); n != 1 {
		t.Errorf("secret_sha256 is not the SHA-256 of the secret")
	}
	sum = sha256.Sum256([]byte(token))
	if n := countRows(t, s, `SELECT count(*) FROM api_token WHERE id = $1 AND token_sha256 = $2`, tid, sum[:]); n != 1 {
		t.Errorf("token_sha256 is not the SHA-256 of the token")
	}
}

// enrollRace enrolls the agents at once and returns their errors. The pool's
// connections are opened first, so that connecting does not stagger them.
func enrollRace(t *testing.T, s *Store, es []NewEnrollment) []error {
	t.Helper()
	var conns []*pgxpool.Conn
	for range s.pool.Config().MaxConns {
		c, err := s.pool.Acquire(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	errs := make([]error, len(es))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, e := range es {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = s.EnrollAgent(context.Background(), e)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// Enrollments racing for the last use of a secret: exactly one wins.
func TestConcurrentEnrollmentsForTheLastUse(t *testing.T) {
	s, _ := newAdminStore(t)
	id, secret := mustSecret(t, s, "one use", 1, time.Time{})
	var es []NewEnrollment
	for i := range 16 {
		es = append(es, enrollment(secret, fmt.Sprintf("agent-%d", i), guidN(i)))
	}
	won := 0
	for i, err := range enrollRace(t, s, es) {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrBadSecret):
			t.Errorf("enrollment %d: %v, want success or ErrBadSecret", i, err)
		}
	}
	if won != 1 {
		t.Errorf("%d enrollments won the last use, want 1", won)
	}
	if got := secretByID(t, s, id).Uses; got != 1 {
		t.Errorf("uses = %d, want 1", got)
	}
	if n := countRows(t, s, `SELECT count(*) FROM agent`); n != 1 {
		t.Errorf("%d agents stored, want 1", n)
	}
}

// Enrollments racing for one machine GUID, new or known: exactly one wins,
// the others are refused and use nothing.
func TestConcurrentEnrollmentsForOneMachine(t *testing.T) {
	for _, known := range []bool{false, true} {
		t.Run(fmt.Sprintf("known host %v", known), func(t *testing.T) {
			s, _ := newAdminStore(t)
			id, secret := mustSecret(t, s, "many", 0, time.Time{})
			agents, uses := 1, 1
			if known {
				// The host exists and its only agent is disabled: the racers
				// meet on the existing host row.
				mustEnroll(t, s, enrollment(secret, "agent-first", guid))
				if err := s.SetAgentDisabled(context.Background(), "agent-first", true); err != nil {
					t.Fatal(err)
				}
				agents, uses = 2, 2
			}
			// One secret each: the secret's lock does not serialize them.
			var es []NewEnrollment
			ids := []string{id}
			for i := range 16 {
				sid, secret := mustSecret(t, s, fmt.Sprintf("racer %d", i), 0, time.Time{})
				ids = append(ids, sid)
				es = append(es, enrollment(secret, fmt.Sprintf("agent-%d", i), guid))
			}
			won := 0
			for i, err := range enrollRace(t, s, es) {
				switch {
				case err == nil:
					won++
				case !errors.Is(err, ErrMachineEnrolled):
					t.Errorf("enrollment %d: %v, want success or ErrMachineEnrolled", i, err)
				}
			}
			if won != 1 {
				t.Errorf("%d enrollments of one machine won, want 1", won)
			}
			total := 0
			for _, sid := range ids {
				total += secretByID(t, s, sid).Uses
			}
			if total != uses {
				t.Errorf("uses = %d in all, want %d (refusals use nothing)", total, uses)
			}
			if n := countRows(t, s, `SELECT count(*) FROM agent`); n != agents {
				t.Errorf("%d agents stored, want %d", n, agents)
			}
		})
	}
}

// A machine GUID held by an enabled agent is refused, until an admin allows
// one re-enrollment; that enrollment disables the old agent.
func TestReenrollment(t *testing.T) {
	s, clock := newAdminStore(t)
	ctx := context.Background()
	id, secret := mustSecret(t, s, "fleet", 0, time.Time{})
	mustEnroll(t, s, enrollment(secret, "agent-old", guid))

	err := s.EnrollAgent(ctx, enrollment(secret, "agent-new", guid))
	var me *MachineEnrolledError
	if !errors.Is(err, ErrMachineEnrolled) || !errors.As(err, &me) {
		t.Fatalf("second enrollment of the machine: %v, want a *MachineEnrolledError", err)
	}
	if me.MachineGUID != guid || me.AgentID != "agent-new" || len(me.Holders) != 1 || me.Holders[0].ID != "agent-old" ||
		me.Holders[0].SecretID != id || me.Holders[0].Source != "192.0.2.10:50000" {
		t.Errorf("refusal = %+v, want agent-new refused for %s held by agent-old", me, guid)
	}
	if got := secretByID(t, s, id).Uses; got != 1 {
		t.Errorf("uses = %d after the refusal, want 1", got)
	}

	// An expired allowance does not count.
	if err := s.AllowReenrollment(ctx, guid, clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if err := s.EnrollAgent(ctx, enrollment(secret, "agent-new", guid)); !errors.Is(err, ErrMachineEnrolled) {
		t.Fatalf("enrollment with an expired allowance: %v, want ErrMachineEnrolled", err)
	}

	// A valid one (given with braces and upper case) does, once.
	if err := s.AllowReenrollment(ctx, "{"+strings.ToUpper(guid)+"}", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	replacedAt := clock.Now()
	e := enrollment(secret, "agent-new", guid)
	e.Host.Hostname = "renamed"
	mustEnroll(t, s, e)
	old, cur := mustAgent(t, s, "agent-old"), mustAgent(t, s, "agent-new")
	if !old.Disabled || !old.DisabledAt.Equal(replacedAt) {
		t.Errorf("old agent: disabled %v at %v, want disabled at %v", old.Disabled, old.DisabledAt, replacedAt)
	}
	if cur.Disabled || cur.MachineGUID != guid {
		t.Errorf("new agent = %+v, want enabled for %s", cur, guid)
	}
	if cur.Hostname != "host-agent-old" {
		t.Errorf("host name = %q: the enrollment of a known host changed its facts", cur.Hostname)
	}
	if n := countRows(t, s, `SELECT count(*) FROM reenrollment_allowance`); n != 0 {
		t.Errorf("the allowance was not consumed")
	}
	if err := s.EnrollAgent(ctx, enrollment(secret, "agent-third", guid)); !errors.Is(err, ErrMachineEnrolled) {
		t.Errorf("enrollment after the allowance was used: %v, want ErrMachineEnrolled", err)
	}

	// The old agent cannot be enabled beside the new one.
	if err := s.SetAgentDisabled(ctx, "agent-old", false); !errors.Is(err, ErrMachineEnrolled) {
		t.Errorf("enabling the replaced agent: %v, want ErrMachineEnrolled", err)
	}
	if err := s.SetAgentDisabled(ctx, "agent-new", true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAgentDisabled(ctx, "agent-old", false); err != nil {
		t.Errorf("enabling the old agent once the new one is disabled: %v", err)
	}
	// With every agent of the machine disabled, enrollment needs no allowance.
	if err := s.SetAgentDisabled(ctx, "agent-old", true); err != nil {
		t.Fatal(err)
	}
	mustEnroll(t, s, enrollment(secret, "agent-third", guid))

	// An agent the store learnt of from its reports holds its machine too.
	ingestFor(t, s, "agent-legacy", guidN(7), "legacy")
	err = s.EnrollAgent(ctx, enrollment(secret, "agent-7", guidN(7)))
	if !errors.As(err, &me) || len(me.Holders) != 1 || me.Holders[0].ID != "agent-legacy" {
		t.Errorf("enrolling a machine an unenrolled agent reports for: %v, want refused naming agent-legacy", err)
	}

	if err := s.AllowReenrollment(ctx, guid, clock.Now()); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("allowance expiring now: %v, want ErrInvalidInput", err)
	}
	if err := s.AllowReenrollment(ctx, "", clock.Now().Add(time.Hour)); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("allowance for no machine: %v, want ErrInvalidInput", err)
	}
}

func TestSetAgentDisabled(t *testing.T) {
	s, clock := newAdminStore(t)
	ctx := context.Background()
	_, secret := mustSecret(t, s, "fleet", 0, time.Time{})
	mustEnroll(t, s, enrollment(secret, "agent-1", guidN(1)))
	disabledAt := clock.Now()
	if err := s.SetAgentDisabled(ctx, "agent-1", true); err != nil {
		t.Fatal(err)
	}
	clock.Add(time.Minute)
	if err := s.SetAgentDisabled(ctx, "agent-1", true); err != nil {
		t.Fatal(err)
	}
	if a := mustAgent(t, s, "agent-1"); !a.Disabled || !a.DisabledAt.Equal(disabledAt) {
		t.Errorf("disabled twice: %v at %v, want disabled at the first time %v", a.Disabled, a.DisabledAt, disabledAt)
	}
	list, err := s.ListAgents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !list[0].Disabled {
		t.Errorf("ListAgents = %+v, want agent-1 disabled", list)
	}
	if err := s.SetAgentDisabled(ctx, "agent-1", false); err != nil {
		t.Fatal(err)
	}
	if a := mustAgent(t, s, "agent-1"); a.Disabled || !a.DisabledAt.IsZero() {
		t.Errorf("enabled agent: disabled %v at %v", a.Disabled, a.DisabledAt)
	}
	for _, disabled := range []bool{true, false} {
		if err := s.SetAgentDisabled(ctx, "nobody", disabled); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetAgentDisabled(unknown, %v) = %v, want ErrNotFound", disabled, err)
		}
	}
	if _, err := s.Agent(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Agent(unknown) = %v, want ErrNotFound", err)
	}
}

func TestRecordAgentCertificate(t *testing.T) {
	s, _ := newAdminStore(t)
	ctx := context.Background()
	_, secret := mustSecret(t, s, "fleet", 0, time.Time{})
	mustEnroll(t, s, enrollment(secret, "agent-1", guidN(1)))
	n2, n3 := certNotAfter.Add(7*24*time.Hour), certNotAfter.Add(14*24*time.Hour)
	check := func(what, cur, prev string, notAfter time.Time) {
		t.Helper()
		a := mustAgent(t, s, "agent-1")
		if a.CertSerial != cur || a.PreviousCertSerial != prev || !a.CertNotAfter.Equal(notAfter) {
			t.Errorf("%s: serial %q previous %q not after %v, want %q %q %v", what, a.CertSerial, a.PreviousCertSerial, a.CertNotAfter, cur, prev, notAfter)
		}
	}
	check("enrolled", "serial-agent-1", "", certNotAfter)
	if err := s.RecordAgentCertificate(ctx, "agent-1", "s2", n2); err != nil {
		t.Fatal(err)
	}
	check("renewed", "s2", "serial-agent-1", n2)
	if err := s.RecordAgentCertificate(ctx, "agent-1", "s2", n2); err != nil {
		t.Fatal(err)
	}
	check("recorded again", "s2", "serial-agent-1", n2)
	if err := s.RecordAgentCertificate(ctx, "agent-1", "s3", n3); err != nil {
		t.Fatal(err)
	}
	check("renewed twice", "s3", "s2", n3)
	if err := s.RecordAgentCertificate(ctx, "nobody", "s4", n3); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown agent: %v, want ErrNotFound", err)
	}
	if err := s.RecordAgentCertificate(ctx, "agent-1", "", n3); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("empty serial: %v, want ErrInvalidInput", err)
	}
}

// ListAgents orders by host name, then id, and shows agents that were never
// enrolled with empty enrollment fields.
func TestListAgents(t *testing.T) {
	s, clock := newAdminStore(t)
	ctx := context.Background()
	_, secret := mustSecret(t, s, "fleet", 0, time.Time{})
	for i, x := range []struct{ agent, host string }{{"agent-9", "bravo"}, {"agent-2", "charlie"}, {"agent-5", "alpha"}} {
		e := enrollment(secret, x.agent, guidN(10+i))
		e.Host.Hostname = x.host
		mustEnroll(t, s, e)
	}
	ingestFor(t, s, "agent-1", guidN(1), "bravo")
	list, err := s.ListAgents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range list {
		got = append(got, a.Hostname+"/"+a.ID)
	}
	if want := "alpha/agent-5 bravo/agent-1 bravo/agent-9 charlie/agent-2"; strings.Join(got, " ") != want {
		t.Errorf("ListAgents order: %v, want %s", got, want)
	}
	for _, a := range list {
		if a.ID == "agent-1" {
			if a.SecretID != "" || !a.EnrolledAt.IsZero() || a.CertSerial != "" || a.Source != "" || !a.LastReceived.Equal(clock.Now()) {
				t.Errorf("unenrolled agent = %+v", a)
			}
		}
	}
}

// Ingest for an enrolled agent uses its row: one agent, its enrollment kept,
// its reception times set by the first report.
func TestIngestForEnrolledAgent(t *testing.T) {
	s, clock := newAdminStore(t)
	_, secret := mustSecret(t, s, "fleet", 0, time.Time{})
	e := enrollment(secret, "agent-1", guid)
	e.Host.Hostname = "ws01"
	mustEnroll(t, s, e)
	if a := mustAgent(t, s, "agent-1"); !a.LastReceived.IsZero() {
		t.Errorf("last received %v before any report, want zero", a.LastReceived)
	}
	clock.Add(time.Minute)
	mustIngest(t, s, "agent-1", full(1, at(0), boot1, []LogonSession{logon("1001", at(-time.Hour), "CONTOSO", "alice")}, nil))
	a := mustAgent(t, s, "agent-1")
	if !a.LastReceived.Equal(clock.Now()) || a.CertSerial != "serial-agent-1" || a.SecretID == "" || a.Disabled {
		t.Errorf("agent after a report = %+v", a)
	}
	if n := countRows(t, s, `SELECT count(*) FROM agent`); n != 1 {
		t.Errorf("%d agent rows, want 1", n)
	}
	if n := countRows(t, s, `SELECT count(*) FROM agent WHERE first_received = $1 AND applied_sequence = 1`, clock.Now()); n != 1 {
		t.Errorf("the first report did not set first_received and applied_sequence")
	}
	if n := countRows(t, s, `SELECT count(*) FROM host h JOIN agent a USING (host_id) WHERE h.agent_id = 'agent-1'`); n != 1 {
		t.Errorf("the host does not name its agent")
	}
	assertRows(t, "logon sessions", logonRows(t, s), []row{{Key: bootKey(boot1, "1001"), Start: at(-time.Hour), Account: `CONTOSO\alice`}})
	clock.Add(time.Minute)
	mustIngest(t, s, "agent-1", Report{Sequence: 2, Kind: KindHeartbeat, BaseSequence: 1, TakenAt: at(time.Minute)})
	if n := countRows(t, s, `SELECT count(*) FROM agent WHERE first_received = $1 AND last_received = $2`, clock.Now().Add(-time.Minute), clock.Now()); n != 1 {
		t.Errorf("a later report moved first_received or not last_received")
	}
}

// Invalid parameters are *FieldError naming the field, and change nothing.
func TestAccessInputValidation(t *testing.T) {
	s, clock := newAdminStore(t)
	ctx := context.Background()
	now := clock.Now()
	id, secret := mustSecret(t, s, "fleet", 0, time.Time{})
	mustEnroll(t, s, enrollment(secret, "agent-1", guidN(1)))
	field := func(what string, err error, want string) {
		t.Helper()
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrInvalidInput) || fe.Field != want {
			t.Errorf("%s: %v, want a *FieldError on %s", what, err, want)
		}
	}
	_, _, err := s.CreateEnrollmentSecret(ctx, "", 0, time.Time{})
	field("secret without label", err, "label")
	_, _, err = s.CreateEnrollmentSecret(ctx, strings.Repeat("x", MaxLabelBytes+1), 0, time.Time{})
	field("secret with a long label", err, "label")
	_, _, err = s.CreateEnrollmentSecret(ctx, "ok", -1, time.Time{})
	field("negative uses", err, "maxUses")
	_, _, err = s.CreateEnrollmentSecret(ctx, "ok", 1, now)
	field("secret expiring now", err, "expiresAt")
	_, _, err = s.CreateAPIToken(ctx, "", RoleReader, time.Time{})
	field("token without name", err, "name")
	_, _, err = s.CreateAPIToken(ctx, strings.Repeat("x", MaxLabelBytes+1), RoleReader, time.Time{})
	field("token with a long name", err, "name")
	_, _, err = s.CreateAPIToken(ctx, "bob\n", RoleReader, time.Time{})
	field("token name with a newline", err, "name")
	_, _, err = s.CreateAPIToken(ctx, "bob", Role("root"), time.Time{})
	field("unknown role", err, "role")
	_, _, err = s.CreateAPIToken(ctx, "bob", RoleReader, now.Add(-time.Hour))
	field("token expired", err, "expiresAt")

	bad := func(mod func(*NewEnrollment)) NewEnrollment {
		e := enrollment(secret, "agent-2", guidN(2))
		mod(&e)
		return e
	}
	for _, tt := range []struct {
		name  string
		e     NewEnrollment
		field string
	}{
		{"no agent id", bad(func(e *NewEnrollment) { e.AgentID = "" }), "AgentID"},
		{"long agent id", bad(func(e *NewEnrollment) { e.AgentID = strings.Repeat("a", limits.MaxKeyBytes+1) }), "AgentID"},
		{"agent id taken", bad(func(e *NewEnrollment) { e.AgentID = "agent-1" }), "AgentID"},
		{"no machine", bad(func(e *NewEnrollment) { e.Host.MachineGUID = "{}" }), "Host.MachineGUID"},
		{"machine with NUL", bad(func(e *NewEnrollment) { e.Host.MachineGUID = "a\x00b" }), "Host.MachineGUID"},
		{"no certificate", bad(func(e *NewEnrollment) { e.CertSerial = "" }), "CertSerial"},
		{"no certificate expiry", bad(func(e *NewEnrollment) { e.CertNotAfter = time.Time{} }), "CertNotAfter"},
		{"source with a control character", bad(func(e *NewEnrollment) { e.Source = "10.0.0.1\r\nforged log line" }), "Source"},
	} {
		field(tt.name, s.EnrollAgent(ctx, tt.e), tt.field)
	}
	if got := secretByID(t, s, id).Uses; got != 1 {
		t.Errorf("uses = %d after invalid enrollments, want 1", got)
	}
	if n := countRows(t, s, `SELECT count(*) FROM agent`); n != 1 {
		t.Errorf("%d agents after invalid enrollments, want 1", n)
	}
	if n := countRows(t, s, `SELECT count(*) FROM enrollment_secret`) + countRows(t, s, `SELECT count(*) FROM api_token`); n != 1 {
		t.Errorf("%d secrets and tokens after invalid creations, want 1", n)
	}
}

// A token verifies with its role until it expires or is revoked; its use is
// recorded at most once a minute.
func TestAPITokenLifecycle(t *testing.T) {
	s, clock := newAdminStore(t)
	ctx := context.Background()
	created := clock.Now()
	readerID, reader, err := s.CreateAPIToken(ctx, "alice", RoleReader, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(reader, APITokenPrefix) {
		t.Errorf("token %q lacks the prefix %q", reader, APITokenPrefix)
	}
	clock.Add(time.Second)
	adminID, admin, err := s.CreateAPIToken(ctx, "bob", RoleAdmin, clock.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expires := clock.Now().Add(time.Hour)

	list, err := s.ListAPITokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []APIToken{
		{ID: adminID, Name: "bob", Role: RoleAdmin, CreatedAt: created.Add(time.Second), ExpiresAt: expires},
		{ID: readerID, Name: "alice", Role: RoleReader, CreatedAt: created},
	}
	if len(list) != 2 || list[0] != want[0] || list[1] != want[1] {
		t.Errorf("ListAPITokens = %+v\nwant %+v", list, want)
	}

	lastUsed := func(id string) time.Time {
		t.Helper()
		for _, tok := range mustTokens(t, s) {
			if tok.ID == id {
				return tok.LastUsed
			}
		}
		t.Fatalf("token %s not listed", id)
		return time.Time{}
	}
	got, err := s.VerifyAPIToken(ctx, reader)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != readerID || got.Role != RoleReader || got.Name != "alice" || !got.LastUsed.Equal(clock.Now()) {
		t.Errorf("VerifyAPIToken(reader) = %+v", got)
	}
	firstUse := clock.Now()
	clock.Add(59 * time.Second)
	if _, err := s.VerifyAPIToken(ctx, reader); err != nil {
		t.Fatal(err)
	}
	if lu := lastUsed(readerID); !lu.Equal(firstUse) {
		t.Errorf("last used %v after a second use within a minute, want still %v", lu, firstUse)
	}
	clock.Add(time.Second)
	if _, err := s.VerifyAPIToken(ctx, " "+reader+"\n"); err != nil {
		t.Fatalf("token with surrounding white space: %v", err)
	}
	if lu := lastUsed(readerID); !lu.Equal(clock.Now()) {
		t.Errorf("last used %v after a use a minute later, want %v", lu, clock.Now())
	}
	if got, err := s.VerifyAPIToken(ctx, admin); err != nil || got.Role != RoleAdmin || got.ID != adminID {
		t.Errorf("VerifyAPIToken(admin) = %+v, %v", got, err)
	}

	// Expiry.
	clock.Add(time.Hour)
	if _, err := s.VerifyAPIToken(ctx, admin); !errors.Is(err, ErrBadToken) {
		t.Errorf("expired token: %v, want ErrBadToken", err)
	}
	// Revocation.
	if _, err := s.VerifyAPIToken(ctx, reader); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAPIToken(ctx, readerID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyAPIToken(ctx, reader); !errors.Is(err, ErrBadToken) {
		t.Errorf("revoked token: %v, want ErrBadToken", err)
	}
	if tok := mustTokens(t, s)[1]; tok.ID != readerID || !tok.RevokedAt.Equal(clock.Now()) {
		t.Errorf("revoked token listed as %+v", tok)
	}
	if err := s.RevokeAPIToken(ctx, "0123456789abcdef"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking an unknown token: %v, want ErrNotFound", err)
	}

	unknown, _, err := newCredential(APITokenPrefix)
	if err != nil {
		t.Fatal(err)
	}
	_, secret := mustSecret(t, s, "not a token", 0, time.Time{})
	for _, v := range []string{unknown, "", "sat_", secret, strings.Repeat("x", 10000)} {
		if _, err := s.VerifyAPIToken(ctx, v); !errors.Is(err, ErrBadToken) {
			t.Errorf("VerifyAPIToken(%.20q) = %v, want ErrBadToken", v, err)
		}
	}
}

func mustTokens(t *testing.T, s *Store) []APIToken {
	t.Helper()
	list, err := s.ListAPITokens(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// ListEnrollmentSecrets lists newest first.
func TestListEnrollmentSecretsNewestFirst(t *testing.T) {
	s, clock := newAdminStore(t)
	var ids []string
	for i := range 3 {
		id, _ := mustSecret(t, s, fmt.Sprintf("secret %d", i), i, time.Time{})
		ids = append(ids, id)
		clock.Add(time.Second)
	}
	list, err := s.ListEnrollmentSecrets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].ID != ids[2] || list[1].ID != ids[1] || list[2].ID != ids[0] {
		t.Errorf("ListEnrollmentSecrets = %+v, want ids %v reversed", list, ids)
	}
	if list[2].MaxUses != 0 || list[1].MaxUses != 1 {
		t.Errorf("max uses listed as %d and %d, want 0 (unlimited) and 1", list[2].MaxUses, list[1].MaxUses)
	}
}
