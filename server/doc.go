// Package server is the sessionaudit collector: it enrolls agents, takes
// their batches of reports over gRPC, validates them and hands them to the
// store, and serves analysts' queries.
//
// Build a Config (CA, server certificate, Trust, limits; the zero value of
// each limit is its documented default), call New with a migrated
// store.Store, Serve on a listener, mount MetricsHandler on a separate HTTP
// port, and call Shutdown to stop gracefully. docs/design/0004-collector.md
// describes the behaviour: authentication per call, validation, limits and
// pushback, status codes, keepalive and metrics.
//
// Identity comes only from verified client certificates (server/pki);
// ReportFromProto converts the protocol's messages into the store's plain
// Go values, checking every value that crosses it, and every refusal names
// the report and the field.
package server
