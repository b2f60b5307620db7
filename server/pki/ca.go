package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

// ClockSkew is how far before "now" every certificate's validity starts, so
// that a peer whose clock is a little behind accepts it at once.
const ClockSkew = 5 * time.Minute

// CA is a certificate authority that issues sessionaudit certificates: the
// built-in one made by NewCA, or an enterprise intermediate loaded by LoadCA.
// A CA is safe for concurrent use.
type CA struct {
	cert   *x509.Certificate
	chain  [][]byte // DER: cert first, then its issuers as the file gave them
	signer crypto.Signer
}

// NewCA makes a self-signed CA with a fresh ECDSA P-256 key, named name,
// valid from now (less ClockSkew) for validity. It signs end-entity
// certificates only (path length 0). Write it out with WriteFiles.
func NewCA(name string, validity time.Duration, now time.Time) (*CA, error) {
	if name == "" {
		return nil, errors.New("pki: new CA: name is empty")
	}
	if validity < 24*time.Hour {
		return nil, fmt.Errorf("pki: new CA %q: validity %v is under a day", name, validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: new CA %q: generate key: %w", name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("pki: new CA %q: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"sessionaudit"}},
		NotBefore:             now.Add(-ClockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: new CA %q: sign: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: new CA %q: parse own certificate: %w", name, err)
	}
	return &CA{cert: cert, chain: [][]byte{der}, signer: key}, nil
}

// LoadCA loads a CA from a PEM certificate file and a PEM private key file.
// The certificate file holds the CA's certificate first and may go on with
// its issuers (an enterprise intermediate's chain), which are then sent to
// agents with their certificates. The key may be PKCS#8, SEC 1 (EC) or
// PKCS#1 (RSA), unencrypted. LoadCA refuses a certificate that is not a CA
// allowed to sign certificates, and a key that does not match it; every
// error names the file at fault.
func LoadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA certificate: %w", err)
	}
	certs, err := parseCertificatesPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate file %s: %w", certPath, err)
	}
	cert := certs[0]
	if err := checkIsCA(cert); err != nil {
		return nil, fmt.Errorf("pki: CA certificate file %s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("pki: read CA key: %w", err)
	}
	key, err := identity.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key file %s: %w", keyPath, err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("pki: CA key file %s does not match the certificate in %s (subject %q)",
			keyPath, certPath, cert.Subject.String())
	}
	chain := make([][]byte, len(certs))
	for i, c := range certs {
		chain[i] = c.Raw
	}
	return &CA{cert: cert, chain: chain, signer: key}, nil
}

// Certificate returns the CA's certificate. The caller must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// ChainDER returns the CA's certificate followed by the issuers it was loaded
// with, DER-encoded: what EnrollResponse.ca_chain_der carries.
func (ca *CA) ChainDER() [][]byte {
	out := make([][]byte, len(ca.chain))
	copy(out, ca.chain)
	return out
}

// WriteFiles writes the CA's certificate chain (PEM) to certPath, mode 0644,
// and its private key (PKCS#8 PEM) to keyPath, mode 0600. Unless overwrite
// is true it refuses, writing nothing, when either file exists; with
// overwrite each file is replaced atomically.
func (ca *CA) WriteFiles(certPath, keyPath string, overwrite bool) error {
	return writeKeyPair(certPath, keyPath, ca.signer, ca.chain, overwrite)
}

// WriteCertificateFiles writes a TLS certificate made by this package (such
// as IssueServerCert's) as WriteFiles writes a CA: the chain to certPath,
// mode 0644, the key to keyPath, mode 0600, refusing to overwrite unless told.
func WriteCertificateFiles(cert tls.Certificate, certPath, keyPath string, overwrite bool) error {
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok {
		return fmt.Errorf("pki: write %s: the certificate's private key (%T) cannot sign", keyPath, cert.PrivateKey)
	}
	return writeKeyPair(certPath, keyPath, signer, cert.Certificate, overwrite)
}

func writeKeyPair(certPath, keyPath string, key crypto.Signer, chain [][]byte, overwrite bool) error {
	keyPEM, err := identity.MarshalPrivateKeyPEM(key)
	if err != nil {
		return fmt.Errorf("pki: write key %s: %w", keyPath, err)
	}
	certPEM := identity.EncodeCertificatesPEM(chain...)
	if !overwrite {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("pki: %s already exists; refusing to overwrite it", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("pki: check %s: %w", p, err)
			}
		}
	}
	if err := writeFile(keyPath, keyPEM, 0o600, overwrite); err != nil {
		return err
	}
	if err := writeFile(certPath, certPEM, 0o644, overwrite); err != nil {
		if !overwrite {
			os.Remove(keyPath) // leave no key without its certificate
		}
		return err
	}
	return nil
}

// writeFile writes data to path with mode perm. Without overwrite it creates
// the file exclusively; with overwrite it writes a temporary file beside it
// and renames it over path, so a reader never sees half a file.
func writeFile(path string, data []byte, perm os.FileMode, overwrite bool) (err error) {
	var f *os.File
	if overwrite {
		f, err = os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	} else {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	}
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("pki: %s already exists; refusing to overwrite it", path)
		}
		return fmt.Errorf("pki: create %s: %w", path, err)
	}
	name := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(name)
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("pki: chmod %s: %w", name, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("pki: write %s: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("pki: sync %s: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("pki: close %s: %w", name, err)
	}
	if overwrite {
		if err = os.Rename(name, path); err != nil {
			return fmt.Errorf("pki: replace %s: %w", path, err)
		}
	}
	return nil
}

// checkIsCA says why cert cannot act as an issuing CA, if it cannot.
func checkIsCA(cert *x509.Certificate) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("certificate %q is not a CA (basic constraints CA:TRUE missing)", cert.Subject.String())
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("certificate %q lacks key usage certSign", cert.Subject.String())
	}
	return nil
}

// parseCertificatesPEM parses every block of data, which must all be
// CERTIFICATE blocks, at least one.
func parseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for i := 1; ; i++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", i, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", i, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return certs, nil
}

// publicKeysEqual reports whether a and b are the same public key.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

// serialLimit is 2^128: serial numbers are 128 random bits.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("random serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// LoadCertificates reads every certificate of a PEM file: a CA bundle to
// trust, such as the analyst CA's certificate without its key.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: read certificates: %w", err)
	}
	certs, err := parseCertificatesPEM(data)
	if err != nil {
		return nil, fmt.Errorf("pki: certificates in %s: %w", path, err)
	}
	return certs, nil
}
