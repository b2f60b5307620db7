//go:build windows

package uplink

import (
	"golang.org/x/sys/windows"
)

// stateDirSDDL is the state directory's security descriptor: a protected
// DACL (P: inherited entries from ProgramData are cut off, so Users lose
// the read access ProgramData grants them) with full control for SYSTEM
// (SY, S-1-5-18) and BUILTIN\Administrators (BA, S-1-5-32-544) only,
// inherited by files and subdirectories (OICI).
const stateDirSDDL = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

// secureDir sets dir's DACL to stateDirSDDL. Files created in dir inherit
// it; files already there get it propagated by SetNamedSecurityInfo.
func secureDir(dir string) error {
	sd, err := windows.SecurityDescriptorFromString(stateDirSDDL)
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	return windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION,
		nil, nil, dacl, nil)
}

// syncDir does nothing on Windows: NTFS journals its metadata, and a
// directory handle cannot be flushed.
func syncDir(string) error { return nil }
