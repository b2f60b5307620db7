package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/sessionaudit/sessionaudit/migrations"
)

// VersionTable is the table where tern records the schema version.
const VersionTable = "public.schema_version"

// migrateLock is the pg_advisory_lock key held while migrating ("sessaudm").
const migrateLock int64 = 0x7365737361756d

// Migrate applies every pending migration of the migrations package to the
// database at databaseURL and records the version. Several processes may call
// it at once: an advisory lock makes them take turns, and the later ones find
// nothing to do. It only moves forward; a database newer than this binary is
// an error.
func Migrate(ctx context.Context, databaseURL string) error {
	// The URL may carry the pool's settings (pool_max_conns=…), which
	// PostgreSQL refuses as connection parameters: pgxpool's parser takes
	// them out.
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return fmt.Errorf("store: migrate: connect: %w", err)
	}
	defer conn.Close(context.Background())
	return MigrateConn(ctx, conn)
}

// MigrateConn is Migrate on an open connection.
func MigrateConn(ctx context.Context, conn *pgx.Conn) (err error) {
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrateLock); err != nil {
		return fmt.Errorf("store: migrate: take advisory lock: %w", err)
	}
	defer func() {
		if _, uerr := conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", migrateLock); uerr != nil && err == nil {
			err = fmt.Errorf("store: migrate: release advisory lock: %w", uerr)
		}
	}()
	m, err := migrate.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		return fmt.Errorf("store: migrate: prepare version table %s: %w", VersionTable, err)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		return fmt.Errorf("store: migrate: load migrations: %w", err)
	}
	current, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: read version: %w", err)
	}
	known := int32(len(m.Migrations))
	if current > known {
		return fmt.Errorf("store: migrate: database is at version %d, this build knows %d: refusing to go back", current, known)
	}
	if err := m.Migrate(ctx); err != nil {
		var pgErr migrate.MigrationPgError
		if errors.As(err, &pgErr) {
			return fmt.Errorf("store: migrate: %s: %w", pgErr.MigrationName, err)
		}
		return fmt.Errorf("store: migrate from version %d: %w", current, err)
	}
	return nil
}

// SchemaVersion returns the version recorded in the database.
func (s *Store) SchemaVersion(ctx context.Context) (int32, error) {
	var v int32
	if err := s.pool.QueryRow(ctx, "SELECT version FROM "+VersionTable).Scan(&v); err != nil {
		return 0, fmt.Errorf("store: read schema version: %w", err)
	}
	return v, nil
}
