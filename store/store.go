package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionaudit/sessionaudit/proto/limits"
)

// Tunables of the interval rules. docs/design/0002-storage.md explains each.
const (
	// ServerStartJitter is how far two computed starts (TakenAt minus
	// ActiveTime) of the same server session may differ and still be the same
	// session. Beyond it, the session reconnected.
	ServerStartJitter = 5 * time.Second
	// BootJitter is how far two LastBootTime values may differ and still be
	// the same boot: limits.BootJitter, which the agent uses too.
	BootJitter = limits.BootJitter
	// MaxClockSkew is how far in the future (by the collector's clock) an
	// TakenAt may lie before the report is rejected.
	MaxClockSkew = time.Hour
)

// Earliest is the earliest time the store accepts as a real observation,
// start or boot; earlier values (such as WMI's 1601-01-01 zero) are absurd.
var Earliest = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)

// Store is the session history in PostgreSQL. It is safe for concurrent use,
// also by several collector processes on the same database.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time

	mu       sync.Mutex
	labels   map[string]int32
	accounts map[string]int32 // key: lower(domain) + "\\" + lower(name)
}

// Option configures a Store.
type Option func(*Store)

// WithClock makes the store read the time from now instead of time.Now; for
// tests.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// New returns a Store that uses pool. The schema must be migrated (Migrate).
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{
		pool:     pool,
		now:      time.Now,
		labels:   make(map[string]int32),
		accounts: make(map[string]int32),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// DefaultMaxConns is the size of the pool Open makes unless the URL sets
// pool_max_conns: enough for the collector's concurrent ingests (16 by
// default), its heartbeat groups and a few queries at once. pgx's own
// default, max(4, CPUs), would make ingests queue for a connection.
const DefaultMaxConns = 24

// Open connects a pool to databaseURL and returns a Store on it. The URL
// may carry pgxpool's settings (pool_max_conns=…); without
// pool_max_conns the pool holds up to DefaultMaxConns connections. Close
// releases the pool.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("store: open pool: %w", err)
	}
	if !strings.Contains(databaseURL, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	return New(pool, opts...), nil
}

// Close closes the store's pool.
func (s *Store) Close() { s.pool.Close() }

// Pool returns the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// cache sizes beyond which the in-memory caches start over.
const maxCacheEntries = 1 << 20
