//go:build !windows

package uplink

import (
	"fmt"
	"os"
	"syscall"
)

// secureDir makes dir readable only by the agent's service account: it
// must be a directory (not a symbolic link) owned by the effective user,
// and gets mode 0700. A directory someone else created in advance is
// refused, since its owner could open it up again.
func secureDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (%v)", dir, fi.Mode().Type())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not by the agent's uid %d: remove it or give it to the agent", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm() != 0o700 {
		return os.Chmod(dir, 0o700)
	}
	return nil
}

// syncDir flushes dir's entries (renames, creations) to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
