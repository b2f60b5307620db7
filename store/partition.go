package store

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// PartitionsAhead is how many months after the current one EnsurePartitions
// prepares.
const PartitionsAhead = 3

// partitionLock is the pg_advisory_xact_lock key held while partitions are
// created or dropped ("sesspart").
const partitionLock int64 = 0x7365737370617274

// partitioned lists the tables partitioned by month of end_before.
var partitioned = []string{"logon_session", "server_session"}

var partitionName = regexp.MustCompile(`^(logon_session|server_session)_p(\d{4})(\d{2})$`)

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// EnsurePartitions creates the monthly partitions from the month before
// now's to PartitionsAhead months after it, if missing. The collector calls
// it at start and daily; several collectors may call it at once.
func (s *Store) EnsurePartitions(ctx context.Context, now time.Time) error {
	m := monthStart(now)
	return s.EnsurePartitionsBetween(ctx, m.AddDate(0, -1, 0), m.AddDate(0, PartitionsAhead+1, 0))
}

// EnsurePartitionsBetween creates the monthly partitions covering [from, to),
// if missing. A month whose sessions already sit in a _default partition
// cannot be created and is reported as an error.
func (s *Store) EnsurePartitionsBetween(ctx context.Context, from, to time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", partitionLock); err != nil {
			return fmt.Errorf("store: ensure partitions: take advisory lock: %w", err)
		}
		existing, err := partitions(ctx, tx)
		if err != nil {
			return err
		}
		for m := monthStart(from); m.Before(to); m = m.AddDate(0, 1, 0) {
			for _, table := range partitioned {
				name := fmt.Sprintf("%s_p%04d%02d", table, m.Year(), int(m.Month()))
				if _, ok := existing[name]; ok {
					continue
				}
				sql := fmt.Sprintf("CREATE TABLE %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')",
					pgx.Identifier{name}.Sanitize(), pgx.Identifier{table}.Sanitize(),
					m.Format(time.RFC3339), m.AddDate(0, 1, 0).Format(time.RFC3339))
				if _, err := tx.Exec(ctx, sql); err != nil {
					return fmt.Errorf("store: create partition %s for %s: %w", name, m.Format("2006-01"), err)
				}
			}
		}
		return nil
	})
}

// partitions returns the monthly partitions that exist, with their month.
func partitions(ctx context.Context, tx pgx.Tx) (map[string]time.Time, error) {
	rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
		WHERE p.relname = ANY($1) AND p.relnamespace = current_schema()::regnamespace`, partitioned)
	if err != nil {
		return nil, fmt.Errorf("store: list partitions: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: list partitions: %w", err)
	}
	out := make(map[string]time.Time)
	for _, n := range names {
		m := partitionName.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		y, _ := strconv.Atoi(m[2])
		mo, _ := strconv.Atoi(m[3])
		out[n] = time.Date(y, time.Month(mo), 1, 0, 0, 0, 0, time.UTC)
	}
	return out, nil
}

// DropPartitionsBefore applies retention: it drops every monthly partition
// whose sessions all ended before cutoff (its month ends at or before
// cutoff), deletes such sessions from the _default partitions and deletes
// older ingest notes and coverage gaps. Open sessions are never removed. It returns the
// partitions dropped.
func (s *Store) DropPartitionsBefore(ctx context.Context, cutoff time.Time) ([]string, error) {
	var dropped []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		dropped = nil
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", partitionLock); err != nil {
			return fmt.Errorf("store: retention: take advisory lock: %w", err)
		}
		existing, err := partitions(ctx, tx)
		if err != nil {
			return err
		}
		for name, month := range existing {
			if month.AddDate(0, 1, 0).After(cutoff) {
				continue
			}
			if _, err := tx.Exec(ctx, "DROP TABLE "+pgx.Identifier{name}.Sanitize()); err != nil {
				return fmt.Errorf("store: retention: drop partition %s: %w", name, err)
			}
			dropped = append(dropped, name)
		}
		for _, table := range partitioned {
			if _, err := tx.Exec(ctx, "DELETE FROM "+pgx.Identifier{table + "_default"}.Sanitize()+" WHERE end_before <= $1", cutoff); err != nil {
				return fmt.Errorf("store: retention: delete old rows of %s_default: %w", table, err)
			}
		}
		if _, err := tx.Exec(ctx, "DELETE FROM ingest_note WHERE recorded_at < $1", cutoff); err != nil {
			return fmt.Errorf("store: retention: delete old ingest notes: %w", err)
		}
		// A coverage gap goes with the history it is about: once it and its
		// settling ended before the cutoff (greatest ignores a NULL
		// settled_at).
		if _, err := tx.Exec(ctx, "DELETE FROM coverage_gap WHERE greatest(end_time, settled_at) <= $1", cutoff); err != nil {
			return fmt.Errorf("store: retention: delete old coverage gaps: %w", err)
		}
		return nil
	})
	return dropped, err
}
