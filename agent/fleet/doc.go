// Package fleet runs many simulated agents in one process against a real
// collector, and records the ground truth of what they reported so that a
// test (or the demo) can compare the store with it interval by interval.
//
// Each Agent is what sessionaudit-agent is, minus WMI and the disk:
//
//	simulate.Source (manual clock) → change.Tracker → Queue → uplink.Pump → collector
//
// It has its own enrolled identity: its own key and certificate, obtained
// by uplink.Client.EnsureIdentity with the enrollment secret and kept in its
// own state directory, and its own long-lived mutually authenticated TLS
// connection.
//
// # Decision: an in-memory queue instead of the spool
//
// The agent's spool (agent/spool) flushes every append to disk, and a few
// thousand spools in one process would measure the disk of the machine
// running the simulator, not the collector. A simulated agent therefore
// keeps its reports in a Queue (memory, the uplink.Queue contract:
// Peek/Ack/Dropped), which loses them when the process dies; the spool's
// crash safety is tested in its own package. Everything after the queue —
// the uplink's batching, acknowledgement, backoff, resync handling — is the
// real code.
//
// # Time
//
// Each agent's simulated host runs on its own clock.Manual, advanced by
// Fleet.Advance in poll steps, so that a day of history is generated in
// seconds; the uplink (certificate validity, batch sent_at) uses the
// system clock. The history must therefore end before the collector's now
// (reports more than an hour ahead of it are stored at corrected times,
// which the ground truth would not match).
//
// # Ground truth
//
// Every report an agent queues is also applied to a change.State — what a
// collector holds after applying it — and the sessions of that state,
// report after report, give each session's interval: its start (the logon
// session's StartTime, or taken_at − ActiveTime at first sight for a server
// session), the last report that had it, and the first that did not
// (HostTruth). Compare asks a Reader who was on each host at the moment
// each interval was first seen, and reports every interval that is
// missing, extra, starts elsewhere, or ends outside the bounds the reports
// imply. The Reader here is QueryReader: the collector's QueryService over
// gRPC, as an analyst asks it.
//
// # A leaf of the module
//
// Like the rest of agent/, this package imports nothing from server/ or
// store/: it talks to a collector process over gRPC only. What runs a
// collector or a store in the same process is on their side: the
// end-to-end tests (server/e2e, which also read the store directly) and
// the collector benchmarks (server/cmd/collectorbench).
package fleet
