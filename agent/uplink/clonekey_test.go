package uplink

import (
	"context"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/proto/identity"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// TestCloneHostKeyIdentityKept: a clone of a golden image holds a
// certificate for its clone host key (identity.CloneHostKey of its machine
// GUID and SMBIOS UUID); a restart keeps it instead of taking it for a
// cloned disk. The key of another SMBIOS UUID is another machine's.
func TestCloneHostKeyIdentityKept(t *testing.T) {
	const smbios = "4c4c4544-0031-3510-8044-b7c04f4e3132"
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	for _, tc := range []struct {
		name, hostSMBIOS string
		kept             bool
	}{
		{"own clone key", smbios, true},
		{"another clone's key", "4c4c4544-0031-3510-8044-b7c04f4e3133", false},
		{"no SMBIOS UUID", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := identity.CloneHostKey(testGUID, smbios)
			if err := (identityStore{dir: dir}).save(p.issue(t, "agent-clone", key, time.Hour, clk.Now())); err != nil {
				t.Fatal(err)
			}
			enrolls := len(f.enrolls)
			c, err := New(Options{
				Address: f.addr, ServerName: "localhost", CAPool: f.pki.pool,
				EnrollmentSecret: "s3cret", StateDir: dir, Clock: clk, After: (&waits{}).After, Logger: testLogger(t),
				Host: func() *pb.Host {
					h := testHost()
					h.SmbiosUuid = tc.hostSMBIOS
					return h
				},
				Backoff: BackoffConfig{Base: 10 * time.Millisecond, Max: time.Second},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.EnsureIdentity(context.Background()); err != nil {
				t.Fatal(err)
			}
			if kept := c.Identity().AgentID == "agent-clone" && len(f.enrolls) == enrolls; kept != tc.kept {
				t.Errorf("identity %+v after %d enrolls: kept %v, want %v", c.Identity(), len(f.enrolls)-enrolls, kept, tc.kept)
			}
		})
	}
}
