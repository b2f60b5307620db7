package run

import (
	"os"
	"path/filepath"
)

// DefaultStateDir returns %ProgramData%\sessionaudit (C:\ProgramData\sessionaudit
// when the variable is not set).
func DefaultStateDir() string {
	pd := os.Getenv("ProgramData")
	if pd == "" {
		pd = `C:\ProgramData`
	}
	return filepath.Join(pd, "sessionaudit")
}

// restrictedTo says, in log lines, to whom the state directory is
// restricted.
const restrictedTo = "SYSTEM and Administrators (owner Administrators, protected DACL)"
