package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestEnrollSMBIOSUUID: the SMBIOS UUID is recorded at enrollment (canonical
// form; a placeholder as none), learnt by a host that had none, and a second
// enrollment of a held machine GUID with another SMBIOS UUID is refused as a
// clone (0003-security.md, "Machine identity that survives cloning"); an
// admin's allowance still replaces the agent and takes the new UUID.
func TestEnrollSMBIOSUUID(t *testing.T) {
	s, clock := newAdminStore(t)
	ctx := context.Background()
	_, secret := mustSecret(t, s, "fleet", 0, time.Time{})
	const (
		uuid1 = "4c4c4544-0031-3510-8044-b7c04f4e3132"
		uuid2 = "4c4c4544-0031-3510-8044-b7c04f4e3133"
	)
	hostUUID := func() string {
		t.Helper()
		var u string
		if err := s.pool.QueryRow(ctx, `SELECT smbios_uuid FROM host WHERE machine_guid = $1`, guid).Scan(&u); err != nil {
			t.Fatal(err)
		}
		return u
	}

	bad := enrollment(secret, "agent-bad", guid)
	bad.Host.SMBIOSUUID = "not-a-uuid"
	var fe *FieldError
	if err := s.EnrollAgent(ctx, bad); !errors.As(err, &fe) || fe.Field != "Host.SMBIOSUUID" {
		t.Fatalf("malformed SMBIOS UUID: %v, want a FieldError for Host.SMBIOSUUID", err)
	}

	first := enrollment(secret, "agent-1", guid)
	first.Host.SMBIOSUUID = "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF" // placeholder: none
	mustEnroll(t, s, first)
	if u := hostUUID(); u != "" {
		t.Fatalf("host SMBIOS UUID = %q after a placeholder, want none", u)
	}

	// Same GUID, no evidence either way: the same machine, refused as before
	// (not as a clone).
	same := enrollment(secret, "agent-2", guid)
	same.Host.SMBIOSUUID = "{" + uuid1 + "}"
	var me *MachineEnrolledError
	if err := s.EnrollAgent(ctx, same); !errors.As(err, &me) || me.Clone {
		t.Fatalf("re-enrollment, host without SMBIOS UUID: %v, want ErrMachineEnrolled, no clone", err)
	}
	if u := hostUUID(); u != "" {
		t.Errorf("a refused enrollment recorded SMBIOS UUID %q", u)
	}
	if err := s.AllowReenrollment(ctx, guid, clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	mustEnroll(t, s, same)
	if u := hostUUID(); u != uuid1 {
		t.Fatalf("host SMBIOS UUID = %q, want %q learnt at enrollment", u, uuid1)
	}

	// A clone: same GUID, other SMBIOS UUID.
	clone := enrollment(secret, "agent-3", guid)
	clone.Host.SMBIOSUUID = uuid2
	err := s.EnrollAgent(ctx, clone)
	if !errors.Is(err, ErrMachineEnrolled) || !errors.As(err, &me) || !me.Clone || me.HostSMBIOSUUID != uuid1 || me.SMBIOSUUID != uuid2 {
		t.Fatalf("clone: %v (%+v), want a clone refusal", err, me)
	}

	// The admin says it is the same machine (a VM moved): allowed, and the
	// host takes the new SMBIOS UUID.
	if err := s.AllowReenrollment(ctx, guid, clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	mustEnroll(t, s, clone)
	if u := hostUUID(); u != uuid2 {
		t.Errorf("host SMBIOS UUID = %q after an allowed re-enrollment, want %q", u, uuid2)
	}
	if a := mustAgent(t, s, "agent-2"); !a.Disabled {
		t.Errorf("agent-2 not replaced")
	}
}

// TestVDIPoolReenrollment: with a pool secret, a machine whose agents were
// all enrolled with pool secrets enrolls again without an allowance, the new
// agent superseding the previous one; an agent enrolled with an ordinary
// secret is not superseded, and a clone never is.
func TestVDIPoolReenrollment(t *testing.T) {
	s, _ := newAdminStore(t)
	ctx := context.Background()
	id, pool, err := s.CreateVDIPoolSecret(ctx, "pool", 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	_, plain := mustSecret(t, s, "plain", 0, time.Time{})
	const uuid1, uuid2 = "4c4c4544-0031-3510-8044-b7c04f4e3132", "4c4c4544-0031-3510-8044-b7c04f4e3133"
	at := func(secret, agent, smbios string) NewEnrollment {
		e := enrollment(secret, agent, guid)
		e.Host.SMBIOSUUID = smbios
		return e
	}
	mustEnroll(t, s, at(pool, "boot-1", uuid1))
	mustEnroll(t, s, at(pool, "boot-2", uuid1))
	mustEnroll(t, s, at(pool, "boot-3", ""))
	for a, disabled := range map[string]bool{"boot-1": true, "boot-2": true, "boot-3": false} {
		if got := mustAgent(t, s, a).Disabled; got != disabled {
			t.Errorf("%s disabled = %v, want %v", a, got, disabled)
		}
	}
	var me *MachineEnrolledError
	if err := s.EnrollAgent(ctx, at(pool, "clone", uuid2)); !errors.As(err, &me) || !me.Clone {
		t.Errorf("clone with a pool secret: %v, want a clone refusal", err)
	}
	secrets, err := s.ListEnrollmentSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range secrets {
		if sec.VDIPool != (sec.ID == id) {
			t.Errorf("secret %s (%s): VDIPool = %v", sec.ID, sec.Label, sec.VDIPool)
		}
	}

	// An ordinary enrollment is held against the pool secret.
	const other = "6f1c2a34-0000-4000-8000-0000000000aa"
	e := enrollment(plain, "plain-1", other)
	mustEnroll(t, s, e)
	e = enrollment(pool, "pool-1", other)
	if err := s.EnrollAgent(ctx, e); !errors.Is(err, ErrMachineEnrolled) {
		t.Errorf("pool secret over an ordinary agent: %v, want ErrMachineEnrolled", err)
	}
}
