// Package change turns successive complete snapshots of a host into the
// numbered reports of the protocol (Snapshot, Delta, Heartbeat), so that
// the agent sends only what changed and the collector can rebuild every
// snapshot from the reports.
//
// Tracker decides what counts as a change (server sessions' IdleTime,
// ResourcesOpened and the growth of ActiveTime do not; a moved start does)
// and what a failed class means (no "ended" entries for it). State applies
// reports the way the collector does; the tests use it to check that the
// reports reproduce each snapshot, and the collector may use it as the
// reference of the protocol's semantics.
package change
