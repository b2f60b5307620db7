package run

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPrepareStateDirWindows: PrepareStateDir with the Windows calls, on
// Windows or under Wine (go test -c, then wine the .exe): made restricted,
// used as it is the next time, moved aside when a file in it has a second
// hard link.
func TestPrepareStateDirWindows(t *testing.T) {
	// Not t.TempDir: Wine cannot do the removal Go's os.RemoveAll asks.
	parent, err := os.MkdirTemp("", "statedir")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	dir := filepath.Join(parent, "sessionaudit")
	r, err := PrepareStateDir(dir)
	if err != nil || len(r.Steps) != 2 || r.Steps[0].Decision.Action != StateDirCreate || r.Steps[1].Decision.Action != StateDirUse {
		t.Fatalf("first start: %+v, %v; want create, use", r, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, SpoolDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, SpoolDir, "1.seg"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err = PrepareStateDir(dir)
	if err != nil || len(r.Steps) != 1 || r.Steps[0].Decision.Action != StateDirUse {
		t.Fatalf("second start: %+v, %v; want use", r, err)
	}
	outside := filepath.Join(parent, "outside")
	if err := os.WriteFile(outside, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, filepath.Join(dir, SpoolDir, "2.seg")); err != nil {
		t.Fatal(err)
	}
	r, err = PrepareStateDir(dir)
	if err != nil || len(r.Steps) < 2 || r.Steps[0].Decision.Action != StateDirMoveAside {
		t.Fatalf("a hard link planted: %+v, %v; want it moved aside", r, err)
	}
	if _, err := os.Stat(filepath.Join(r.Steps[0].MovedTo, SpoolDir, "1.seg")); err != nil {
		t.Errorf("the directory moved aside lost its content: %v", err)
	}
	if es, err := os.ReadDir(dir); err != nil || len(es) != 0 {
		t.Errorf("the new state directory: %v, %v; want it empty", es, err)
	}
}
