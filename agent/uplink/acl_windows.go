//go:build windows

package uplink

import "github.com/sessionaudit/sessionaudit/agent/filetrust"

// secureDir sets dir's owner and DACL to filetrust.RestrictedSDDL: owned by
// BUILTIN\Administrators, a protected DACL with full control for SYSTEM and
// BUILTIN\Administrators only, inherited by files and subdirectories. Files
// the agent creates in dir inherit the DACL; inheritable entries also
// propagate to files already there. Setting the owner needs the agent to
// run as SYSTEM or an administrator, as the service does. The agent's
// command has already checked the directory at its start
// (run.PrepareStateDir); this keeps the identity's directory restricted
// for other callers (the fleet simulator) too.
func secureDir(dir string) error { return filetrust.Restrict(dir) }

// syncDir does nothing on Windows: NTFS journals its metadata, and a
// directory handle cannot be flushed.
func syncDir(string) error { return nil }
