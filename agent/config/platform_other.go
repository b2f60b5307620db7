//go:build !windows

package config

// DefaultFilePath returns /etc/sessionaudit/agent.conf.
func DefaultFilePath() string { return "/etc/sessionaudit/agent.conf" }

// NewPolicyLayer returns a policy layer without values: there is no Group
// Policy outside Windows.
func NewPolicyLayer() *RegistryLayer { return PolicyLayerFromValues(nil) }

// NewInstallerLayer returns an installer settings layer without values:
// there is no MSI outside Windows.
func NewInstallerLayer() *RegistryLayer { return InstallerLayerFromValues(nil) }
