//go:build !windows

package config

// DefaultFilePath returns /etc/sessionaudit/agent.conf.
func DefaultFilePath() string { return "/etc/sessionaudit/agent.conf" }

// NewPolicyLayer returns a policy layer without values: there is no Group
// Policy outside Windows.
func NewPolicyLayer() *PolicyLayer { return PolicyLayerFromValues(nil) }
