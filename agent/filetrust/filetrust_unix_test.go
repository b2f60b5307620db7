//go:build !windows

package filetrust

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestLstatUnix: the facts of the objects the agent meets, as Lstat reads
// them on Linux: a link is never followed, ownership and mode bits.
func TestLstatUnix(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	locked := filepath.Join(dir, "locked")
	must(os.Mkdir(locked, 0o700))
	open := filepath.Join(dir, "open")
	must(os.Mkdir(open, 0o700))
	must(os.Chmod(open, 0o777))
	file := filepath.Join(dir, "file")
	must(os.WriteFile(file, nil, 0o600))
	must(os.Chmod(file, 0o664))
	link := filepath.Join(dir, "link")
	must(os.Symlink(locked, link))
	hard := filepath.Join(dir, "hard")
	must(os.Link(file, hard))

	f, err := Lstat(filepath.Join(dir, "absent"))
	if err != nil || f.Exists {
		t.Errorf("absent: %v, %v; want Exists false, no error", f, err)
	}
	f, err = Lstat(locked)
	if err != nil || !f.Exists || !f.Dir || f.Link || !f.OwnerTrusted || f.Owner != Self() || len(f.Others) != 0 {
		t.Errorf("0700 directory: %v, %v", f, err)
	}
	f, _ = Lstat(open)
	if !slices.Equal(f.Others, []string{"group", "others"}) || !slices.Equal(f.OthersWrite, []string{"group", "others"}) {
		t.Errorf("0777 directory: %v", f)
	}
	f, _ = Lstat(file)
	if f.Dir || f.Links != 2 || !slices.Equal(f.Others, []string{"group", "others"}) || !slices.Equal(f.OthersWrite, []string{"group"}) {
		t.Errorf("0664 file with a second link: %v", f)
	}
	f, _ = Lstat(link)
	if !f.Link || f.Dir {
		t.Errorf("symbolic link to a directory: %v; want the link's own facts", f)
	}
	fh, err := os.Open(file)
	must(err)
	defer fh.Close()
	f, err = Stat(fh)
	if err != nil || !f.Exists || f.Links != 2 || !f.OwnerTrusted {
		t.Errorf("Stat of the open file: %v, %v", f, err)
	}

	if os.Geteuid() != 0 {
		t.Log("not root: the case of a file owned by another user is not tested")
		return
	}
	must(os.Lchown(link, 65534, 65534))
	must(os.Chown(open, 65534, 65534))
	for _, p := range []string{link, open} {
		f, _ = Lstat(p)
		if f.OwnerTrusted || f.Owner != "uid 65534" {
			t.Errorf("%s owned by uid 65534: %v; want an untrusted owner", filepath.Base(p), f)
		}
	}
}
