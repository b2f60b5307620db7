// Package server is the sessionaudit collector: it enrolls agents, takes
// their batches of reports over gRPC, validates them and hands them to the
// store, and serves analysts' queries.
//
// This file set holds the conversion of the protocol's messages into the
// store's plain Go values; every value that crosses it is checked there, and
// every refusal names the report and the field.
package server
