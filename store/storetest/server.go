package storetest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
)

// ContainerLabel is set on the containers storetest starts, together with
// ContainerLabel+".host" and ContainerLabel+".pid" naming the test process.
// If a test process dies before [Main] terminates its container (a -timeout
// panic, a kill), the next test process on the same host removes it; to
// remove all of them by hand:
//
//	docker rm -f -v $(docker ps -aq --filter label=org.sessionaudit.storetest)
const ContainerLabel = "org.sessionaudit.storetest"

// server is the PostgreSQL server of the test process.
type server struct {
	baseURL  *url.URL      // URL of the maintenance database; path replaced per database
	admin    *pgxpool.Pool // connected to the maintenance database
	version  int           // server_version_num
	describe string        // for messages: where the server comes from
	// stopContainer terminates the container running the server; nil for
	// TEST_DATABASE_URL.
	stopContainer func() error
}

// unavailableError means there is no server to test with: the test is
// skipped, or fails under CI=true.
type unavailableError struct{ reason string }

func (e *unavailableError) Error() string {
	image := os.Getenv(EnvImage)
	if image == "" {
		image = DefaultImage
	}
	return fmt.Sprintf("no PostgreSQL server for the tests: %s is not set and %s.\n"+
		"To fix: run deploy/postgres-test-image/build (builds %s; needs Docker and root), "+
		"or set %s to an image you have (e.g. postgres:15), "+
		"or set %s=postgres://user:password@host:5432/db (a role that may CREATE DATABASE). "+
		"See docs/testing.md.",
		EnvDatabaseURL, e.reason, DefaultImage, EnvImage, EnvDatabaseURL)
}

func startServer() (*server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if raw := os.Getenv(EnvDatabaseURL); raw != "" {
		return connectServer(ctx, raw, EnvDatabaseURL+" ("+redact(raw)+")", nil)
	}
	return startContainer(ctx)
}

// connectServer opens the admin pool on rawURL and checks that its role may
// create databases.
func connectServer(ctx context.Context, rawURL, describe string, stopContainer func() error) (*server, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return nil, fmt.Errorf("%s must be a URL like postgres://user:password@host:5432/db, got %q",
			describe, redact(rawURL))
	}
	admin, err := pgxpool.New(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", describe, err)
	}
	s := &server{baseURL: u, admin: admin, describe: describe, stopContainer: stopContainer}
	var canCreate bool
	var version string
	err = admin.QueryRow(ctx, `SELECT rolsuper OR rolcreatedb, current_setting('server_version_num')
		FROM pg_roles WHERE rolname = current_user`).Scan(&canCreate, &version)
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("connecting to %s: %w", describe, err)
	}
	if !canCreate {
		admin.Close()
		return nil, fmt.Errorf("the role of %s may not create databases; "+
			"use a superuser or ALTER ROLE %s CREATEDB", describe, u.User.Username())
	}
	if s.version, err = strconv.Atoi(version); err != nil {
		admin.Close()
		return nil, fmt.Errorf("reading server_version_num of %s: %q: %w", describe, version, err)
	}
	return s, nil
}

// close releases the admin pool and terminates the container, if any.
func (s *server) close() error {
	s.admin.Close()
	if s.stopContainer == nil {
		return nil
	}
	if err := s.stopContainer(); err != nil {
		return fmt.Errorf("terminating %s: %w", s.describe, err)
	}
	return nil
}
