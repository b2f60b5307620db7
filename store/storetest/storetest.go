// Package storetest gives tests an isolated PostgreSQL database each.
//
// Every call of [NewDatabase] creates a fresh database with
// CREATE DATABASE ... TEMPLATE from a template database that is prepared (for
// example migrated) once per test process, and drops it when the test ends.
// Creating a database from a template takes milliseconds, so each test,
// including parallel ones, can have its own.
//
// The PostgreSQL server is, in this order:
//
//   - the one named by TEST_DATABASE_URL (a postgres:// URL whose role may
//     CREATE DATABASE), if set;
//   - otherwise a container started with testcontainers-go from the image
//     named by SESSIONAUDIT_POSTGRES_IMAGE (default
//     sessionaudit/postgres-test:15, built by deploy/postgres-test-image/build;
//     postgres:15 works as well). It is started on first use and terminated
//     by [Main] when the tests of the package are done.
//
// If neither is available the test is skipped, or fails when the environment
// variable CI is "true", with a message saying how to fix it.
//
// Packages that use storetest must call [Main] from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }
//
// storetest is meant to be imported by tests only. See docs/testing.md.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Environment variables read by storetest.
const (
	// EnvDatabaseURL names the variable holding the URL of an existing server
	// to use instead of a container.
	EnvDatabaseURL = "TEST_DATABASE_URL"
	// EnvImage names the variable holding the docker image to start when
	// EnvDatabaseURL is not set.
	EnvImage = "SESSIONAUDIT_POSTGRES_IMAGE"
	// DefaultImage is the image used when EnvImage is not set; it is built by
	// deploy/postgres-test-image/build.
	DefaultImage = "sessionaudit/postgres-test:15"
)

// Timeouts of the operations storetest performs on behalf of a test.
const (
	startTimeout   = 3 * time.Minute // starting the container or connecting to the server
	prepareTimeout = 5 * time.Minute // running prepare on the template
	sqlTimeout     = time.Minute     // CREATE / DROP DATABASE
)

var (
	mainCalled atomic.Bool

	serverOnce sync.Once
	theServer  *server
	serverErr  error

	templatesMu sync.Mutex
	templates   = map[uintptr]*template{}

	// processToken makes names unique across test processes sharing a server.
	processToken = newProcessToken()
	nameSeq      atomic.Uint64
)

// template is a database prepared once by one prepare function.
type template struct {
	once sync.Once
	name string
	err  error
}

// Main runs the tests of m and then releases what storetest started: the
// template databases it created and the PostgreSQL container, if any. It
// returns the exit code for os.Exit. Every test package that uses
// [NewDatabase] must call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }
func Main(m *testing.M) int {
	mainCalled.Store(true)
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "storetest: cleaning up after the tests: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// NewDatabase returns the URL of a new database, a copy of the prepared template, that only
// this test uses. It is created from a template database which prepare (for
// example the store's migrations) fills once per test process; the database
// is dropped when the test and its subtests have finished.
//
// prepare receives the template's URL; it must not leave connections open
// (any that remain are terminated). It runs once per distinct function: two
// closures made by the same function literal count as the same function, so
// pass a named function or a single package-level closure. prepare may be
// nil for an empty database. If prepare fails, every test asking for that
// template fails with its error.
//
// Without a server (see the package documentation) the test is skipped, or
// fails when CI=true. NewDatabase is safe for parallel tests.
func NewDatabase(t testing.TB, prepare func(ctx context.Context, databaseURL string) error) string {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("storetest: the test package's TestMain must call storetest.Main, so that the " +
			"PostgreSQL container and template databases are released after the tests; add\n" +
			"\tfunc TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }")
	}
	s := getServer(t)
	tmpl, err := s.template(prepare)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}

	name := newName("t", t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	sql := fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", quote(name), quote(tmpl))
	if _, err := s.admin.Exec(ctx, sql); err != nil {
		t.Fatalf("storetest: %s on %s: %v", sql, s.describe, err)
	}
	t.Cleanup(func() {
		if err := s.dropDatabase(name); err != nil {
			t.Errorf("storetest: dropping the test's database: %v", err)
		}
	})
	return s.urlFor(name)
}

// Pool returns a pgx connection pool for databaseURL (typically the result of
// [NewDatabase]) that is closed when the test ends. The test fails if the
// database cannot be reached.
func Pool(t testing.TB, databaseURL string) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		t.Fatalf("storetest: opening a pool for %s: %v", redact(databaseURL), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		t.Fatalf("storetest: connecting to %s: %v", redact(databaseURL), err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// getServer returns the process's server, starting it on first use. It skips
// or fails t if there is none.
func getServer(t testing.TB) *server {
	t.Helper()
	serverOnce.Do(func() { theServer, serverErr = startServer() })
	if serverErr == nil {
		return theServer
	}
	if u, ok := serverErr.(*unavailableError); ok {
		if os.Getenv("CI") == "true" {
			t.Fatalf("storetest: %v\n(failing instead of skipping because CI=true)", u)
		}
		t.Skipf("storetest: %v", u)
	}
	t.Fatalf("storetest: %v", serverErr)
	return nil
}

// template returns the name of the template database made by prepare,
// creating it on first use.
func (s *server) template(prepare func(ctx context.Context, databaseURL string) error) (string, error) {
	var key uintptr
	if prepare != nil {
		key = reflect.ValueOf(prepare).Pointer()
	}
	templatesMu.Lock()
	tmpl := templates[key]
	if tmpl == nil {
		tmpl = &template{name: newName("tmpl", funcName(key))}
		templates[key] = tmpl
	}
	templatesMu.Unlock()

	tmpl.once.Do(func() { tmpl.err = s.createTemplate(tmpl.name, prepare, key) })
	return tmpl.name, tmpl.err
}

func (s *server) createTemplate(name string, prepare func(context.Context, string) error, key uintptr) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
	defer cancel()
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+quote(name)); err != nil {
		return fmt.Errorf("creating template database %s on %s: %w", name, s.describe, err)
	}
	defer func() {
		if err != nil {
			if dropErr := s.dropDatabase(name); dropErr != nil {
				err = fmt.Errorf("%w (and dropping it again: %v)", err, dropErr)
			}
		}
	}()
	if prepare != nil {
		if err := prepare(ctx, s.urlFor(name)); err != nil {
			return fmt.Errorf("preparing template database %s with %s: %w", name, funcName(key), err)
		}
	}
	// CREATE DATABASE ... TEMPLATE fails while anyone is connected to the
	// template: end what prepare left open, then forbid new connections.
	if _, err := s.admin.Exec(ctx,
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
		name); err != nil {
		return fmt.Errorf("closing connections to template database %s: %w", name, err)
	}
	if _, err := s.admin.Exec(ctx,
		"ALTER DATABASE "+quote(name)+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("marking database %s as a template: %w", name, err)
	}
	return nil
}

// dropDatabase drops a test or template database, ending its connections.
func (s *server) dropDatabase(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	// A template cannot be dropped; harmless for ordinary databases.
	if _, err := s.admin.Exec(ctx, "ALTER DATABASE "+quote(name)+" WITH IS_TEMPLATE false"); err != nil &&
		!strings.Contains(err.Error(), "does not exist") {
		return fmt.Errorf("unmarking template %s on %s: %w", name, s.describe, err)
	}
	sql := "DROP DATABASE IF EXISTS " + quote(name)
	if s.version >= 130000 {
		sql += " WITH (FORCE)"
	} else if _, err := s.admin.Exec(ctx,
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name); err != nil {
		return fmt.Errorf("closing connections to %s on %s: %w", name, s.describe, err)
	}
	if _, err := s.admin.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s on %s: %w", sql, s.describe, err)
	}
	return nil
}

// shutdown drops the templates and stops the server; called by Main.
func shutdown() error {
	if theServer == nil {
		return nil
	}
	var errs []string
	templatesMu.Lock()
	for _, tmpl := range templates {
		// A container is thrown away anyway; only a shared server needs tidying.
		if tmpl.err == nil && theServer.stopContainer == nil {
			if err := theServer.dropDatabase(tmpl.name); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	templatesMu.Unlock()
	if err := theServer.close(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// urlFor returns the server's URL with the database replaced by name.
func (s *server) urlFor(name string) string {
	u := *s.baseURL
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// newName returns a database name that is unique among test processes,
// readable in listings: sa_<kind>_<process>_<sequence>_<hint>.
func newName(kind, hint string) string {
	hint = strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(hint), "_"), "_")
	name := fmt.Sprintf("sa_%s_%s_%d", kind, processToken, nameSeq.Add(1))
	if hint != "" {
		name += "_" + hint
	}
	const maxIdentifier = 63 // NAMEDATALEN - 1
	if len(name) > maxIdentifier {
		name = name[:maxIdentifier]
	}
	return name
}

func newProcessToken() string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("storetest: reading random bytes: %v", err))
	}
	return hex.EncodeToString(b)
}

// funcName names the prepare function with the given code pointer, for
// messages and template names.
func funcName(pc uintptr) string {
	if pc == 0 {
		return "empty"
	}
	if f := runtime.FuncForPC(pc); f != nil {
		name := f.Name()
		return name[strings.LastIndex(name, "/")+1:]
	}
	return fmt.Sprintf("func@%#x", pc)
}

func quote(ident string) string { return pgx.Identifier{ident}.Sanitize() }

// redact hides the password in a URL for messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
