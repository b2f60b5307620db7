package server_test

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestEnrollClones: two clones of one golden image (one machine GUID,
// different SMBIOS UUIDs) both enroll and are two hosts, the second named
// by its clone host key, and each one's reports (carrying the image's
// machine GUID) are stored for its own host; a malformed SMBIOS UUID is
// refused, a placeholder counts as none, and a clone enrolling again is
// refused like any held machine (0003-security.md, "Machine identity that
// survives cloning").
func TestEnrollClones(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	const (
		guid   = "c1c10000-0000-4000-8000-000000000001"
		smbio1 = "4c4c4544-0031-3510-8044-b7c04f4e3132"
		smbio2 = "4c4c4544-0031-3510-8044-b7c04f4e3133"
	)
	enroll := func(name, smbios string) (*pb.EnrollResponse, tls.Certificate, error) {
		t.Helper()
		key, csr, err := identity.NewAgentKeyAndCSR()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Enroll(context.Background(), &pb.EnrollRequest{
			EnrollmentSecret: e.secret, CsrDer: csr,
			Host: &pb.Host{MachineGuid: guid, Hostname: name, Domain: "CORP", SmbiosUuid: smbios},
		})
		return resp, tls.Certificate{Certificate: [][]byte{resp.GetCertificateDer()}, PrivateKey: key}, err
	}
	if _, _, err := enroll("vdi-001", "4c4c4544"); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "host.smbios_uuid") {
		t.Fatalf("malformed SMBIOS UUID: %v, want InvalidArgument naming host.smbios_uuid", err)
	}
	r1, cert1, err := enroll("vdi-001", strings.ToUpper(smbio1))
	if err != nil {
		t.Fatal(err)
	}
	// A placeholder is no evidence: the same machine again, refused as before.
	if _, _, err := enroll("vdi-001", "00000000-0000-0000-0000-000000000000"); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("re-enrollment without a usable SMBIOS UUID: %v, want FailedPrecondition", err)
	}
	r2, cert2, err := enroll("vdi-002", smbio2)
	if err != nil {
		t.Fatalf("second clone: %v, want enrolled", err)
	}
	key2 := identity.CloneHostKey(guid, smbio2)
	a1, err := e.st.Agent(context.Background(), r1.GetAgentId())
	if err != nil || a1.MachineGUID != guid {
		t.Fatalf("first clone: %+v, %v; want host %s", a1, err, guid)
	}
	a2, err := e.st.Agent(context.Background(), r2.GetAgentId())
	if err != nil || a2.MachineGUID != key2 || a1.Disabled || a2.Disabled {
		t.Fatalf("second clone: %+v, %v; want host %s beside the first", a2, err, key2)
	}
	// The second clone enrolling again (its state lost) is that host again.
	if _, _, err := enroll("vdi-002", smbio2); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), key2) {
		t.Fatalf("second clone again: %v, want FailedPrecondition naming %s", err, key2)
	}

	// Each clone reports with the image's machine GUID and its own SMBIOS
	// UUID; a clone cannot report as the other.
	report := func(cert tls.Certificate, smbios string, user string) error {
		r := snapshot(1, guid, 0, logon("0x1", user))
		r.GetSnapshot().Host.SmbiosUuid = smbios
		_, err := pb.NewCollectorServiceClient(e.dial(c.addr, &cert)).Ingest(context.Background(), batch(r))
		return err
	}
	if err := report(cert2, smbio1, "mallory"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("second clone reporting the first's SMBIOS UUID: %v, want InvalidArgument", err)
	}
	if err := report(cert1, smbio1, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := report(cert2, smbio2, "bob"); err != nil {
		t.Fatal(err)
	}
	want := []string{guid + " 0x1 open", key2 + " 0x1 open"}
	if got := e.intervals(); !equal(got, want) {
		t.Fatalf("stored intervals:\n%v\nwant\n%v", got, want)
	}
}

// TestEnrollVDIPool: with a secret made by `secret create --vdi-pool`, a
// pool desktop that lost its state enrolls again at every boot, each agent
// superseding the previous one of its host; so does a clone, under its
// clone host key.
func TestEnrollVDIPool(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	_, pool, err := e.st.CreateVDIPoolSecret(context.Background(), "pool", 0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	const guid = "c1c10000-0000-4000-8000-0000000000b1"
	enroll := func(smbios string) string {
		t.Helper()
		_, csr, err := identity.NewAgentKeyAndCSR()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := pb.NewCollectorServiceClient(e.dial(c.addr, nil)).Enroll(context.Background(), &pb.EnrollRequest{
			EnrollmentSecret: pool, CsrDer: csr,
			Host: &pb.Host{MachineGuid: guid, Hostname: "vdi", Domain: "CORP", SmbiosUuid: smbios},
		})
		if err != nil {
			t.Fatalf("enroll %s: %v", smbios, err)
		}
		return resp.GetAgentId()
	}
	const smbio1, smbio2 = "4c4c4544-0031-3510-8044-b7c04f4e3132", "4c4c4544-0031-3510-8044-b7c04f4e3133"
	boots := []string{enroll(smbio1), enroll(smbio2), enroll(smbio1), enroll(smbio2)}
	for i, id := range boots {
		a, err := e.st.Agent(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		wantHost, wantDisabled := guid, i < 2
		if i%2 == 1 {
			wantHost = identity.CloneHostKey(guid, smbio2)
		}
		if a.MachineGUID != wantHost || a.Disabled != wantDisabled {
			t.Errorf("boot %d: agent %+v, want host %s, disabled %v", i, a, wantHost, wantDisabled)
		}
	}
}
