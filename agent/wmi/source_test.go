package wmi

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/source"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

const (
	kindQueryFailed = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_QUERY_FAILED
	kindTimeout     = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_TIMEOUT
	kindDisabled    = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_DISABLED
)

// fakeWMI is a WMI host: each connection it makes answers queries from the
// same rows. A class in fail answers with that error; a class in hang blocks
// until its channel is closed. It records the queries and checks that no
// two run at once.
type fakeWMI struct {
	t *testing.T

	mu      sync.Mutex
	fail    map[string]error
	hang    map[string]chan struct{}
	queries []string
	running int
	dials   int
	closes  int
	dialErr error
	started chan string // receives the class of each query as it starts, if set

	sids       map[string]string          // DOMAIN\name → SID, for lookupSID
	processes  []source.SessionProcessRow // what Win32_SessionProcess gives
	sidLookups []string                   // the accounts lookupSID was asked for
}

func newFakeWMI(t *testing.T) *fakeWMI {
	return &fakeWMI{t: t, fail: map[string]error{}, hang: map[string]chan struct{}{}}
}

// queried returns the classes queried so far.
func (f *fakeWMI) queried() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queries...)
}

func (f *fakeWMI) dial() (conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dialErr != nil {
		return nil, f.dialErr
	}
	f.dials++
	return &fakeConn{f: f}, nil
}

type fakeConn struct {
	f      *fakeWMI
	closed bool
}

func classOf(wql string) string { return wql[strings.LastIndex(wql, " ")+1:] }

func (c *fakeConn) Query(wql string, dst any) error {
	f := c.f
	class := classOf(wql)
	f.mu.Lock()
	if c.closed {
		f.mu.Unlock()
		f.t.Errorf("query %q on a closed connection", wql)
		return errors.New("closed")
	}
	f.running++
	if f.running > 1 {
		f.t.Errorf("query %q started while another is running", wql)
	}
	f.queries = append(f.queries, class)
	hang, err := f.hang[class], f.fail[class]
	started := f.started
	f.mu.Unlock()
	if started != nil {
		started <- class
	}
	if hang != nil {
		<-hang
	}
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	if err == errPanic {
		panic("VARIANT of unexpected type")
	}
	if err != nil {
		return err
	}
	one := uint32(1)
	switch d := dst.(type) {
	case *[]source.OperatingSystemRow:
		*d = append(*d, source.OperatingSystemRow{Caption: "Microsoft Windows Server 2022", Version: "10.0.20348", BuildNumber: "20348", LastBootUpTime: "20260101080000.000000+060"})
	case *[]source.ComputerSystemRow:
		*d = append(*d, source.ComputerSystemRow{DNSHostName: "fs01", Domain: "contoso.com", Name: "FS01"})
	case *[]source.LogonSessionRow:
		*d = append(*d, source.LogonSessionRow{LogonId: "999", LogonType: new(uint32(0)), StartTime: "20260101080001.000000+060"},
			source.LogonSessionRow{LogonId: "123456", LogonType: new(uint32(2)), StartTime: "********************.******+***"})
	case *[]source.LoggedOnUserRow:
		*d = append(*d, source.LoggedOnUserRow{
			Antecedent: `\\.\root\cimv2:Win32_Account.Domain="CONTOSO",Name="alice"`,
			Dependent:  `\\.\root\cimv2:Win32_LogonSession.LogonId="123456"`,
		})
	case *[]source.ServerSessionRow:
		*d = append(*d, source.ServerSessionRow{ComputerName: "10.0.0.5", UserName: "alice", ActiveTime: &one})
	case *[]source.SessionProcessRow:
		f.mu.Lock()
		*d = append(*d, f.processes...)
		f.mu.Unlock()
	default:
		f.t.Errorf("query %q into unexpected %T", wql, dst)
	}
	return nil
}

func (c *fakeConn) Close() error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.closed = true
	c.f.closes++
	return nil
}

// errPanic in fakeWMI.fail makes the query panic.
var errPanic = errors.New("panic")

var testStart = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

const testGUID = "6f1c2a4e-0b7d-4c1e-9a3f-2b8d5e7c9a01"

func newTestSource(t *testing.T, f *fakeWMI, opts Options) (*Source, *clock.Manual) {
	t.Helper()
	clk := clock.NewManual(testStart)
	opts.Clock = clk
	c, err := f.dial()
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	if opts.Exit == nil {
		opts.Exit = noExit(t)
	}
	s, err := newSource(opts, c, f.platform())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, clk
}

// failures returns class → kind of c's failures.
func failures(c *source.Collection) map[string]sessionauditv1.CollectionErrorKind {
	m := map[string]sessionauditv1.CollectionErrorKind{}
	for _, f := range c.Failures {
		m[f.Class] = f.Kind
	}
	return m
}

func TestSnapshotAllClasses(t *testing.T) {
	f := newFakeWMI(t)
	s, _ := newTestSource(t, f, Options{AgentVersion: "1.2.3"})
	snap, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.queried(), ","); got != strings.Join(QueryOrder, ",") {
		t.Errorf("queries %s, want %s", got, strings.Join(QueryOrder, ","))
	}
	h := snap.GetHost()
	if h.GetMachineGuid() != testGUID || h.GetHostname() != "fs01" || h.GetDomain() != "contoso.com" || h.GetOsBuild() != "20348" || h.GetAgentVersion() != "1.2.3" {
		t.Errorf("host = %v", h)
	}
	if got := h.GetLastBootTime().AsTime(); !got.Equal(time.Date(2026, 1, 1, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("last boot %v", got)
	}
	if !snap.GetTakenAt().AsTime().Equal(testStart) {
		t.Errorf("taken at %v, want %v", snap.GetTakenAt().AsTime(), testStart)
	}
	if n := len(snap.GetLogonSessions()); n != 2 {
		t.Fatalf("%d logon sessions, want 2", n)
	}
	if a := snap.GetLogonSessions()[1].GetAccount(); a.GetName() != "alice" {
		t.Errorf("session 123456 account %v, want alice", a)
	}
	if n := len(snap.GetServerSessions()); n != 1 {
		t.Errorf("%d server sessions, want 1", n)
	}
	// The wildcard StartTime is one INVALID_VALUE error; no class failed.
	if errs := snap.GetErrors(); len(errs) != 1 || errs[0].GetKind() != sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_INVALID_VALUE {
		t.Errorf("errors %v, want one INVALID_VALUE", errs)
	}
}

func TestFailingClassDoesNotStopOthers(t *testing.T) {
	f := newFakeWMI(t)
	f.fail[source.ClassLogonSession] = errors.New("Exception occurred. (Generic failure)")
	s, _ := newTestSource(t, f, Options{})
	c, err := s.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := failures(c); len(got) != 1 || got[source.ClassLogonSession] != kindQueryFailed {
		t.Errorf("failures %v, want only Win32_LogonSession QUERY_FAILED", got)
	}
	if !strings.Contains(c.Failures[0].Err.Error(), "Generic failure") {
		t.Errorf("failure error %q does not carry the cause", c.Failures[0].Err)
	}
	if len(f.queried()) != len(source.Classes) {
		t.Errorf("queried %v, want every class", f.queried())
	}
	if len(c.ServerSessions) != 1 || len(c.LoggedOnUsers) != 1 || c.OperatingSystem == nil {
		t.Error("classes after the failed one were not collected")
	}
}

func TestPanickingQueryIsQueryFailed(t *testing.T) {
	f := newFakeWMI(t)
	f.fail[source.ClassComputerSystem] = errPanic
	s, _ := newTestSource(t, f, Options{})
	c, err := s.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := failures(c); len(got) != 1 || got[source.ClassComputerSystem] != kindQueryFailed {
		t.Errorf("failures %v, want Win32_ComputerSystem QUERY_FAILED", got)
	}
	if !strings.Contains(c.Failures[0].Err.Error(), "panicked") {
		t.Errorf("failure %q", c.Failures[0].Err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dials != 2 || f.closes != 1 {
		t.Errorf("dials %d closes %d: want the connection replaced after the panic", f.dials, f.closes)
	}
}

func TestDisabledClasses(t *testing.T) {
	f := newFakeWMI(t)
	s, _ := newTestSource(t, f, Options{Disabled: []string{source.ClassServerSession, source.ClassLoggedOnUser}})
	snap, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range f.queried() {
		if q == source.ClassServerSession || q == source.ClassLoggedOnUser {
			t.Errorf("disabled class %s was queried", q)
		}
	}
	disabled := map[string]bool{}
	for _, e := range snap.GetErrors() {
		if e.GetKind() == kindDisabled {
			disabled[e.GetWmiClass()] = true
		}
	}
	if !disabled[source.ClassServerSession] || !disabled[source.ClassLoggedOnUser] || len(disabled) != 2 {
		t.Errorf("DISABLED errors for %v", disabled)
	}
	if len(snap.GetServerSessions()) != 0 {
		t.Error("server sessions reported for a disabled class")
	}
}

func TestNewRejectsUnknownClass(t *testing.T) {
	f := newFakeWMI(t)
	_, err := newSource(Options{Disabled: []string{"Win32_Process"}}, nil, f.platform())
	if err == nil || !strings.Contains(err.Error(), "Win32_Process") {
		t.Errorf("err = %v, want one naming Win32_Process", err)
	}
}

// TestTimeoutStopsThePass: a query past its deadline is TIMEOUT, the classes
// after it are TIMEOUT without being queried, the next pass does not query
// while the late query runs, and once it returns the connection is made
// anew and collection resumes.
func TestTimeoutStopsThePass(t *testing.T) {
	f := newFakeWMI(t)
	release := make(chan struct{})
	f.hang[source.ClassLogonSession] = release
	// The clock moves a minute, 3000 deadlines: the watchdog is kept out
	// of this test (TestWatchdog* test it).
	s, clk := newTestSource(t, f, Options{QueryTimeout: 20 * time.Millisecond, WatchdogDeadlines: 1 << 20})

	c, err := s.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]sessionauditv1.CollectionErrorKind{
		source.ClassLogonSession: kindTimeout,
		source.ClassLoggedOnUser: kindTimeout,
	}
	if got := failures(c); !equalKinds(got, want) {
		t.Errorf("failures %v, want %v", got, want)
	}
	var te *TimeoutError
	if !errors.As(c.Failures[0].Err, &te) || te.Class != source.ClassLogonSession || te.Timeout != 20*time.Millisecond {
		t.Errorf("first failure %v, want a TimeoutError for Win32_LogonSession", c.Failures[0].Err)
	}
	if msg := c.Failures[1].Err.Error(); !strings.Contains(msg, "not queried") || !strings.Contains(msg, source.ClassLogonSession) {
		t.Errorf("failure of the next class %q: want it to say it was not queried because of Win32_LogonSession", msg)
	}
	if c.OperatingSystem == nil || c.ComputerSystem == nil || len(c.ServerSessions) != 1 {
		t.Error("classes before the timeout were lost")
	}

	// Second pass while the query still hangs: nothing is queried.
	clk.Advance(time.Minute)
	n := len(f.queried())
	c, err = s.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(f.queried()) != n {
		t.Errorf("queried %v while a query was running", f.queried()[n:])
	}
	for _, class := range source.Classes {
		if failures(c)[class] != kindTimeout {
			t.Errorf("%s: kind %v, want TIMEOUT", class, failures(c)[class])
		}
	}
	var be *BusyError
	if !errors.As(c.Failures[0].Err, &be) || be.Class != source.ClassLogonSession || be.Running != time.Minute {
		t.Errorf("failure %v, want a BusyError naming Win32_LogonSession running 1m", c.Failures[0].Err)
	}

	// The query returns: the connection is replaced and all is collected.
	close(release)
	waitIdle(t, s)
	f.mu.Lock()
	delete(f.hang, source.ClassLogonSession)
	f.mu.Unlock()
	c, err = s.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Failures) != 0 {
		t.Errorf("failures after recovery: %v", c.Failures)
	}
	f.mu.Lock()
	dials, closes := f.dials, f.closes
	f.mu.Unlock()
	if dials != 2 || closes != 1 {
		t.Errorf("dials %d closes %d, want the connection replaced once", dials, closes)
	}
}

func equalKinds(a, b map[string]sessionauditv1.CollectionErrorKind) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// waitIdle waits until the worker has recorded the end of its query.
func waitIdle(t *testing.T, s *Source) {
	t.Helper()
	for i := 0; s.w.busy(); i++ {
		if i > 1000 {
			t.Fatal("worker still busy")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRedialFailureIsQueryFailed(t *testing.T) {
	f := newFakeWMI(t)
	s, err := newSource(Options{Logger: testLogger(t), Exit: noExit(t)}, nil, f.platform())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f.dialErr = errors.New("CreateObject SWbemLocator error: class not registered")
	c, err := s.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, class := range source.Classes {
		if failures(c)[class] != kindQueryFailed {
			t.Errorf("%s: %v, want QUERY_FAILED", class, failures(c)[class])
		}
	}
	if !strings.Contains(c.Failures[0].Err.Error(), "connect to WMI") {
		t.Errorf("failure %q does not say the connection failed", c.Failures[0].Err)
	}
	f.dialErr = nil
	if c, err = s.Collect(context.Background()); err != nil || len(c.Failures) != 0 {
		t.Errorf("after the dial works again: failures %v, err %v", c.Failures, err)
	}
}

func TestCancelledContextIsAnError(t *testing.T) {
	f := newFakeWMI(t)
	release := make(chan struct{})
	defer close(release)
	f.hang[source.ClassOperatingSystem] = release
	f.started = make(chan string, 1)
	s, _ := newTestSource(t, f, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-f.started; cancel() }()
	if _, err := s.Snapshot(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if _, err := s.Snapshot(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("second err = %v, want context.Canceled", err)
	}
}

func TestMachineGUIDFailureIsAnError(t *testing.T) {
	f := newFakeWMI(t)
	p := f.platform()
	p.machineGUID = func() (string, error) { return "", errors.New("access denied") }
	s, err := newSource(Options{Logger: testLogger(t), Exit: noExit(t)}, nil, p)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Snapshot(context.Background()); err == nil || !strings.Contains(err.Error(), "machine GUID") {
		t.Errorf("err = %v, want one about the machine GUID", err)
	}
}

func TestClose(t *testing.T) {
	f := newFakeWMI(t)
	s, _ := newTestSource(t, f, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if f.closes != 1 {
		t.Errorf("connection closed %d times, want 1", f.closes)
	}
	if _, err := s.Snapshot(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Snapshot after Close: err = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCloseWhileStuck: Close returns at once and the connection is closed
// when the late query returns.
func TestCloseWhileStuck(t *testing.T) {
	f := newFakeWMI(t)
	release := make(chan struct{})
	f.hang[source.ClassOperatingSystem] = release
	s, _ := newTestSource(t, f, Options{QueryTimeout: 10 * time.Millisecond})
	if _, err := s.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-s.w.done
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closes != 1 {
		t.Errorf("connection closed %d times, want 1", f.closes)
	}
}

func TestSelectQuery(t *testing.T) {
	tests := []struct{ got, want string }{
		{SelectQuery[source.OperatingSystemRow](source.ClassOperatingSystem), "SELECT BuildNumber, Caption, LastBootUpTime, Version FROM Win32_OperatingSystem"},
		{SelectQuery[source.ComputerSystemRow](source.ClassComputerSystem), "SELECT DNSHostName, Domain, Name FROM Win32_ComputerSystem"},
		{SelectQuery[source.LoggedOnUserRow](source.ClassLoggedOnUser), "SELECT Antecedent, Dependent FROM Win32_LoggedOnUser"},
		{SelectQuery[source.LogonSessionRow](source.ClassLogonSession), "SELECT AuthenticationPackage, Caption, Description, InstallDate, LogonId, LogonType, Name, StartTime, Status FROM Win32_LogonSession"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got  %s\nwant %s", tt.got, tt.want)
		}
	}
}

// platform returns the fake's dial, a machine GUID and its SID lookup.
func (f *fakeWMI) platform() platform {
	return platform{dial: f.dial, machineGUID: func() (string, error) { return testGUID, nil }, lookupSID: f.lookupSID}
}

// lookupSID answers from f.sids (keys DOMAIN\name as given), else
// errAccountNotFound, and counts the calls.
func (f *fakeWMI) lookupSID(domain, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sidLookups = append(f.sidLookups, domain+`\`+name)
	if sid, ok := f.sids[domain+`\`+name]; ok {
		return sid, nil
	}
	return "", errAccountNotFound
}

// logBuffer collects log lines; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testLogger returns a logger whose lines are written to the test's log
// when the test ends (a goroutine of the source may log after the test
// function returned).
func testLogger(t *testing.T) *slog.Logger {
	log, buf := bufferLogger()
	t.Cleanup(func() {
		if out := buf.String(); out != "" {
			t.Log("log:\n" + out)
		}
	})
	return log
}

// bufferLogger returns a logger writing to a new logBuffer.
func bufferLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// noExit is an Options.Exit for tests in which the watchdog must not fire.
// (TestTimeoutStopsThePass moves the clock past the watchdog's limit: it
// would fire there if the query did not return before the next tick.)
func noExit(t *testing.T) func(error) {
	return func(err error) { t.Errorf("the watchdog fired: %v", err) }
}
