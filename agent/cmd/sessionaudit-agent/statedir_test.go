package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCheckStateDir: check-state-dir -n only says what it would do; without
// -n it makes the directory usable and says so, or refuses with exit 1.
func TestCheckStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sessionaudit")
	var out, errOut bytes.Buffer
	if code := realMain([]string{"check-state-dir", "-n", "-state-dir", dir}, &out, &errOut); code != exitOK ||
		!strings.Contains(out.String(), "decision: create: it does not exist") || !strings.Contains(out.String(), "nothing changed") {
		t.Errorf("-n: exit %d, %q %q", code, out.String(), errOut.String())
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("-n made the directory: %v", err)
	}
	out.Reset()
	if code := realMain([]string{"check-state-dir", "-state-dir", dir}, &out, &errOut); code != exitOK ||
		!strings.Contains(out.String(), "decision: use:") || !strings.HasSuffix(out.String(), "result: usable\n") {
		t.Errorf("check: exit %d, %q %q", code, out.String(), errOut.String())
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		t.Errorf("after check-state-dir: %v, %v", fi, err)
	}
	if runtime.GOOS == "windows" {
		return
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := realMain([]string{"check-state-dir", "-state-dir", link}, &out, &errOut); code != exitError ||
		!strings.Contains(out.String(), "decision: refuse") || !strings.Contains(errOut.String(), "never follows a link") {
		t.Errorf("a link: exit %d, %q %q; want exit %d and a refusal", code, out.String(), errOut.String(), exitError)
	}
}
