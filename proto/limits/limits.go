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
)
