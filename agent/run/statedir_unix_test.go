//go:build !windows

package run

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrepareStateDirLinux: PrepareStateDir on a real file system, with
// the Linux meaning of the facts: a symbolic link is a reparse point, the
// trusted owners are root and the agent's user, mode 0700 is closed.
func TestPrepareStateDirLinux(t *testing.T) {
	root := os.Geteuid() == 0
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// moved returns the directories the state directory was moved to.
	moved := func(parent string) []string {
		m, _ := filepath.Glob(filepath.Join(parent, "sessionaudit.untrusted-*"))
		return m
	}
	check := func(t *testing.T, dir string) {
		t.Helper()
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("after PrepareStateDir: %v, %v; want a directory with mode 0700", fi, err)
		}
	}

	t.Run("absent: created 0700", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "sessionaudit")
		_, err := PrepareStateDir(dir)
		must(err)
		check(t, dir)
	})
	t.Run("open to others: restricted, contents kept", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "sessionaudit")
		must(os.Mkdir(dir, 0o700))
		must(os.Chmod(dir, 0o755))
		must(os.WriteFile(filepath.Join(dir, "agent.key"), []byte("k"), 0o600))
		r, err := PrepareStateDir(dir)
		must(err)
		check(t, dir)
		if _, err := os.Stat(filepath.Join(dir, "agent.key")); err != nil || len(r.Steps) != 2 || r.Steps[0].Decision.Action != StateDirRestrict {
			t.Errorf("steps %+v, agent.key: %v; want restrict then use, the key kept", r.Steps, err)
		}
	})
	t.Run("a symbolic link the agent's own user made is refused", func(t *testing.T) {
		parent := t.TempDir()
		target := filepath.Join(parent, "elsewhere")
		must(os.Mkdir(target, 0o700))
		dir := filepath.Join(parent, "sessionaudit")
		must(os.Symlink(target, dir))
		_, err := PrepareStateDir(dir)
		if err == nil || !strings.Contains(err.Error(), "never follows a link") {
			t.Errorf("err %v; want a refusal", err)
		}
	})
	t.Run("a file with a second hard link: moved aside", func(t *testing.T) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "sessionaudit")
		must(os.MkdirAll(filepath.Join(dir, SpoolDir), 0o700))
		outside := filepath.Join(parent, "outside")
		must(os.WriteFile(outside, []byte("x"), 0o600))
		must(os.Link(outside, filepath.Join(dir, SpoolDir, "00000001.seg")))
		r, err := PrepareStateDir(dir)
		must(err)
		check(t, dir)
		if m := moved(parent); len(m) != 1 || r.Steps[0].Facts.UntrustedCount != 1 {
			t.Errorf("moved to %v, first look %+v; want one directory moved aside, one untrusted entry", m, r.Steps[0].Facts)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("new state directory holds %v; want it empty", entries)
		}
	})
	if !root {
		t.Skip("not root: the cases of objects another user owns are not tested")
	}
	t.Run("a directory another user made: moved aside untouched", func(t *testing.T) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "sessionaudit")
		must(os.Mkdir(dir, 0o777))
		must(os.WriteFile(filepath.Join(dir, "agent.conf"), []byte("CollectorAddress = evil:1\n"), 0o644))
		must(os.Chown(dir, 65534, 65534))
		_, err := PrepareStateDir(dir)
		must(err)
		check(t, dir)
		m := moved(parent)
		if len(m) != 1 {
			t.Fatalf("moved aside: %v; want one", m)
		}
		if _, err := os.Stat(filepath.Join(m[0], "agent.conf")); err != nil {
			t.Errorf("the moved directory lost its content: %v", err)
		}
	})
	t.Run("a symbolic link another user made: the link is moved, its target untouched", func(t *testing.T) {
		parent := t.TempDir()
		target := filepath.Join(parent, "etc")
		must(os.Mkdir(target, 0o755))
		dir := filepath.Join(parent, "sessionaudit")
		must(os.Symlink(target, dir))
		must(os.Lchown(dir, 65534, 65534))
		_, err := PrepareStateDir(dir)
		must(err)
		check(t, dir)
		if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("link target: %v, %v; want it untouched (0755)", fi, err)
		}
		if m := moved(parent); len(m) != 1 {
			t.Errorf("moved aside: %v; want the link", m)
		} else if fi, _ := os.Lstat(m[0]); fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is not the link", m[0])
		}
	})
	t.Run("a planted spool segment in the agent's directory: moved aside", func(t *testing.T) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "sessionaudit")
		must(os.MkdirAll(filepath.Join(dir, SpoolDir), 0o700))
		seg := filepath.Join(dir, SpoolDir, "00000001.seg")
		must(os.WriteFile(seg, []byte("x"), 0o600))
		must(os.Chown(seg, 65534, 65534))
		_, err := PrepareStateDir(dir)
		must(err)
		if m := moved(parent); len(m) != 1 {
			t.Errorf("moved aside: %v; want one", m)
		}
	})
	t.Run("another user's agent.conf is left to the config layer", func(t *testing.T) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "sessionaudit")
		must(os.Mkdir(dir, 0o700))
		conf := filepath.Join(dir, "agent.conf")
		must(os.WriteFile(conf, nil, 0o600))
		must(os.Chown(conf, 65534, 65534))
		_, err := PrepareStateDir(dir)
		must(err)
		if m := moved(parent); len(m) != 0 {
			t.Errorf("moved aside: %v; want the directory used", m)
		}
	})
}
