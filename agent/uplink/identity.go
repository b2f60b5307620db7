package uplink

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

// The files of the state directory.
const (
	// KeyFile holds the agent's private key, PKCS#8 PEM.
	KeyFile = "agent.key"
	// CertFile holds the agent's certificate and its CA chain, PEM, leaf
	// first.
	CertFile = "agent.crt"
	// MetaFile holds what the collector said besides the certificate
	// (agent id, renew_after), JSON.
	MetaFile = "agent.json"
	// nextKeyFile is the new key while a new certificate is being stored:
	// renamed to KeyFile last, so that a crash mid-way leaves a key that
	// matches agent.crt under one of the two names.
	nextKeyFile = "agent.key.next"
)

// ErrNoIdentity means the state directory holds no identity: the agent has
// not enrolled yet (or its files were moved aside as unusable).
var ErrNoIdentity = errors.New("uplink: no agent identity stored")

// UnusableIdentityError means the stored identity cannot be used: a file is
// missing, unreadable or malformed, or the key does not belong to the
// certificate. Path names the file at fault.
type UnusableIdentityError struct {
	Path string
	Err  error
}

func (e *UnusableIdentityError) Error() string {
	return fmt.Sprintf("uplink: stored identity unusable: %s: %v", e.Path, e.Err)
}

func (e *UnusableIdentityError) Unwrap() error { return e.Err }

// Identity is what the agent is to the collector: the agent id and machine
// GUID bound into its client certificate, the certificate with its CA
// chain, and the private key, which never leaves the host.
type Identity struct {
	// AgentID is the id the collector assigned at enrollment.
	AgentID string
	// MachineGUID is the host the certificate is bound to.
	MachineGUID string
	// Key is the certificate's private key.
	Key crypto.Signer
	// Leaf is the parsed client certificate.
	Leaf *x509.Certificate
	// ChainDER is the certificate followed by its CA chain, DER-encoded,
	// leaf's issuer first: what the TLS handshake presents.
	ChainDER [][]byte
	// NotAfter is when the certificate expires.
	NotAfter time.Time
	// RenewAfter is when the agent should renew, as the collector said.
	RenewAfter time.Time
}

// TLSCertificate returns the identity as a client certificate for a TLS
// handshake.
func (id *Identity) TLSCertificate() *tls.Certificate {
	return &tls.Certificate{Certificate: id.ChainDER, PrivateKey: id.Key, Leaf: id.Leaf}
}

// Serial returns the certificate's serial number in lower-case hex, as the
// collector logs it.
func (id *Identity) Serial() string { return id.Leaf.SerialNumber.Text(16) }

// meta is the JSON of MetaFile.
type meta struct {
	AgentID     string    `json:"agent_id"`
	MachineGUID string    `json:"machine_guid"`
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"not_after"`
	RenewAfter  time.Time `json:"renew_after"`
}

// newIdentity assembles an Identity from what Enroll or Renew returned and
// checks that it is usable: the certificate parses, belongs to key, and
// carries exactly one agent id and machine GUID.
func newIdentity(key crypto.Signer, certDER []byte, caChainDER [][]byte, notAfter, renewAfter time.Time) (*Identity, error) {
	leaf, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("parse the certificate the collector issued: %w", err)
	}
	if !publicKeyMatches(leaf, key) {
		return nil, errors.New("the certificate the collector issued is not for the key the agent sent")
	}
	agentID, guid, err := identity.AgentNames(leaf)
	if err != nil {
		return nil, err
	}
	if notAfter.IsZero() {
		notAfter = leaf.NotAfter
	}
	if renewAfter.IsZero() || !renewAfter.Before(notAfter) {
		renewAfter = defaultRenewAfter(leaf)
	}
	return &Identity{
		AgentID: agentID, MachineGUID: guid, Key: key, Leaf: leaf,
		ChainDER: append([][]byte{certDER}, caChainDER...),
		NotAfter: notAfter, RenewAfter: renewAfter,
	}, nil
}

// defaultRenewAfter is used when agent.json is lost: two thirds of the
// certificate's lifetime, the latest point the collector would have chosen.
func defaultRenewAfter(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(life * 2 / 3)
}

// publicKeyMatches reports whether key is the private key of cert.
func publicKeyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// identityStore keeps an Identity in a directory readable only by the
// agent's service account and administrators.
type identityStore struct {
	dir string
}

func (s identityStore) path(name string) string { return filepath.Join(s.dir, name) }

// prepare creates the directory if needed and restricts it: mode 0700 on
// Unix; on Windows a protected DACL granting full control to SYSTEM and
// BUILTIN\Administrators only, inherited by the files in it.
func (s identityStore) prepare() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("uplink: create state directory %s: %w", s.dir, err)
	}
	if err := secureDir(s.dir); err != nil {
		return fmt.Errorf("uplink: restrict state directory %s to SYSTEM and administrators: %w", s.dir, err)
	}
	return nil
}

// load reads the stored identity. It returns ErrNoIdentity when none of
// the files exist, an *UnusableIdentityError when the key or certificate
// cannot be used, and otherwise the identity and, when agent.json was
// missing, damaged or stale and rebuilt from the certificate, a non-nil
// metaErr saying why (the caller logs it; the identity is good).
func (s identityStore) load() (id *Identity, metaErr error, err error) {
	certPEM, certErr := os.ReadFile(s.path(CertFile))
	_, keyErr := os.Stat(s.path(KeyFile))
	_, nextErr := os.Stat(s.path(nextKeyFile))
	_, metaStatErr := os.Stat(s.path(MetaFile))
	if errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist) &&
		errors.Is(nextErr, fs.ErrNotExist) && errors.Is(metaStatErr, fs.ErrNotExist) {
		return nil, nil, ErrNoIdentity
	}
	if transientReadError(certErr) {
		// Too many open files, an I/O error, a sharing violation: not a
		// reason to give up the identity; the caller retries.
		return nil, nil, fmt.Errorf("uplink: read %s: %w", s.path(CertFile), certErr)
	}
	if certErr != nil {
		return nil, nil, &UnusableIdentityError{Path: s.path(CertFile), Err: certErr}
	}
	chain, err := parseCertificateChainPEM(certPEM)
	if err != nil {
		return nil, nil, &UnusableIdentityError{Path: s.path(CertFile), Err: err}
	}
	leaf := chain[0]
	agentID, guid, err := identity.AgentNames(leaf)
	if err != nil {
		return nil, nil, &UnusableIdentityError{Path: s.path(CertFile), Err: err}
	}
	key, err := s.loadKey(leaf)
	if err != nil {
		return nil, nil, err
	}
	der := make([][]byte, len(chain))
	for i, c := range chain {
		der[i] = c.Raw
	}
	id = &Identity{AgentID: agentID, MachineGUID: guid, Key: key, Leaf: leaf, ChainDER: der,
		NotAfter: leaf.NotAfter, RenewAfter: defaultRenewAfter(leaf)}

	m, err := s.loadMeta()
	switch {
	case err != nil:
		metaErr = err
	case m.Serial != id.Serial() || m.AgentID != agentID:
		metaErr = fmt.Errorf("uplink: %s describes certificate %s of agent %q, but %s holds %s of agent %q (a crash while storing a new certificate)",
			s.path(MetaFile), m.Serial, m.AgentID, s.path(CertFile), id.Serial(), agentID)
	default:
		if !m.RenewAfter.IsZero() && m.RenewAfter.Before(id.NotAfter) {
			id.RenewAfter = m.RenewAfter
		}
	}
	if metaErr != nil {
		// The certificate is the truth; agent.json only adds renew_after.
		// Rewrite it so that the next start is clean.
		if err := s.writeMeta(id); err != nil {
			return nil, nil, err
		}
	}
	return id, metaErr, nil
}

// loadKey returns the private key of leaf: agent.key, or agent.key.next
// when a crash came between storing a new certificate and renaming its
// key, in which case the rename is finished now. A leftover agent.key.next
// that matches nothing is deleted.
func (s identityStore) loadKey(leaf *x509.Certificate) (crypto.Signer, error) {
	key, err := readKey(s.path(KeyFile))
	if err == nil && publicKeyMatches(leaf, key) {
		s.fixKeyMode()
		_ = os.Remove(s.path(nextKeyFile))
		return key, nil
	}
	if next, nerr := readKey(s.path(nextKeyFile)); nerr == nil && publicKeyMatches(leaf, next) {
		if err := os.Rename(s.path(nextKeyFile), s.path(KeyFile)); err != nil {
			return nil, fmt.Errorf("uplink: finish storing the new key: rename %s to %s: %w", s.path(nextKeyFile), s.path(KeyFile), err)
		}
		if err := syncDir(s.dir); err != nil {
			return nil, fmt.Errorf("uplink: flush state directory %s: %w", s.dir, err)
		}
		return next, nil
	}
	if transientReadError(err) {
		return nil, fmt.Errorf("uplink: read %s: %w", s.path(KeyFile), err)
	}
	if err == nil {
		err = fmt.Errorf("the key is not the key of certificate %s in %s", leaf.SerialNumber.Text(16), CertFile)
	}
	return nil, &UnusableIdentityError{Path: s.path(KeyFile), Err: err}
}

// transientReadError reports whether err is a failure to read a file that
// exists (too many open files, an I/O error), as opposed to a missing file
// or unparsable content, which make the identity unusable.
func transientReadError(err error) bool {
	var pe *fs.PathError
	return err != nil && !errors.Is(err, fs.ErrNotExist) && errors.As(err, &pe)
}

// fixKeyMode tightens agent.key to 0600 if someone loosened it (Unix).
func (s identityStore) fixKeyMode() {
	if fi, err := os.Stat(s.path(KeyFile)); err == nil && fi.Mode().Perm()&0o077 != 0 && filepath.Separator == '/' {
		_ = os.Chmod(s.path(KeyFile), 0o600)
	}
}

func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := identity.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

func (s identityStore) loadMeta() (meta, error) {
	var m meta
	data, err := os.ReadFile(s.path(MetaFile))
	if err != nil {
		return m, fmt.Errorf("uplink: read %s: %w", s.path(MetaFile), err)
	}
	// Unknown fields are ignored: a later version may add some, and an
	// agent rolled back must still read the file.
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("uplink: %s is not valid agent metadata: %w", s.path(MetaFile), err)
	}
	return m, nil
}

// save stores id crash-safely: the key under agent.key.next, then agent.crt
// and agent.json (each written to a temporary file, flushed and renamed),
// then agent.key.next renamed to agent.key. At any crash point, load finds
// a key and certificate that belong together.
func (s identityStore) save(id *Identity) error {
	if err := s.prepare(); err != nil {
		return err
	}
	keyPEM, err := identity.MarshalPrivateKeyPEM(id.Key)
	if err != nil {
		return fmt.Errorf("uplink: store identity: %w", err)
	}
	if err := writeFileAtomic(s.path(nextKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileAtomic(s.path(CertFile), identity.EncodeCertificatesPEM(id.ChainDER...), 0o644); err != nil {
		return err
	}
	if err := s.writeMeta(id); err != nil {
		return err
	}
	if err := os.Rename(s.path(nextKeyFile), s.path(KeyFile)); err != nil {
		return fmt.Errorf("uplink: store identity: rename %s to %s: %w", s.path(nextKeyFile), s.path(KeyFile), err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("uplink: flush state directory %s: %w", s.dir, err)
	}
	return nil
}

func (s identityStore) writeMeta(id *Identity) error {
	data, err := json.MarshalIndent(meta{
		AgentID: id.AgentID, MachineGUID: id.MachineGUID, Serial: id.Serial(),
		NotAfter: id.NotAfter.UTC(), RenewAfter: id.RenewAfter.UTC(),
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("uplink: encode %s: %w", s.path(MetaFile), err)
	}
	return writeFileAtomic(s.path(MetaFile), append(data, '\n'), 0o600)
}

// moveAside renames the identity files out of the way (suffix
// ".unusable-<unix time>"), keeping them for an administrator to look at,
// so that the agent can enroll again.
func (s identityStore) moveAside(now time.Time) error {
	suffix := fmt.Sprintf(".unusable-%d", now.Unix())
	for _, name := range []string{KeyFile, nextKeyFile, CertFile, MetaFile} {
		err := os.Rename(s.path(name), s.path(name+suffix))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("uplink: move unusable %s aside: %w", s.path(name), err)
		}
	}
	return syncDir(s.dir)
}

// writeFileAtomic replaces path with data: written to path+".tmp",
// flushed, renamed over path, and the directory flushed. The temporary
// file is always created anew (a file left there, perhaps planted with a
// looser ACL, is removed first), so it gets the directory's permissions.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("uplink: remove stale %s: %w", tmp, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("uplink: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil && filepath.Separator == '/' {
		return fmt.Errorf("uplink: write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("uplink: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("uplink: flush %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("uplink: close %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("uplink: rename %s to %s: %w", tmp, path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("uplink: flush directory of %s: %w", path, err)
	}
	return nil
}

// parseCertificateChainPEM parses consecutive CERTIFICATE blocks; there
// must be at least one and nothing else.
func parseCertificateChainPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for len(bytes.TrimSpace(data)) > 0 {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("trailing data that is not PEM")
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}
