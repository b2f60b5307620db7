//go:build !windows

package filetrust

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// TrustedOwners are the owners the agent trusts besides its own account:
// root.
var TrustedOwners = []string{"uid 0"}

// TrustedOwnersText names the trusted owners for messages.
const TrustedOwnersText = "root or the agent's own user"

// Self returns "uid N" for the effective uid of the process.
func Self() string { return uidName(os.Geteuid()) }

func uidName(uid int) string { return "uid " + strconv.Itoa(uid) }

// Lstat returns the facts of the object at path, without following a
// symbolic link. A path that does not exist gives Facts{Exists: false}
// and no error.
func Lstat(path string) (Facts, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Facts{}, nil
	}
	if err != nil {
		return Facts{}, err
	}
	return ofInfo(fi), nil
}

// Stat returns the facts of the open file f.
func Stat(f *os.File) (Facts, error) {
	fi, err := f.Stat()
	if err != nil {
		return Facts{}, err
	}
	return ofInfo(fi), nil
}

// ofInfo turns a FileInfo into Facts. Group and other permission bits are
// the "others": any bit is access, a write bit is a write right.
func ofInfo(fi fs.FileInfo) Facts {
	f := Facts{
		Exists:    true,
		Link:      fi.Mode()&fs.ModeSymlink != 0,
		Dir:       fi.IsDir(),
		Owner:     "unknown",
		Protected: true,
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		f.Owner = uidName(int(st.Uid))
		f.Links = uint32(st.Nlink)
	}
	f.OwnerTrusted = IsTrusted(f.Owner, Self())
	if f.Link {
		// A link's own mode bits mean nothing.
		return f
	}
	perm := fi.Mode().Perm()
	if perm&0o070 != 0 {
		f.Others = append(f.Others, "group")
	}
	if perm&0o007 != 0 {
		f.Others = append(f.Others, "others")
	}
	if perm&0o020 != 0 {
		f.OthersWrite = append(f.OthersWrite, "group")
	}
	if perm&0o002 != 0 {
		f.OthersWrite = append(f.OthersWrite, "others")
	}
	return f
}

// MkdirRestricted creates the directory path with mode 0700. It fails with
// an error matching fs.ErrExist if something is at path.
func MkdirRestricted(path string) error {
	if err := os.Mkdir(path, 0o700); err != nil {
		return err
	}
	return os.Chmod(path, 0o700) // whatever the umask
}

// Restrict gives path mode 0700 (its owner cannot be changed without
// root; the callers only restrict a directory whose owner they trust).
func Restrict(path string) error { return os.Chmod(path, 0o700) }

// Rename renames from to to; a symbolic link is renamed itself. On Linux
// an existing empty directory at to is replaced: the callers choose a
// name nobody can guess.
func Rename(from, to string) error { return os.Rename(from, to) }
