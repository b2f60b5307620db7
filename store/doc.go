// Package store keeps the history of Windows logon sessions and SMB server
// sessions in PostgreSQL, as intervals, and answers the analysts' questions
// about it.
//
// The store takes plain Go values (Report, LogonSession, ServerSession): the
// collector converts the wire protocol into them. Writes go through
// Store.Ingest, one transaction per call, serialized per host by a lock on the
// host's row. Reads go through the query methods (WhoWasOn, AccountTimeline,
// ServerSessions, OpenSessions, Hosts), each bounded, ordered and paginated.
// The schema lives in the top-level migrations package and is applied by
// Migrate. docs/design/0002-storage.md explains the choices.
package store
