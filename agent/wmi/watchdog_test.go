package wmi

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/source"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// watchdogTimer is an Options.After whose channels the test feeds: every
// call is announced on calls (with its duration) and returns ticks.
type watchdogTimer struct {
	calls chan time.Duration
	ticks chan time.Time
}

func newWatchdogTimer() *watchdogTimer {
	return &watchdogTimer{calls: make(chan time.Duration, 16), ticks: make(chan time.Time)}
}

func (w *watchdogTimer) after(d time.Duration) <-chan time.Time {
	w.calls <- d
	return w.ticks
}

// armed waits until the watchdog waits on its timer and returns the
// duration it asked for.
func (w *watchdogTimer) armed(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-w.calls:
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("the watchdog did not arm its timer")
		return 0
	}
}

// fire makes the watchdog's timer fire.
func (w *watchdogTimer) fire(t *testing.T) {
	t.Helper()
	select {
	case w.ticks <- time.Time{}:
	case <-time.After(5 * time.Second):
		t.Fatal("the watchdog is not waiting on its timer")
	}
}

// exitRecorder is an Options.Exit that records its calls.
type exitRecorder struct {
	mu    sync.Mutex
	errs  []error
	fired chan struct{} // closed at the first call
}

func newExitRecorder() *exitRecorder { return &exitRecorder{fired: make(chan struct{})} }

func (e *exitRecorder) exit(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err)
	if len(e.errs) == 1 {
		close(e.fired)
	}
}

func (e *exitRecorder) calls() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.errs...)
}

// TestWatchdogExitsAfterNDeadlines: a query that never returns is TIMEOUT,
// then every class is TIMEOUT (busy) with the count of deadlines in the
// report, and once it has run for WatchdogDeadlines deadlines the watchdog
// logs and calls Exit with a HungError, once.
func TestWatchdogExitsAfterNDeadlines(t *testing.T) {
	f := newFakeWMI(t)
	release := make(chan struct{})
	defer close(release)
	f.hang[source.ClassLogonSession] = release
	timer := newWatchdogTimer()
	exits := newExitRecorder()
	log, logs := bufferLogger()
	const deadline = 20 * time.Millisecond
	s, clk := newTestSource(t, f, Options{QueryTimeout: deadline, WatchdogDeadlines: 3, After: timer.after, Exit: exits.exit, Logger: log})

	snap, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if msg := errorMessage(snap, source.ClassLogonSession); !strings.Contains(msg, "queries past their deadline since the agent started: 1") {
		t.Errorf("TIMEOUT message %q does not count the overrun", msg)
	}
	// Armed for the rest of 3 deadlines (the manual clock has not moved).
	if d := timer.armed(t); d != 3*deadline {
		t.Errorf("watchdog timer %v, want %v", d, 3*deadline)
	}
	if !strings.Contains(logs.String(), "WMI query past its deadline") {
		t.Errorf("no log line for the overrun:\n%s", logs)
	}

	// Two deadlines later: still busy, the count is in every class's error.
	clk.Advance(2 * deadline)
	snap, err = s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, class := range source.Classes {
		msg := errorMessage(snap, class)
		if !strings.Contains(msg, "2 of 3 deadlines") {
			t.Errorf("%s: message %q, want the count of deadlines (2 of 3)", class, msg)
		}
	}
	timer.fire(t) // early: the clock says 2 deadlines, the watchdog waits on
	if d := timer.armed(t); d != deadline {
		t.Errorf("watchdog re-armed for %v, want the last deadline %v", d, deadline)
	}
	if n := len(exits.calls()); n != 0 {
		t.Fatalf("Exit called %d times before the limit", n)
	}

	clk.Advance(deadline)
	timer.fire(t)
	select {
	case <-exits.fired:
	case <-time.After(5 * time.Second):
		t.Fatal("the watchdog did not call Exit after 3 deadlines")
	}
	calls := exits.calls()
	var hung *HungError
	if len(calls) != 1 || !errors.As(calls[0], &hung) || hung.Class != source.ClassLogonSession || hung.Deadlines != 3 || hung.Running != 3*deadline {
		t.Errorf("Exit called with %v, want one HungError for Win32_LogonSession after 3 deadlines", calls)
	}
	if out := logs.String(); !strings.Contains(out, "WMI watchdog") || !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "class=Win32_LogonSession") {
		t.Errorf("no error line for the watchdog:\n%s", out)
	}
	select {
	case d := <-timer.calls:
		t.Errorf("the watchdog armed its timer again (%v) after it fired", d)
	default:
	}
}

// TestWatchdogQuietWhenTheQueryReturns: a late query that returns before
// the limit does not make the watchdog fire.
func TestWatchdogQuietWhenTheQueryReturns(t *testing.T) {
	f := newFakeWMI(t)
	release := make(chan struct{})
	f.hang[source.ClassLogonSession] = release
	timer := newWatchdogTimer()
	exits := newExitRecorder()
	s, clk := newTestSource(t, f, Options{QueryTimeout: 20 * time.Millisecond, After: timer.after, Exit: exits.exit})
	if _, err := s.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	timer.armed(t)
	clk.Advance(time.Hour)
	close(release)
	waitIdle(t, s)
	select {
	case timer.ticks <- time.Time{}:
	case <-time.After(50 * time.Millisecond): // the watchdog already went
	}
	time.Sleep(10 * time.Millisecond)
	if calls := exits.calls(); len(calls) != 0 {
		t.Errorf("Exit called %v for a query that returned", calls)
	}
}

// TestWatchdogDefaultIsThreeDeadlines: without WatchdogDeadlines the limit
// is DefaultWatchdogDeadlines, as the documentation says.
func TestWatchdogDefaultIsThreeDeadlines(t *testing.T) {
	if DefaultWatchdogDeadlines != 3 {
		t.Errorf("DefaultWatchdogDeadlines = %d: docs/agent.md and the ADML say 3", DefaultWatchdogDeadlines)
	}
	f := newFakeWMI(t)
	release := make(chan struct{})
	defer close(release)
	f.hang[source.ClassOperatingSystem] = release
	timer := newWatchdogTimer()
	s, _ := newTestSource(t, f, Options{QueryTimeout: 10 * time.Millisecond, After: timer.after})
	if _, err := s.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := timer.armed(t); d != 30*time.Millisecond {
		t.Errorf("watchdog timer %v, want 3 deadlines (30ms)", d)
	}
}

// errorMessage returns the message of snap's error about class.
func errorMessage(snap *sessionauditv1.Snapshot, class string) string {
	for _, e := range snap.GetErrors() {
		if e.GetWmiClass() == class {
			return e.GetMessage()
		}
	}
	return ""
}

// TestSlowLogonClassesDoNotStarveServerSessions: Win32_ServerSession is
// queried before the logon classes, so a Win32_LoggedOnUser or
// Win32_LogonSession past its deadline does not cost the SMB sessions of
// the same snapshot.
func TestSlowLogonClassesDoNotStarveServerSessions(t *testing.T) {
	for _, slow := range []string{source.ClassLoggedOnUser, source.ClassLogonSession} {
		t.Run(slow, func(t *testing.T) {
			f := newFakeWMI(t)
			release := make(chan struct{})
			defer close(release)
			f.hang[slow] = release
			never := func(time.Duration) <-chan time.Time { return nil }
			s, _ := newTestSource(t, f, Options{QueryTimeout: 20 * time.Millisecond, After: never})
			c, err := s.Collect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(c.ServerSessions) != 1 {
				t.Errorf("server sessions %v: starved by the slow %s", c.ServerSessions, slow)
			}
			got := failures(c)
			if _, failed := got[source.ClassServerSession]; failed || got[slow] != kindTimeout {
				t.Errorf("failures %v, want %s TIMEOUT and Win32_ServerSession collected", got, slow)
			}
		})
	}
}

// TestPanicIsRecoveredAndLogged: a query that panics is QUERY_FAILED, the
// process goes on, and the panic is logged with its stack.
func TestPanicIsRecoveredAndLogged(t *testing.T) {
	f := newFakeWMI(t)
	f.fail[source.ClassServerSession] = errPanic
	log, logs := bufferLogger()
	s, _ := newTestSource(t, f, Options{Logger: log})
	c, err := s.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := failures(c); got[source.ClassServerSession] != kindQueryFailed {
		t.Errorf("failures %v, want Win32_ServerSession QUERY_FAILED", got)
	}
	out := logs.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "WMI query panicked") ||
		!strings.Contains(out, "VARIANT of unexpected type") || !strings.Contains(out, "goroutine") {
		t.Errorf("the panic is not logged with its value and stack:\n%s", out)
	}
	// The next snapshot works on a new connection.
	delete(f.fail, source.ClassServerSession)
	if c, err = s.Collect(context.Background()); err != nil || len(c.Failures) != 0 {
		t.Errorf("after the panic: failures %v, err %v", c.Failures, err)
	}
}

// TestSettingsTakenAtEverySnapshot: a class turned off and on again, and a
// new deadline, take effect at the next snapshot, without a new Source.
func TestSettingsTakenAtEverySnapshot(t *testing.T) {
	f := newFakeWMI(t)
	var mu sync.Mutex
	current := Settings{Disabled: []string{source.ClassServerSession}}
	set := func(s Settings) { mu.Lock(); current = s; mu.Unlock() }
	s, _ := newTestSource(t, f, Options{Settings: func() Settings { mu.Lock(); defer mu.Unlock(); return current }})

	collect := func() map[string]sessionauditv1.CollectionErrorKind {
		t.Helper()
		c, err := s.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return failures(c)
	}
	if got := collect(); got[source.ClassServerSession] != kindDisabled || len(got) != 1 {
		t.Errorf("turned off: failures %v, want Win32_ServerSession DISABLED", got)
	}
	set(Settings{})
	n := len(f.queried())
	if got := collect(); len(got) != 0 {
		t.Errorf("turned on again: failures %v, want none", got)
	}
	if q := f.queried()[n:]; !strings.Contains(strings.Join(q, ","), source.ClassServerSession) {
		t.Errorf("turned on again: queried %v, want Win32_ServerSession among them", q)
	}
	set(Settings{Disabled: []string{source.ClassLogonSession, source.ClassLoggedOnUser}})
	if got := collect(); got[source.ClassLogonSession] != kindDisabled || got[source.ClassLoggedOnUser] != kindDisabled || len(got) != 2 {
		t.Errorf("logon classes turned off: failures %v", got)
	}

	// A new deadline is used by the next query.
	release := make(chan struct{})
	defer close(release)
	f.mu.Lock()
	f.hang[source.ClassOperatingSystem] = release
	f.mu.Unlock()
	set(Settings{QueryTimeout: 15 * time.Millisecond})
	c, err := s.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var te *TimeoutError
	if !errors.As(c.Failures[0].Err, &te) || te.Timeout != 15*time.Millisecond {
		t.Errorf("first failure %v, want a TimeoutError with the new deadline 15ms", c.Failures[0].Err)
	}
}

// TestInvalidSettingsAreAnError: settings that name an unknown class make
// the snapshot fail, naming it.
func TestInvalidSettingsAreAnError(t *testing.T) {
	f := newFakeWMI(t)
	s, _ := newTestSource(t, f, Options{Settings: func() Settings { return Settings{Disabled: []string{"Win32_Process"}} }})
	if _, err := s.Collect(context.Background()); err == nil || !strings.Contains(err.Error(), "Win32_Process") {
		t.Errorf("err = %v, want one naming Win32_Process", err)
	}
}
