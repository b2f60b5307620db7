//go:build !windows

package run

// DefaultStateDir returns /var/lib/sessionaudit.
func DefaultStateDir() string { return "/var/lib/sessionaudit" }

// restrictedTo says, in log lines, to whom the state directory is
// restricted.
const restrictedTo = "the agent's user (mode 0700)"
