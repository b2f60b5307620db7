package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// DefaultRenewalGrace is how long after its certificate expired an agent may
// still prove its identity with the expired certificate's key
// (VerifyRenewalProof) instead of needing an admin to allow re-enrollment.
const DefaultRenewalGrace = 30 * 24 * time.Hour

// renewalProofContext separates renewal proofs from any other signature the
// agent's key makes.
const renewalProofContext = "sessionaudit renewal proof v1\x00"

// ErrBadRenewalProof means a renewal proof or its certificate does not parse
// or verify.
var ErrBadRenewalProof = errors.New("renewal proof does not verify")

// SignRenewalProof signs csrDER, the request for the agent's new key, with
// previousKey, the key of its last certificate, so that an agent whose
// certificate expired while the host was off can show it is the same agent
// (see VerifyRenewalProof). Agent side.
func SignRenewalProof(previousKey crypto.Signer, csrDER []byte) ([]byte, error) {
	msg := append([]byte(renewalProofContext), csrDER...)
	var (
		sig []byte
		err error
	)
	if _, ok := previousKey.Public().(ed25519.PublicKey); ok {
		sig, err = previousKey.Sign(rand.Reader, msg, crypto.Hash(0))
	} else {
		digest := sha256.Sum256(msg)
		sig, err = previousKey.Sign(rand.Reader, digest[:], crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: sign renewal proof with %T: %w", previousKey.Public(), err)
	}
	return sig, nil
}

// VerifyRenewalProof returns the identity of previousCertDER, an agent
// certificate that expired at most grace before now, if proof is its key's
// signature over csrDER (SignRenewalProof). The certificate must satisfy
// every rule of AgentIdentityFromCert except expiry. The collector must
// still check that the agent is enabled and that this is the last
// certificate it issued to the agent before signing csrDER for the same
// agent id and machine GUID.
func (t *Trust) VerifyRenewalProof(previousCertDER, proof, csrDER []byte, now time.Time, grace time.Duration) (AgentIdentity, error) {
	prev, err := x509.ParseCertificate(previousCertDER)
	if err != nil {
		return AgentIdentity{}, fmt.Errorf("pki: renewal: parse previous certificate: %w: %w", ErrBadRenewalProof, err)
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
	if err := verifyRenewalSignature(prev.PublicKey, csrDER, proof); err != nil {
		return AgentIdentity{}, fmt.Errorf("pki: renewal for agent %s with certificate %s: %w: %w", id.AgentID, id.Serial, ErrBadRenewalProof, err)
	}
	return id, nil
}

// verifyRenewalSignature checks sig over csrDER by pub, as SignRenewalProof
// makes it.
func verifyRenewalSignature(pub crypto.PublicKey, csrDER, sig []byte) error {
	msg := append([]byte(renewalProofContext), csrDER...)
	digest := sha256.Sum256(msg)
	var ok bool
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(k, digest[:], sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, sig)
	case *rsa.PublicKey:
		ok = rsa.VerifyPKCS1v15(k, crypto.SHA256, digest[:], sig) == nil
	default:
		return fmt.Errorf("%T key", pub)
	}
	if !ok {
		return errors.New("signature mismatch")
	}
	return nil
}
