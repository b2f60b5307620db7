//go:build !windows

package uplink

import (
	"fmt"
	"os"
)

// secureDir makes dir readable only by its owner, the agent's service
// account: mode 0700. It refuses a path that is not a directory (a
// symbolic link included).
func secureDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (%v)", dir, fi.Mode().Type())
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
