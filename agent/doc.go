// Package agent is the root of the sessionaudit agent: the Windows service
// that reads logon sessions (Win32_LogonSession, Win32_LoggedOnUser) and
// server sessions (Win32_ServerSession) through WMI and reports them to the
// collector.
//
// The data path reads in one direction:
//
//	WMI rows (source, Windows-only and thin)
//	  → Snapshot (source.BuildSnapshot: parsing via cim, joining accounts)
//	  → Report   (change.Tracker: Snapshot, Delta or Heartbeat, numbered)
//	  → spool (durable, on disk) → uplink (gRPC to the collector)
//
// Sub-packages:
//   - cim: CIM datetime and WMI object path parsers.
//   - clock: the injected clock used by everything that reads the time.
//   - source: the Source interface, WMI row types and rows → proto.
//   - simulate: a deterministic simulated Source for one host.
//   - fixture: a Source that replays recorded snapshots (used under Wine).
//   - change: change detection, from successive snapshots to reports.
//   - wmi: the WMI Source (Windows; one long-lived worker, deadlines).
//   - config: settings from Group Policy, a file and flags, with live reload.
//   - filetrust: who owns a file or directory and who else may use it, read
//     without following links (the state directory's and config file's
//     checks).
//   - spool: the crash-safe on-disk queue of reports awaiting acknowledgement.
//   - uplink: enrollment, renewal and delivery to the collector.
//   - run: the main loop (source → tracker → spool → uplink, live
//     settings), shared by the agent and the fleet simulator.
//   - service: the Windows service (install, uninstall, SCM, event log);
//     a foreground process elsewhere.
//   - cmd/sessionaudit-agent: the agent's command (docs/agent.md); its
//     version is set per binary (-ldflags "-X main.version=...").
package agent
