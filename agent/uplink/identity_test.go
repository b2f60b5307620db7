package uplink

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestIdentitySaveLoad(t *testing.T) {
	p := newTestPKI(t)
	dir := filepath.Join(t.TempDir(), "state")
	s := identityStore{dir: dir}
	if _, _, err := s.load(); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("load of a missing directory: %v, want ErrNoIdentity", err)
	}
	id := p.issue(t, testAgent, testGUID, 7*24*time.Hour, time.Now())
	if err := s.save(id); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		for name, want := range map[string]os.FileMode{".": 0o700, KeyFile: 0o600, MetaFile: 0o600} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("%s: mode %v, want %v", name, got, want)
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "agent.crt agent.json agent.key" {
		t.Errorf("state directory holds %v, want exactly agent.crt agent.json agent.key", names)
	}

	// A restart: a fresh store reads the same identity.
	got, metaErr, err := identityStore{dir: dir}.load()
	if err != nil || metaErr != nil {
		t.Fatalf("load: %v, %v", err, metaErr)
	}
	if got.AgentID != testAgent || got.MachineGUID != testGUID || got.Serial() != id.Serial() ||
		!got.NotAfter.Equal(id.NotAfter) || !got.RenewAfter.Equal(id.RenewAfter) || len(got.ChainDER) != 2 {
		t.Fatalf("reloaded %+v, want %+v", got, id)
	}
	if !publicKeyMatches(got.Leaf, got.Key) {
		t.Fatal("reloaded key does not match the certificate")
	}
}

// TestIdentityLooseModesTightened: a directory someone opened up is
// restricted again at start.
func TestIdentityLooseModesTightened(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix modes")
	}
	p := newTestPKI(t)
	dir := t.TempDir()
	s := identityStore{dir: dir}
	if err := s.save(p.issue(t, testAgent, testGUID, time.Hour, time.Now())); err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Join(dir, KeyFile), 0o644)
	if err := s.prepare(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.load(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{".": 0o700, KeyFile: 0o600} {
		fi, _ := os.Stat(filepath.Join(dir, name))
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v after start, want %v", name, fi.Mode().Perm(), want)
		}
	}
}

// TestIdentityDamagedMeta: a damaged, missing or stale agent.json is
// rebuilt from the certificate, with an error naming the file.
func TestIdentityDamagedMeta(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	for name, damage := range map[string]func(path string){
		"garbage": func(path string) { os.WriteFile(path, []byte("{not json"), 0o600) },
		"missing": func(path string) { os.Remove(path) },
		"stale": func(path string) {
			os.WriteFile(path, []byte(`{"agent_id":"agent-1","machine_guid":"`+testGUID+`","serial":"1234"}`), 0o600)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := identityStore{dir: dir}
			id := p.issue(t, testAgent, testGUID, 9*time.Hour, now)
			if err := s.save(id); err != nil {
				t.Fatal(err)
			}
			metaPath := filepath.Join(dir, MetaFile)
			damage(metaPath)
			got, metaErr, err := s.load()
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			if metaErr == nil || !strings.Contains(metaErr.Error(), metaPath) {
				t.Fatalf("metaErr = %v, want an error naming %s", metaErr, metaPath)
			}
			if got.AgentID != testAgent || got.Serial() != id.Serial() {
				t.Fatalf("identity %s/%s, want %s/%s", got.AgentID, got.Serial(), testAgent, id.Serial())
			}
			// Renewal at 2/3 of the lifetime (NotBefore is 5 min early).
			if want := got.Leaf.NotBefore.Add(got.NotAfter.Sub(got.Leaf.NotBefore) * 2 / 3); !got.RenewAfter.Equal(want) {
				t.Errorf("RenewAfter %v, want %v", got.RenewAfter, want)
			}
			// Rewritten: the next load is clean.
			if _, metaErr, err := s.load(); err != nil || metaErr != nil {
				t.Fatalf("second load: %v, %v", err, metaErr)
			}
		})
	}
}

// TestIdentityUnusable: a damaged or mismatched key or certificate is
// reported naming the file; nothing is repaired silently.
func TestIdentityUnusable(t *testing.T) {
	p := newTestPKI(t)
	now := time.Now()
	other := p.issue(t, "agent-2", testGUID, time.Hour, now)
	otherKey, _ := os.ReadFile(filepath.Join(func() string {
		d := t.TempDir()
		identityStore{dir: d}.save(other)
		return d
	}(), KeyFile))
	for _, tc := range []struct {
		name, file string
		damage     func(dir string)
	}{
		{"cert garbage", CertFile, func(dir string) { os.WriteFile(filepath.Join(dir, CertFile), []byte("garbage"), 0o644) }},
		{"cert missing", CertFile, func(dir string) { os.Remove(filepath.Join(dir, CertFile)) }},
		{"key garbage", KeyFile, func(dir string) { os.WriteFile(filepath.Join(dir, KeyFile), []byte("garbage"), 0o600) }},
		{"key missing", KeyFile, func(dir string) { os.Remove(filepath.Join(dir, KeyFile)) }},
		{"key of another certificate", KeyFile, func(dir string) { os.WriteFile(filepath.Join(dir, KeyFile), otherKey, 0o600) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := identityStore{dir: dir}
			if err := s.save(p.issue(t, testAgent, testGUID, time.Hour, now)); err != nil {
				t.Fatal(err)
			}
			tc.damage(dir)
			_, _, err := s.load()
			var ue *UnusableIdentityError
			if !errors.As(err, &ue) || ue.Path != filepath.Join(dir, tc.file) {
				t.Fatalf("load: %v, want an UnusableIdentityError naming %s", err, tc.file)
			}
			if err := s.moveAside(now); err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.load(); !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("after moveAside: %v, want ErrNoIdentity", err)
			}
		})
	}
}

// TestIdentityCrashBetweenCertAndKey: a crash after agent.crt was replaced
// but before agent.key.next was renamed leaves the new key under
// agent.key.next; load finishes the rename.
func TestIdentityCrashBetweenCertAndKey(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	s := identityStore{dir: dir}
	now := time.Now()
	if err := s.save(p.issue(t, testAgent, testGUID, time.Hour, now)); err != nil {
		t.Fatal(err)
	}
	renewed := p.issue(t, testAgent, testGUID, time.Hour, now)
	// What save does, up to the crash.
	keyPEM, _ := os.ReadFile(filepath.Join(func() string {
		d := t.TempDir()
		identityStore{dir: d}.save(renewed)
		return d
	}(), KeyFile))
	if err := writeFileAtomic(filepath.Join(dir, nextKeyFile), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// Crash 1: only the key was written: the old identity loads and the
	// stray key is removed.
	got, _, err := s.load()
	if err != nil || got.Serial() == renewed.Serial() {
		t.Fatalf("crash before the certificate: got %v, %v; want the old identity", got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, nextKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("stray %s kept: %v", nextKeyFile, err)
	}
	// Crash 2: key and certificate written, key not renamed.
	writeFileAtomic(filepath.Join(dir, nextKeyFile), keyPEM, 0o600)
	if err := writeFileAtomic(filepath.Join(dir, CertFile), pemChain(renewed), 0o644); err != nil {
		t.Fatal(err)
	}
	got, metaErr, err := s.load()
	if err != nil {
		t.Fatalf("crash before the key rename: %v", err)
	}
	if got.Serial() != renewed.Serial() || metaErr == nil {
		t.Fatalf("got serial %s (metaErr %v), want the renewed %s with agent.json rebuilt", got.Serial(), metaErr, renewed.Serial())
	}
	if _, err := os.Stat(filepath.Join(dir, nextKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("%s not renamed: %v", nextKeyFile, err)
	}
}

// TestPlantedFilesNotFollowed: a file or symbolic link left under a
// temporary name (by someone who could write the directory before the
// agent restricted it) is replaced, never written through.
func TestPlantedFilesNotFollowed(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symbolic links need a privilege on Windows")
	}
	p := newTestPKI(t)
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "stolen")
	if err := os.WriteFile(outside, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, nextKeyFile+".tmp")); err != nil {
		t.Fatal(err)
	}
	if err := (identityStore{dir: dir}).save(p.issue(t, testAgent, testGUID, time.Hour, time.Now())); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(outside); len(b) != 0 {
		t.Fatal("the private key was written through a planted symbolic link")
	}
	if _, _, err := (identityStore{dir: dir}).load(); err != nil {
		t.Fatal(err)
	}
}

// TestForeignDirectoryRefused: a state directory owned by another user is
// refused (its owner could loosen it again).
func TestForeignDirectoryRefused(t *testing.T) {
	if runtime.GOOS == "windows" || os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another user")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err := identityStore{dir: dir}.prepare()
	if err == nil || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("prepare of a directory owned by uid 65534: %v", err)
	}
}

func TestTransientReadErrorKeepsIdentity(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"too many open files", &fs.PathError{Op: "open", Path: "agent.crt", Err: syscall.EMFILE}, true},
		{"missing", &fs.PathError{Op: "open", Path: "agent.crt", Err: fs.ErrNotExist}, false},
		{"unparsable", errors.New("agent.key: no PEM block found"), false},
		{"none", nil, false},
	}
	for _, tt := range tests {
		if got := transientReadError(tt.err); got != tt.want {
			t.Errorf("%s: transientReadError = %v, want %v", tt.name, got, tt.want)
		}
	}
}
