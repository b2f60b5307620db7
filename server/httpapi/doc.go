// Package httpapi is the collector's HTTP JSON API: the QueryService's
// questions (who was on a host, a host's or an account's sessions over a
// range, server sessions, open sessions, hosts, exports) as GET routes
// under /api/v1/, for SIEMs, notebooks, Grafana and scripts.
//
// It is a thin layer over an in-process pb.QueryServiceServer
// ((*server.Server).Queries): each request's bearer token goes into gRPC
// incoming metadata and its client address into a grpc peer.Peer, so the
// collector authenticates, bounds, logs and counts an HTTP call exactly as
// the same call over gRPC. This package validates the query string (every
// parameter known, single-valued unless documented as repeatable, of
// bounded length, without control characters; times through
// rows.ParseTime; ranges bounded), maps gRPC status codes to HTTP statuses
// and a JSON error body that names the parameter, and writes the rows of
// server/rows as JSON, CSV (formula-neutralized) or JSON lines.
//
// The routes and their parameters are one table (Routes), which the handler
// serves from and which a test compares with docs/openapi.json, the API's
// contract. docs/http-api.md is the reference for people.
//
// # Page tokens
//
// A page token of this API wraps the QueryService's token with the moments
// that relative times ("-2h", "now", a missing until) resolved to on the
// first page, and a digest of the other parameters: the next page answers
// the same question even though "now" has moved, and a token passed with
// other parameters is refused.
//
// # Export
//
// /api/v1/export streams every row of a range, all pages, as JSON lines or
// CSV, up to Options.MaxExportRows rows. When the limit is reached or a
// later page fails, the response has already started with 200, so the
// connection is cut (no final chunk): a client sees a truncated transfer,
// never a short export that looks complete. The reason is logged.
package httpapi
