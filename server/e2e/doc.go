// Package e2e holds the end-to-end tests of the agent's side against a real
// collector: the agent's run loop (agent/run), its uplink with the real
// spool (agent/uplink) and the fleet simulator (agent/fleet), each against
// collectors served on loopback (server/servertest: server.New, real TLS
// from server/pki) over a real PostgreSQL (store/storetest:
// TEST_DATABASE_URL or a container; see docs/testing.md).
//
// They live here, at the top of the import graph, so that agent/ stays a
// leaf: no agent package, and no agent test, imports server/ or store/,
// and the agent's own tests need no database. The package has no code of
// its own; everything is in its tests.
package e2e
