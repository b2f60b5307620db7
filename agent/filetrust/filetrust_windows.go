//go:build windows

package filetrust

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// TrustedOwners are the owners the agent trusts besides its own account:
// SYSTEM and BUILTIN\Administrators.
var TrustedOwners = WindowsTrustedOwners

// TrustedOwnersText names the trusted owners for messages.
const TrustedOwnersText = "SYSTEM, Administrators or the agent's own account"

// Self returns the SID of the user of the process token (S-1-5-18 for the
// service), or "" if it cannot be read.
var Self = sync.OnceValue(func() string {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return ""
	}
	return u.User.Sid.String()
})

// Wine reports whether the process runs under Wine (ntdll exports
// wine_get_version), whose file security is emulated: see Facts.Emulated.
var Wine = sync.OnceValue(func() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
})

// Lstat returns the facts of the object at path, without following a
// reparse point. A path that does not exist gives Facts{Exists: false} and
// no error. An object whose owner cannot be read (access denied) exists,
// with an untrusted "unknown" owner.
func Lstat(path string) (Facts, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return Facts{}, err
	}
	h, err := windows.CreateFile(p, windows.READ_CONTROL|windows.FILE_READ_ATTRIBUTES,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil, windows.OPEN_EXISTING,
		windows.FILE_FLAG_OPEN_REPARSE_POINT|windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	switch {
	case errors.Is(err, windows.ERROR_FILE_NOT_FOUND), errors.Is(err, windows.ERROR_PATH_NOT_FOUND):
		return Facts{}, nil
	case errors.Is(err, windows.ERROR_ACCESS_DENIED):
		return Facts{Exists: true, Owner: "unknown (access denied to SYSTEM)", Emulated: Wine()}, nil
	case err != nil:
		return Facts{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer windows.CloseHandle(h)
	f, err := ofHandle(h)
	if err != nil {
		return Facts{}, &os.PathError{Op: "read security of", Path: path, Err: err}
	}
	return f, nil
}

// Stat returns the facts of the open file f (the object it is open on,
// whatever its name is now).
func Stat(f *os.File) (Facts, error) {
	facts, err := ofHandle(windows.Handle(f.Fd()))
	if err != nil {
		return Facts{}, &os.PathError{Op: "read security of", Path: f.Name(), Err: err}
	}
	return facts, nil
}

// ofHandle reads the facts of the object open as h (opened with
// READ_CONTROL and FILE_READ_ATTRIBUTES).
func ofHandle(h windows.Handle) (Facts, error) {
	var fi windows.ByHandleFileInformation
	if err := windows.GetFileInformationByHandle(h, &fi); err != nil {
		return Facts{}, err
	}
	f := Facts{
		Exists: true,
		Link:   fi.FileAttributes&windows.FILE_ATTRIBUTE_REPARSE_POINT != 0,
		Dir:    fi.FileAttributes&windows.FILE_ATTRIBUTE_DIRECTORY != 0,
		Links:  fi.NumberOfLinks,
		// Emulated: see Wine.
		Emulated: Wine(),
	}
	sd, err := windows.GetSecurityInfo(h, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return Facts{}, err
	}
	owner, _, err := sd.Owner()
	if err != nil || owner == nil {
		f.Owner = "unknown (no owner in the security descriptor)"
	} else {
		f.Owner = owner.String()
	}
	self := Self()
	f.OwnerTrusted = IsTrusted(f.Owner, self)
	control, _, err := sd.Control()
	if err != nil {
		return Facts{}, err
	}
	f.Protected = control&windows.SE_DACL_PROTECTED != 0
	dacl, _, err := sd.DACL()
	null := errors.Is(err, windows.ERROR_OBJECT_NOT_FOUND) || (err == nil && dacl == nil)
	if err != nil && !null {
		return Facts{}, err
	}
	var aces []ACE
	if !null {
		for i := range uint32(dacl.AceCount) {
			var a *windows.ACCESS_ALLOWED_ACE
			if err := windows.GetAce(dacl, i, &a); err != nil {
				return Facts{}, fmt.Errorf("ACE %d: %w", i, err)
			}
			e := ACE{Type: a.Header.AceType, Flags: a.Header.AceFlags, Mask: uint32(a.Mask)}
			// The SID follows the mask in the ACE types that AnalyzeDACL
			// reads it from (allowed, denied, callback); object ACEs put
			// a GUID or two before it and keep SID "".
			if e.Type == aceAllowed || e.Type == aceAllowedCallback || e.Type == 0x1 || e.Type == 0xA {
				e.SID = (*windows.SID)(unsafe.Pointer(&a.SidStart)).String()
			}
			aces = append(aces, e)
		}
	}
	f.Others, f.OthersWrite = AnalyzeDACL(f.Owner, null, aces, func(sid string) bool { return IsTrusted(sid, self) })
	return f, nil
}

// RestrictedSDDL is the security descriptor of the agent's state directory:
// owned by BUILTIN\Administrators (O:BA; an owner can always rewrite the
// DACL, so a directory a local user created must not stay theirs), and a
// protected DACL (P: the entries inherited from %ProgramData%, which let
// Users read and create, are cut off) with full control for SYSTEM (SY)
// and BUILTIN\Administrators (BA) only, inherited by files and
// subdirectories (OICI).
const RestrictedSDDL = "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

// MkdirRestricted creates the directory path with RestrictedSDDL from the
// start (CreateDirectory with SECURITY_ATTRIBUTES): there is no moment at
// which others may use it. It fails with an error matching fs.ErrExist if
// something is at path.
func MkdirRestricted(path string) error {
	sd, err := windows.SecurityDescriptorFromString(RestrictedSDDL)
	if err != nil {
		return err
	}
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return err
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(unsafe.Sizeof(*sa))
	if err := windows.CreateDirectory(p, sa); err != nil {
		return &os.PathError{Op: "mkdir", Path: path, Err: err}
	}
	return nil
}

// Restrict sets the owner and DACL of path to RestrictedSDDL. Inheritable
// entries propagate to what is in it (SetNamedSecurityInfo does that); the
// owners and explicit entries of what is in it stay. Setting the owner
// needs SYSTEM or an administrator.
func Restrict(path string) error {
	sd, err := windows.SecurityDescriptorFromString(RestrictedSDDL)
	if err != nil {
		return err
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	return windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION,
		owner, nil, dacl, nil)
}

// Rename renames from to to, both in the same directory. It renames the
// object at from itself, never what a reparse point there points to: it
// opens from with FILE_FLAG_OPEN_REPARSE_POINT (as Lstat looks at it) and
// renames that handle (NtSetInformationFile, FileRenameInformation: the new
// name relative to a handle of the parent directory, no replacing), so the
// object renamed is the one opened. It fails if to exists.
func Rename(from, to string) error {
	if !strings.EqualFold(filepath.Dir(from), filepath.Dir(to)) {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: errors.New("not in the same directory")}
	}
	p, err := windows.UTF16PtrFromString(from)
	if err != nil {
		return err
	}
	name, err := windows.UTF16FromString(filepath.Base(to))
	if err != nil {
		return err
	}
	h, err := windows.CreateFile(p, windows.DELETE|windows.READ_CONTROL|windows.FILE_READ_ATTRIBUTES,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil, windows.OPEN_EXISTING,
		windows.FILE_FLAG_OPEN_REPARSE_POINT|windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	defer windows.CloseHandle(h)
	// The new name is relative to the parent directory, opened here.
	pp, err := windows.UTF16PtrFromString(filepath.Dir(from))
	if err != nil {
		return err
	}
	parent, err := windows.CreateFile(pp, windows.FILE_TRAVERSE|windows.SYNCHRONIZE,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil, windows.OPEN_EXISTING,
		windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: fmt.Errorf("open the parent directory: %w", err)}
	}
	defer windows.CloseHandle(parent)
	nameBytes := (len(name) - 1) * 2 // without the terminating NUL
	buf := make([]byte, int(unsafe.Offsetof(fileRenameInformation{}.FileName))+nameBytes+2)
	info := (*fileRenameInformation)(unsafe.Pointer(&buf[0]))
	info.RootDirectory = parent
	info.FileNameLength = uint32(nameBytes)
	copy(unsafe.Slice(&info.FileName[0], len(name)), name)
	var iosb windows.IO_STATUS_BLOCK
	if err := windows.NtSetInformationFile(h, &iosb, &buf[0], uint32(len(buf)), windows.FileRenameInformation); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// fileRenameInformation is FILE_RENAME_INFORMATION; FileName runs past the
// struct.
type fileRenameInformation struct {
	ReplaceIfExists uint32
	RootDirectory   windows.Handle
	FileNameLength  uint32
	FileName        [1]uint16
}
