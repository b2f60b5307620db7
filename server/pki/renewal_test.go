package pki

import (
	"crypto"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

func TestVerifyRenewalProof(t *testing.T) {
	agentCA := newTestCA(t, "agents", testNow.Add(-90*24*time.Hour))
	analystCA := newTestCA(t, "analysts", testNow.Add(-90*24*time.Hour))
	foreignCA := newTestCA(t, "foreign", testNow.Add(-90*24*time.Hour))
	trust := newTrust(t, agentCA, analystCA)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	ecOld := ecKey(t, elliptic.P256())
	_, newCSR, err := identity.NewAgentKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	// expiredAgo issues a 7-day certificate for key that expired ago before
	// testNow.
	expiredAgo := func(ca *CA, key crypto.Signer, ago time.Duration) []byte {
		t.Helper()
		is, err := ca.SignAgentCSR(csrFor(t, key, nil), testAgentID, testGUID, 7*24*time.Hour, testNow.Add(-ago-7*24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return is.DER
	}
	proof := func(key crypto.Signer, csr []byte) []byte {
		t.Helper()
		p, err := identity.SignRenewalProof(key, csr)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	analystDER := func() []byte {
		is, err := analystCA.SignAnalystCSR(csrFor(t, ecOld, nil), "alice", RoleReader, 24*time.Hour, testNow)
		if err != nil {
			t.Fatal(err)
		}
		return is.DER
	}()
	const day = 24 * time.Hour
	tests := []struct {
		name        string
		prev, proof []byte
		csr         []byte
		wantIs      error // nil: success
	}{
		{"ECDSA, expired 10 days ago", expiredAgo(agentCA, ecOld, 10*day), proof(ecOld, newCSR), newCSR, nil},
		{"Ed25519, expired 10 days ago", expiredAgo(agentCA, edKey, 10*day), proof(edKey, newCSR), newCSR, nil},
		{"still valid", expiredAgo(agentCA, ecOld, -day), proof(ecOld, newCSR), newCSR, nil},
		{"expired beyond grace", expiredAgo(agentCA, ecOld, 31*day), proof(ecOld, newCSR), newCSR, ErrUntrusted},
		{"proof by another key", expiredAgo(agentCA, ecOld, day), proof(edKey, newCSR), newCSR, identity.ErrBadRenewalProof},
		{"proof over another CSR", expiredAgo(agentCA, ecOld, day), proof(ecOld, csrFor(t, edKey, nil)), newCSR, identity.ErrBadRenewalProof},
		{"foreign CA", expiredAgo(foreignCA, ecOld, day), proof(ecOld, newCSR), newCSR, ErrUntrusted},
		{"analyst certificate", analystDER, proof(ecOld, newCSR), newCSR, ErrAnalystCertificate},
		{"garbage certificate", []byte("x"), proof(ecOld, newCSR), newCSR, identity.ErrBadRenewalProof},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := trust.VerifyRenewalProof(tt.prev, tt.proof, tt.csr, testNow, identity.DefaultRenewalGrace)
			if tt.wantIs == nil {
				if err != nil || id.AgentID != testAgentID || id.MachineGUID != testGUID {
					t.Errorf("VerifyRenewalProof = %+v, %v; want agent %s on %s", id, err, testAgentID, testGUID)
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v; want %v", err, tt.wantIs)
			}
		})
	}
}
