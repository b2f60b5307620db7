package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
)

const testGUID = "6f1c2a4e-0b7d-4c1e-9a3f-2b8d5e7c9a01"

// TestParseMachineGUID: one normaliser for the registry, reports, enrollment
// and the store. A GUID with spaces or braces is the same machine.
func TestParseMachineGUID(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{testGUID, testGUID, ""},
		{"6F1C2A4E-0B7D-4C1E-9A3F-2B8D5E7C9A01", testGUID, ""},
		{"{6f1c2a4e-0b7d-4c1e-9a3f-2b8d5e7c9a01}", testGUID, ""},
		{"  {6F1C2A4E-0B7D-4C1E-9A3F-2B8D5E7C9A01} ", testGUID, ""},
		{" 6f1c2a4e-0b7d-4c1e-9a3f-2b8d5e7c9a01 ", testGUID, ""},
		{"{6f1c2a4e-0b7d-4c1e-9a3f-2b8d5e7c9a01", "", "lower-case UUID"},
		{" 6f1c2a4e-0b7d-4c1e-9a3f-2b8d5e7c9a01\x00", "", "lower-case UUID"},
		{"6f1c2a4e0b7d4c1e9a3f2b8d5e7c9a01", "", "lower-case UUID"},
		{"6f1c2a4e-0b7d-4c1e-9a3f-2b8d5e7c9a0g", "", "lower-case UUID"},
		{"{00000000-0000-0000-0000-000000000000}", "", "nil UUID"},
		{"", "", "lower-case UUID"},
		{"{}", "", "lower-case UUID"},
	}
	for _, tt := range tests {
		got, err := ParseMachineGUID(tt.in)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("ParseMachineGUID(%q) = %q, %v; want %q, error containing %q", tt.in, got, err, tt.want, tt.err)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ParseMachineGUID(%q): error %v does not wrap ErrInvalidName", tt.in, err)
		}
		if err == nil && ValidateMachineGUID(got) != nil {
			t.Errorf("ParseMachineGUID(%q) = %q, which ValidateMachineGUID refuses", tt.in, got)
		}
	}
}

func TestValidateAgentID(t *testing.T) {
	for _, ok := range []string{"a", "agent-1", strings.Repeat("a", 64), NewAgentID()} {
		if err := ValidateAgentID(ok); err != nil {
			t.Errorf("ValidateAgentID(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "a-", "A", "a_b", strings.Repeat("a", 65), "a/b"} {
		if err := ValidateAgentID(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateAgentID(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
}

func TestNewAgentIDIsUUIDv4(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := NewAgentID()
		if len(id) != 36 || id[14] != '4' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("NewAgentID() = %q, not a lower-case version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("NewAgentID() repeated %q", id)
		}
		seen[id] = true
	}
}

func certWithURIs(uris ...string) *x509.Certificate {
	c := &x509.Certificate{SerialNumber: big.NewInt(42)}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			panic(err)
		}
		c.URIs = append(c.URIs, u)
	}
	return c
}

func TestAgentNames(t *testing.T) {
	agent, host := AgentURI("agent-1").String(), HostURI(testGUID).String()
	if agent != "sessionaudit://agent/agent-1" || host != "sessionaudit://host/"+testGUID {
		t.Fatalf("URIs changed: %s %s", agent, host)
	}
	tests := []struct {
		name string
		uris []string
		err  string
	}{
		{"agent and host", []string{agent, host}, ""},
		{"other schemes ignored", []string{"spiffe://x/y", host, agent}, ""},
		{"no host", []string{agent}, "no agent id and machine GUID"},
		{"no agent", []string{host}, "no agent id and machine GUID"},
		{"two agents", []string{agent, "sessionaudit://agent/agent-2", host}, "second or malformed agent id"},
		{"upper-case GUID", []string{agent, "sessionaudit://host/6F1C2A4E-0B7D-4C1E-9A3F-2B8D5E7C9A01"}, "malformed machine GUID"},
		{"query on agent", []string{agent + "?x=1", host}, "malformed agent id"},
	}
	for _, tt := range tests {
		id, guid, err := AgentNames(certWithURIs(tt.uris...))
		switch {
		case tt.err == "" && (err != nil || id != "agent-1" || guid != testGUID):
			t.Errorf("%s: AgentNames = %q, %q, %v; want agent-1, %s", tt.name, id, guid, err, testGUID)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: AgentNames error = %v, want one containing %q", tt.name, err, tt.err)
		}
	}
}

// TestRenewalProof: a proof by the previous key over the new CSR verifies;
// another key's, or one over another CSR, does not.
func TestRenewalProof(t *testing.T) {
	oldKey, csr, err := NewAgentKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParseCertificateRequest(csr); err != nil {
		t.Fatalf("NewAgentKeyAndCSR gave a CSR that does not parse: %v", err)
	}
	otherKey, otherCSR, err := NewAgentKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	proof, err := SignRenewalProof(oldKey, csr)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyRenewalSignature(&oldKey.PublicKey, csr, proof); err != nil {
		t.Errorf("own proof: %v", err)
	}
	if err := VerifyRenewalSignature(&otherKey.PublicKey, csr, proof); err == nil {
		t.Error("proof verified with another key")
	}
	if err := VerifyRenewalSignature(&oldKey.PublicKey, otherCSR, proof); err == nil {
		t.Error("proof verified over another CSR")
	}
	edProof, err := SignRenewalProof(edKey, csr)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyRenewalSignature(edKey.Public(), csr, edProof); err != nil {
		t.Errorf("Ed25519 proof: %v", err)
	}
	// A plain signature over the CSR (without the context) is not a proof.
	var plain []byte
	if plain, err = ecdsa.SignASN1(rand.Reader, oldKey, csr[:32]); err != nil {
		t.Fatal(err)
	}
	if err := VerifyRenewalSignature(&oldKey.PublicKey, csr, plain); err == nil {
		t.Error("a signature without the renewal context verified")
	}
}

func TestPrivateKeyPEMRoundTrip(t *testing.T) {
	key, _, err := NewAgentKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePrivateKeyPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(back.Public()) {
		t.Error("key changed in a PEM round trip")
	}
	for _, bad := range []string{"", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
		"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"} {
		if _, err := ParsePrivateKeyPEM([]byte(bad)); err == nil {
			t.Errorf("ParsePrivateKeyPEM(%q) accepted", bad)
		}
	}
}
