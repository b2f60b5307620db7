package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
)

// DefaultRenewalGrace is how long after its certificate expired an agent may
// still prove its identity with the expired certificate's key
// instead of needing an admin to allow re-enrollment.
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
// (the collector checks it with VerifyRenewalSignature). Agent side.
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
		return nil, fmt.Errorf("identity: sign renewal proof with %T: %w", previousKey.Public(), err)
	}
	return sig, nil
}

// VerifyRenewalSignature checks that sig is pub's signature over csrDER, as
// SignRenewalProof makes it. Collector side: server/pki checks the previous
// certificate itself before calling it.
func VerifyRenewalSignature(pub crypto.PublicKey, csrDER, sig []byte) error {
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
