// Package config holds the agent's settings and where they come from.
//
// Each setting is read from layers, highest first:
//
//  1. Group Policy: values under HKLM\SOFTWARE\Policies\sessionaudit\Agent
//     (PolicyKey), one registry value per setting, named as in Definitions
//     (NewPolicyLayer). The ADMX template writes these values.
//  2. The local config file (FileLayer), by default
//     %ProgramData%\sessionaudit\agent.conf on Windows and
//     /etc/sessionaudit/agent.conf elsewhere (DefaultFilePath).
//  3. The installer's settings: values under HKLM\SOFTWARE\sessionaudit\Agent
//     (InstallerKey, NewInstallerLayer), named as under PolicyKey, which the
//     MSI writes from its msiexec properties (deploy/windows).
//  4. Command-line flags (FlagLayer), which "sessionaudit-agent install"
//     registers on the service's command line.
//  5. The default of the setting.
//
// Load merges the layers per setting: a setting takes its value from the
// highest layer that has a valid one. A value that is not valid is reported
// as a Warning naming the setting, the layer and the value, and the next
// layer's value (or the default) is used, so that a mistyped policy never
// stops the agent. An empty value counts as not set. Settings records which
// layer each value came from (Settings.Origin), for the log.
//
// Definitions is the one table of settings (name, registry type, default,
// bounds, help); the ADMX template and the documentation are checked
// against it.
//
// # Config file format
//
// UTF-8 text (a byte-order mark is allowed), one setting per line:
//
//	# Lines starting with # or ; are comments; blank lines are ignored.
//	CollectorAddress = collector.contoso.com:8443
//	PollIntervalSeconds = 60
//	CollectServerSessions = 0
//
// Names are those of the registry values, without regard to case. The value
// is the rest of the line after the first "=", without surrounding spaces,
// taken literally (no quotes, no escapes, no trailing comments). A name set
// twice takes the later value, with a warning. Numbers are decimal; 0/1
// switches also accept false/true.
//
// # Secrets
//
// Everything under HKLM\SOFTWARE\Policies can be read by every local user,
// so can HKLM\SOFTWARE\sessionaudit\Agent as the MSI creates it, and
// command lines can be read by every local user too: an enrollment secret
// set by Group Policy, the MSI or a flag is not a secret from the host's own
// users. Use short-lived, use-limited enrollment secrets (the collector can
// issue them per deployment wave) and revoke them once the hosts are
// enrolled; or put the secret in the config file and restrict the file's
// ACL to SYSTEM and Administrators. The secret's value is never printed:
// Secret formats and logs as "[redacted]".
//
// # Reload
//
// A Watcher reads the layers again on every tick (DefaultReloadInterval)
// and delivers the settings when they, or their warnings, changed: a Group
// Policy refresh takes effect without restarting the agent.
package config
