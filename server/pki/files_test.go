package pki

import (
	"bytes"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
)

func big1() *big.Int { return big.NewInt(1) }

func writeTestFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestWriteFilesAndLoadCA(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	ca := newTestCA(t, "agents", testNow)
	if err := ca.WriteFiles(certPath, keyPath, false); err != nil {
		t.Fatalf("WriteFiles: %v", err)
	}
	if m := mode(t, keyPath); m != 0o600 {
		t.Errorf("key file mode %v; want 0600", m)
	}
	if m := mode(t, certPath); m != 0o644 {
		t.Errorf("certificate file mode %v; want 0644", m)
	}
	loaded, err := LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !loaded.Certificate().Equal(ca.Certificate()) {
		t.Errorf("loaded certificate differs from the written one")
	}
	// The loaded key signs certificates that verify under the original CA.
	trust, err := NewTrust([]*x509.Certificate{ca.Certificate()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	is, err := loaded.SignAgentCSR(csrFor(t, ecKey(t, elliptic.P256()), nil), testAgentID, testGUID, time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trust.AgentIdentityFromCert(is.Certificate, testNow); err != nil {
		t.Errorf("certificate from the loaded CA: %v", err)
	}

	t.Run("refuses to overwrite", func(t *testing.T) {
		before, _ := os.ReadFile(keyPath)
		other := newTestCA(t, "other", testNow)
		for _, paths := range [][2]string{{certPath, filepath.Join(dir, "new.key")}, {filepath.Join(dir, "new.pem"), keyPath}} {
			err := other.WriteFiles(paths[0], paths[1], false)
			if err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Errorf("WriteFiles(%s, %s): %v; want an already-exists error", paths[0], paths[1], err)
			}
			for _, p := range paths {
				if _, err := os.Stat(p); err == nil && strings.Contains(p, "new.") {
					t.Errorf("WriteFiles left %s behind", p)
				}
			}
		}
		after, _ := os.ReadFile(keyPath)
		if !bytes.Equal(before, after) {
			t.Errorf("key file changed")
		}
	})
	t.Run("overwrites when told, key stays 0600", func(t *testing.T) {
		if err := os.Chmod(keyPath, 0o644); err != nil {
			t.Fatal(err)
		}
		other := newTestCA(t, "other", testNow)
		if err := other.WriteFiles(certPath, keyPath, true); err != nil {
			t.Fatalf("WriteFiles(overwrite): %v", err)
		}
		if m := mode(t, keyPath); m != 0o600 {
			t.Errorf("key file mode %v; want 0600", m)
		}
		got, err := LoadCA(certPath, keyPath)
		if err != nil || !got.Certificate().Equal(other.Certificate()) {
			t.Errorf("LoadCA after overwrite: %v, or the old CA", err)
		}
		left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*"))
		if len(left) > 0 {
			t.Errorf("temporary files left: %v", left)
		}
	})
}

func TestLoadCAErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "agents", testNow)
	other := newTestCA(t, "other", testNow)
	caCert := writeTestFile(t, dir, "ca.pem", identity.EncodeCertificatesPEM(ca.Certificate().Raw))
	keyPEM, _ := identity.MarshalPrivateKeyPEM(ca.signer)
	caKey := writeTestFile(t, dir, "ca.key", keyPEM)
	otherPEM, _ := identity.MarshalPrivateKeyPEM(other.signer)
	otherKey := writeTestFile(t, dir, "other.key", otherPEM)

	leaf, err := ca.SignAgentCSR(csrFor(t, ca.signer, nil), testAgentID, testGUID, time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	leafCert := writeTestFile(t, dir, "leaf.pem", identity.EncodeCertificatesPEM(leaf.DER))
	// A CA certificate without certSign.
	noSignKey := ecKey(t, elliptic.P256())
	noSignDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big1(), Subject: pkix.Name{CommonName: "no certSign"},
		NotBefore: testNow, NotAfter: testNow.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca.Certificate(), noSignKey.Public(), ca.signer)
	if err != nil {
		t.Fatal(err)
	}
	noSign := writeTestFile(t, dir, "nosign.pem", identity.EncodeCertificatesPEM(noSignDER))
	notPEM := writeTestFile(t, dir, "garbage.pem", []byte("hello"))
	keyInCert := writeTestFile(t, dir, "keyincert.pem", keyPEM)
	encrypted := writeTestFile(t, dir, "enc.key", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}))
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name, cert, key string
		wantFile        string // the error must name this file
		wantInErr       string
	}{
		{"missing certificate", missing, caKey, missing, "no such file"},
		{"missing key", caCert, missing, missing, "no such file"},
		{"certificate not PEM", notPEM, caKey, notPEM, "no PEM CERTIFICATE"},
		{"key in certificate file", keyInCert, caKey, keyInCert, `"PRIVATE KEY", want CERTIFICATE`},
		{"not a CA", leafCert, caKey, leafCert, "not a CA"},
		{"no certSign", noSign, caKey, noSign, "certSign"},
		{"key not PEM", caCert, notPEM, notPEM, "no PEM block"},
		{"certificate as key", caCert, caCert, caCert, `"CERTIFICATE"`},
		{"encrypted key", caCert, encrypted, encrypted, "encrypted"},
		{"key of another CA", caCert, otherKey, otherKey, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadCA(tt.cert, tt.key)
			if err == nil {
				t.Fatal("LoadCA succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantFile) || !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q; want it to name %s and say %q", err, tt.wantFile, tt.wantInErr)
			}
		})
	}
}

// An enterprise intermediate (RSA, PKCS#1 key, chain in the file) loads, and
// agents' certificates verify against it alone as the anchor.
func TestLoadCAEnterpriseIntermediate(t *testing.T) {
	dir := t.TempDir()
	rootKey := ecKey(t, elliptic.P384())
	rootTmpl := &x509.Certificate{
		SerialNumber: big1(), Subject: pkix.Name{CommonName: "Example Root"},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	interKey := rsa2048()
	interDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Example sessionaudit agents"},
		NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign,
	}, root, interKey.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	certPath := writeTestFile(t, dir, "inter.pem", identity.EncodeCertificatesPEM(interDER, rootDER))
	keyPath := writeTestFile(t, dir, "inter.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(interKey)}))
	ca, err := LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	is, err := ca.SignAgentCSR(csrFor(t, ecKey(t, elliptic.P256()), nil), testAgentID, testGUID, time.Hour, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(is.ChainDER) != 2 || !bytes.Equal(is.ChainDER[0], interDER) || !bytes.Equal(is.ChainDER[1], rootDER) {
		t.Errorf("ChainDER is not intermediate, root")
	}
	trust, err := NewTrust([]*x509.Certificate{ca.Certificate()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := trust.AgentIdentityFromCert(is.Certificate, testNow); err != nil || id.AgentID != testAgentID {
		t.Errorf("identity %+v, %v", id, err)
	}
}
