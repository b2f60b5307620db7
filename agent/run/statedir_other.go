//go:build !windows

package run

// DefaultStateDir returns /var/lib/sessionaudit.
func DefaultStateDir() string { return "/var/lib/sessionaudit" }
