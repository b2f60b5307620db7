// Package limits holds the bounds of the sessionaudit protocol that more
// than one component enforces: the collector refuses a report that breaks
// one (naming the proto field), the store relies on them, and the CLI's help
// and the HTTP API's parameters quote them. Each is defined here once.
package limits

import "time"

const (
	// MaxKeyBytes is the longest identifier a report may carry: a logon
	// session's logon_id (in logon_sessions, logon_sessions_upserted and
	// logon_sessions_ended), a machine GUID, an agent id. A longer one is
	// refused, never truncated, since truncating a key could merge two
	// sessions.
	MaxKeyBytes = 128

	// MaxStringBytes is the longest free-text value the store keeps (a
	// caption, an account name, a host name...); a longer one is stored
	// truncated, with a note saying so. The collector refuses strings above
	// its own configurable bound (server.Config.MaxStringBytes, default
	// 4096). A server session's key (computer_name, user_name) is the
	// exception: it is refused above MaxStringBytes, never truncated, since
	// truncating it could merge two sessions.
	MaxStringBytes = 1024

	// DefaultPageSize is the page size of a query that asks for 0.
	DefaultPageSize = 100
	// MaxPageSize is the largest page a query may ask for.
	MaxPageSize = 1000

	// MaxQuerySpanDays is the longest time range a query may cover, in days:
	// the range of every timeline and listing query (start_time..end_time
	// in the protocol, --since..--until in the CLI, since..until in HTTP).
	MaxQuerySpanDays = 400
	// MaxQuerySpan is MaxQuerySpanDays as a duration.
	MaxQuerySpan = MaxQuerySpanDays * 24 * time.Hour

	// BootJitter is how far two values of a host's last boot time
	// (Win32_OperatingSystem.LastBootUpTime, Host.last_boot_time) may differ
	// and still be the same boot. Windows computes LastBootUpTime as the
	// clock minus the uptime, so it moves when the clock is adjusted (by NTP,
	// by a hypervisor's time sync, by hand) and wobbles by microseconds from
	// one query to the next on virtual machines. The agent keeps reporting
	// the first value it saw while later ones stay within BootJitter of it
	// (no full snapshot for a wobble), and the store takes a value beyond it
	// for a new boot (docs/design/0002-storage.md, "New boot").
	BootJitter = 5 * time.Second

	// MaxCollectionErrors is the most collection errors one report may
	// carry; the collector refuses more. An agent with more sends
	// MaxCollectionErrors-1 of them and one summary error.
	MaxCollectionErrors = 100
	// MaxPartSessions is the most sessions an agent puts in one report
	// (one part of a snapshot split in parts, Snapshot.part): half the
	// collector's default per-report limit (20,000).
	MaxPartSessions = 10000
	// MaxPartBytes is about the most encoded bytes of sessions an agent puts
	// in one report: the agent's batch target (1 MiB), a quarter of the
	// collector's default message limit (4 MiB).
	MaxPartBytes = 1 << 20
)
