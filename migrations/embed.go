// Package migrations holds the PostgreSQL schema of sessionaudit as plain,
// numbered SQL files in tern's format (NNN_name.sql), embedded in the binary.
//
// The files are applied in order by store.Migrate, forward only: a file that
// has been released is never edited; a change to the schema is a new file.
// Each file runs in one transaction. Files are Go templates for tern, so they
// must not contain a double opening brace.
//
// schema.sql, beside them, is not a migration and is not embedded: it is the
// schema the migrations produce, dumped into one file for reading by `make
// schema`, and checked in CI by `make schema-check`.
package migrations

import "embed"

// FS holds every migration file, named NNN_description.sql.
//
//go:embed [0-9]*_*.sql
var FS embed.FS
