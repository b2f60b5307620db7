// Package run is the agent's main loop as a library: the Windows service,
// the Linux foreground agent and the fleet simulator all call Run.
//
// Every poll interval Run takes a snapshot from its Source, turns it into a
// report with a change.Tracker (Snapshot, Delta or Heartbeat), appends the
// report to the spool and wakes the uplink's Pump, which delivers the
// spool to the collector in the background. Collection never waits for
// delivery: while the collector is unreachable, or before the agent is
// enrolled, reports accumulate in the spool (bounded by SpoolMaxMB; the
// oldest are dropped beyond, counted, and followed by a Snapshot).
//
// The uplink starts after the first successful snapshot, which gives the
// machine GUID that enrollment needs. The Pump enrolls (EnsureIdentity,
// with backoff) and renews (MaybeRenew) before each delivery attempt; as
// every poll wakes it, renewal is checked at least once per poll interval.
//
// # State directory
//
// Options.StateDir holds everything the agent keeps
// (%ProgramData%\sessionaudit on Windows, /var/lib/sessionaudit on Linux;
// DefaultStateDir):
//
//	agent.key, agent.crt, agent.json   the identity (package uplink)
//	spool\                             the reports not yet acknowledged (package spool)
//
// The agent's command calls PrepareStateDir before it opens anything in
// the directory (statedir.go): a directory, or an entry in it, that
// someone other than SYSTEM, Administrators or the agent made is moved
// aside, a link is never followed, and the directory is restricted to
// SYSTEM and Administrators.
//
// The tracker's first sequence after a start is the spool's NextSequence,
// so sequences keep increasing across restarts and the first report after
// a start is a Snapshot.
//
// # Settings
//
// Settings come from a config.Watcher; Run drives the Watcher and applies
// a change without a restart:
//
//   - PollIntervalSeconds: the next poll is scheduled with the new interval.
//   - ResyncIntervalMinutes: the tracker's interval (change.Tracker.SetResyncInterval).
//   - LogLevel: Options.LogLevel, the level of the caller's handler.
//   - CollectLogonSessions, CollectServerSessions: a class turned off is
//     removed from each snapshot and reported as DISABLED (the collector
//     then keeps its sessions as they were, neither ended nor updated).
//     The WMI source reads them, and QueryTimeoutSeconds, from the
//     Watcher at every snapshot (wmi.Options.Settings), so that a class
//     turned on again is queried again.
//   - CollectorAddress, CACertificate, CAPin, EnrollmentSecret: the uplink
//     client is closed and made again with the new values; reports stay
//     spooled meanwhile.
//   - SpoolMaxMB: takes effect at the next start (logged).
//
// Each change is logged with the layer every changed setting came from
// (config.Settings.Describe); the enrollment secret is always redacted.
package run
