//go:build windows

package filetrust

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestWindowsCalls: the thin calls on a real file system (Windows, or
// Wine: go test -c, then wine the .exe). Under Wine the ACL facts are
// emulated and junctions are not made.
func TestWindowsCalls(t *testing.T) {
	// Not t.TempDir: Wine cannot do the removal Go's os.RemoveAll asks of
	// it; what is left is under the temporary directory.
	base, err := os.MkdirTemp("", "filetrust")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(base) })
	dir := filepath.Join(base, "sessionaudit")

	f, err := Lstat(dir)
	if err != nil || f.Exists {
		t.Fatalf("Lstat(absent) = %v, %v", f, err)
	}
	if err := MkdirRestricted(dir); err != nil {
		t.Fatal(err)
	}
	if err := MkdirRestricted(dir); !errors.Is(err, fs.ErrExist) {
		t.Errorf("MkdirRestricted on an existing directory: %v; want fs.ErrExist", err)
	}
	f, err = Lstat(dir)
	if err != nil || !f.Exists || !f.Dir || f.Link || !f.OwnerTrusted {
		t.Errorf("Lstat(made) = %v, %v; want a directory with a trusted owner", f, err)
	}
	if f.Emulated != Wine() {
		t.Errorf("Emulated %v under Wine %v", f.Emulated, Wine())
	}
	if !f.Emulated && (!f.Protected || len(f.Others) != 0 || f.Owner != SIDAdministrators) {
		t.Errorf("made restricted: %v; want owner Administrators, protected, nobody else", f)
	}
	file := filepath.Join(dir, "agent.conf")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	ff, err := Stat(fh)
	fh.Close()
	if err != nil || !ff.Exists || ff.Dir || !ff.OwnerTrusted || ff.Links != 1 {
		t.Errorf("Stat(file) = %v, %v", ff, err)
	}
	if !ff.Emulated && len(ff.OthersWrite) != 0 {
		t.Errorf("a file in the restricted directory: %v; want nobody else may write", ff)
	}
	if err := Restrict(dir); err != nil {
		t.Errorf("Restrict: %v", err)
	}

	to := filepath.Join(base, "sessionaudit.untrusted-x")
	if err := Rename(dir, to); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	if _, err := os.Stat(filepath.Join(to, "agent.conf")); err != nil {
		t.Errorf("after Rename: %v", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Rename(dir, to); err == nil {
		t.Error("Rename onto an existing directory succeeded")
	}
	if err := Rename(dir, filepath.Join(base, "sub", "x")); err == nil {
		t.Error("Rename to another directory succeeded")
	}

	if Wine() {
		t.Log("Wine: no junctions")
		return
	}
	// A junction is renamed itself; its target stays.
	target := filepath.Join(base, "target")
	junction := filepath.Join(base, "junction")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cmd", "/c", "mklink", "/J", junction, target).CombinedOutput(); err != nil {
		t.Fatalf("mklink /J: %v: %s", err, out)
	}
	jf, err := Lstat(junction)
	if err != nil || !jf.Link {
		t.Errorf("Lstat(junction) = %v, %v; want a link", jf, err)
	}
	if err := Rename(junction, junction+".moved"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("junction target after renaming the junction: %v", err)
	}
	if jf, _ := Lstat(junction + ".moved"); !jf.Link {
		t.Errorf("the renamed object is not the junction: %v", jf)
	}
}
