//go:build windows

package uplink

import (
	"golang.org/x/sys/windows"
)

// stateDirSDDL is the state directory's security descriptor: owned by
// BUILTIN\Administrators (O:BA; an owner can always rewrite the DACL, so a
// directory a local user created in advance under ProgramData must not
// stay theirs), and a protected DACL (P: the entries inherited from
// ProgramData, which let Users read, are cut off) with full control for
// SYSTEM (SY, S-1-5-18) and BUILTIN\Administrators (BA, S-1-5-32-544) only,
// inherited by files and subdirectories (OICI).
const stateDirSDDL = "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

// secureDir sets dir's owner and DACL to stateDirSDDL. Files the agent
// creates in dir inherit the DACL; inheritable entries also propagate to
// files already there. Setting the owner needs the agent to run as SYSTEM
// or an administrator, as the service does.
func secureDir(dir string) error {
	sd, err := windows.SecurityDescriptorFromString(stateDirSDDL)
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
	return windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION,
		owner, nil, dacl, nil)
}

// syncDir does nothing on Windows: NTFS journals its metadata, and a
// directory handle cannot be flushed.
func syncDir(string) error { return nil }
