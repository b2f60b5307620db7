package pki

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

// VerifyRenewalProof returns the identity of previousCertDER, an agent
// certificate that expired at most grace before now, if proof is its key's
// signature over csrDER (identity.SignRenewalProof). The certificate must satisfy
// every rule of AgentIdentityFromCert except expiry. The collector must
// still check that the agent is enabled and that this is the last
// certificate it issued to the agent before signing csrDER for the same
// agent id and machine GUID.
func (t *Trust) VerifyRenewalProof(previousCertDER, proof, csrDER []byte, now time.Time, grace time.Duration) (AgentIdentity, error) {
	prev, err := x509.ParseCertificate(previousCertDER)
	if err != nil {
		return AgentIdentity{}, fmt.Errorf("pki: renewal: parse previous certificate: %w: %w", identity.ErrBadRenewalProof, err)
	}
	if now.Sub(prev.NotAfter) > grace {
		return AgentIdentity{}, fmt.Errorf("pki: renewal: certificate %s expired at %v, more than %v before %v: %w",
			serialHex(prev), prev.NotAfter, grace, now, ErrUntrusted)
	}
	at := now
	if at.After(prev.NotAfter) {
		at = prev.NotAfter // judge it as of its last valid moment
	}
	id, err := t.AgentIdentityFromCert(prev, at)
	if err != nil {
		return AgentIdentity{}, fmt.Errorf("pki: renewal: %w", err)
	}
	if err := identity.VerifyRenewalSignature(prev.PublicKey, csrDER, proof); err != nil {
		return AgentIdentity{}, fmt.Errorf("pki: renewal for agent %s with certificate %s: %w: %w", id.AgentID, id.Serial, identity.ErrBadRenewalProof, err)
	}
	return id, nil
}
