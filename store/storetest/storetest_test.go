package storetest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sessionaudit/sessionaudit/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// prepareCalls counts the runs of prepareSchema.
var prepareCalls atomic.Int32

// prepareSchema stands in for the store's migrations.
func prepareSchema(ctx context.Context, databaseURL string) error {
	prepareCalls.Add(1)
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE TABLE migrated (id int PRIMARY KEY);
		INSERT INTO migrated VALUES (1), (2), (3)`)
	return err
}

func count(t *testing.T, url, table string) int {
	t.Helper()
	var n int
	if err := storetest.Pool(t, url).QueryRow(context.Background(),
		"SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatalf("counting rows of %s: %v", table, err)
	}
	return n
}

func TestDatabasesAreIsolatedAndPrepared(t *testing.T) {
	a := storetest.NewDatabase(t, prepareSchema)
	b := storetest.NewDatabase(t, prepareSchema)
	if a == b {
		t.Fatalf("two calls returned the same database %s", a)
	}
	ctx := context.Background()
	poolA := storetest.Pool(t, a)
	if _, err := poolA.Exec(ctx, "CREATE TABLE only_in_a (x int); INSERT INTO migrated VALUES (4)"); err != nil {
		t.Fatalf("changing database a: %v", err)
	}
	// Both start from the prepared template...
	if got := count(t, a, "migrated"); got != 4 {
		t.Errorf("database a: migrated has %d rows, want 4", got)
	}
	if got := count(t, b, "migrated"); got != 3 {
		t.Errorf("database b: migrated has %d rows, want 3 (changes to a leaked into b?)", got)
	}
	// ...and what one test does is invisible to the other.
	_, err := storetest.Pool(t, b).Exec(ctx, "SELECT * FROM only_in_a")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42P01" { // undefined_table
		t.Errorf("querying only_in_a in database b: got error %v, want undefined_table", err)
	}
}

func TestPrepareRunsOncePerFunction(t *testing.T) {
	t.Run("group", func(t *testing.T) {
		for i := range 6 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				url := storetest.NewDatabase(t, prepareSchema)
				if got := count(t, url, "migrated"); got != 3 {
					t.Errorf("migrated has %d rows, want 3", got)
				}
			})
		}
	})
	// The other test in this package may have run it first; either way once.
	if prepareCalls.Load() == 0 {
		t.Skip("no database server (see the subtests)")
	}
	if got := prepareCalls.Load(); got != 1 {
		t.Errorf("prepareSchema ran %d times, want 1", got)
	}

	// A different function gets its own template.
	var otherCalls atomic.Int32
	other := func(ctx context.Context, url string) error {
		otherCalls.Add(1)
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return err
		}
		// Left open on purpose: storetest must cope with it.
		_, err = conn.Exec(ctx, "CREATE TABLE other (x int)")
		return err
	}
	for range 2 {
		url := storetest.NewDatabase(t, other)
		if got := count(t, url, "other"); got != 0 {
			t.Errorf("other has %d rows, want 0", got)
		}
	}
	if got := otherCalls.Load(); got != 1 {
		t.Errorf("other prepare ran %d times, want 1", got)
	}
}

func TestNilPrepareGivesEmptyDatabase(t *testing.T) {
	url := storetest.NewDatabase(t, nil)
	var tables int
	if err := storetest.Pool(t, url).QueryRow(context.Background(),
		"SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil {
		t.Fatalf("listing tables: %v", err)
	}
	if tables != 0 {
		t.Errorf("empty database has %d tables, want 0", tables)
	}
}

func TestPrepareErrorFailsWithContext(t *testing.T) {
	// Exercised in a subprocess-free way: the error is cached and reported by
	// every NewDatabase call; check the message through a fake TB.
	ft := &fakeTB{TB: t}
	func() {
		defer func() { _ = recover() }()
		storetest.NewDatabase(ft, failingPrepare)
	}()
	if ft.skipped {
		t.Skip(ft.msg)
	}
	if !ft.failed || !strings.Contains(ft.msg, "failingPrepare") || !strings.Contains(ft.msg, "boom") {
		t.Errorf("NewDatabase with a failing prepare: failed=%v, message %q; want a failure naming failingPrepare and boom",
			ft.failed, ft.msg)
	}
}

func failingPrepare(context.Context, string) error { return errors.New("boom") }

// fakeTB records Fatal and Skip instead of stopping the real test.
type fakeTB struct {
	testing.TB
	failed, skipped bool
	msg             string
}

type stopTest struct{}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatal(args ...any) {
	f.failed, f.msg = true, fmt.Sprint(args...)
	panic(stopTest{})
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	panic(stopTest{})
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, args...)
	panic(stopTest{})
}
func (f *fakeTB) Skip(args ...any) {
	f.skipped, f.msg = true, fmt.Sprint(args...)
	panic(stopTest{})
}

// TestUnavailableServer runs this test binary without any usable server and
// checks that tests skip, or fail under CI=true, saying how to fix it.
func TestUnavailableServer(t *testing.T) {
	if os.Getenv("STORETEST_CHILD") != "" {
		t.Skip("running as the child of TestUnavailableServer")
	}
	if testing.Short() {
		t.Skip("runs the test binary again")
	}
	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestNilPrepareGivesEmptyDatabase$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(),
			"STORETEST_CHILD=1",
			storetest.EnvDatabaseURL+"=",
			storetest.EnvImage+"=sessionaudit/storetest-no-such-image:0",
			"CI="+ci)
		out, err := cmd.CombinedOutput()
		want, wantErr := "--- SKIP", false
		if ci == "true" {
			want, wantErr = "--- FAIL", true
		}
		if !strings.Contains(string(out), want) || (err != nil) != wantErr ||
			!strings.Contains(string(out), "deploy/postgres-test-image/build") ||
			!strings.Contains(string(out), "sessionaudit/storetest-no-such-image:0") {
			t.Errorf("with CI=%q and a missing image: exit error %v, output:\n%s\nwant %q, a non-nil error: %v, "+
				"and a message naming the image and deploy/postgres-test-image/build", ci, err, out, want, wantErr)
		}
	}
}
