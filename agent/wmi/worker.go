package wmi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
)

// conn is one connection to WMI. On Windows it is a *wmi.SWbemServices;
// tests use a fake. Query is called from one goroutine at a time and may
// block for as long as WMI takes; it fills dst, a pointer to a slice of row
// structs.
type conn interface {
	Query(wql string, dst any) error
	Close() error
}

// namespaceConn is a conn that can also query a namespace other than the
// default one (root\cimv2) on the same connection. A conn without it
// answers every query in another namespace with errNoNamespace.
type namespaceConn interface {
	QueryNamespace(namespace, wql string, dst any) error
}

// errNoNamespace is the error of a query in another namespace on a conn that
// is not a namespaceConn.
var errNoNamespace = errors.New("this WMI connection cannot query another namespace")

// dialFunc makes a new connection to WMI.
type dialFunc func() (conn, error)

// TimeoutError says that a query did not answer before its deadline. The
// query goes on running on the worker until WMI returns.
type TimeoutError struct {
	// Class is the class queried.
	Class string
	// Timeout is the query's deadline, counted from its start.
	Timeout time.Duration
	// Overruns counts the queries that passed their deadline since the
	// source was made, this one included.
	Overruns int
	// WatchdogAfter is how long the query may run, from its start, before
	// the watchdog ends the agent (WatchdogDeadlines × Timeout).
	WatchdogAfter time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("query of %s did not answer within %v (queries past their deadline since the agent started: %d); "+
		"it is still running and no other query starts until it returns; the agent restarts itself if it is still running after %v",
		e.Class, e.Timeout, e.Overruns, e.WatchdogAfter)
}

// BusyError says that a query was not started because an earlier one, which
// passed its deadline, is still running.
type BusyError struct {
	// Class is the class of the query still running.
	Class string
	// Running is how long it has been running.
	Running time.Duration
	// Timeout is its deadline.
	Timeout time.Duration
	// Deadlines is how many whole deadlines it has been running
	// (Running / Timeout): the watchdog ends the agent at Limit.
	Deadlines int
	// Limit is the number of deadlines after which the watchdog ends the
	// agent (Options.WatchdogDeadlines).
	Limit int
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("not queried: the query of %s started %v ago is still running, %d of %d deadlines of %v "+
		"(WMI runs one query at a time; at %d the agent restarts itself)",
		e.Class, e.Running.Round(time.Second), e.Deadlines, e.Limit, e.Timeout, e.Limit)
}

// HungError is what the watchdog hands to Options.Exit: a query has been
// running for WatchdogDeadlines deadlines and is taken as never returning.
type HungError struct {
	// Class is the class of the query.
	Class string
	// Running is how long it has been running.
	Running time.Duration
	// Timeout is its deadline.
	Timeout time.Duration
	// Deadlines is the number of deadlines it has been running.
	Deadlines int
}

func (e *HungError) Error() string {
	return fmt.Sprintf("wmi: the query of %s has been running for %v, %d deadlines of %v: WMI is taken as hung; "+
		"the agent exits so that the service control manager restarts it",
		e.Class, e.Running.Round(time.Second), e.Deadlines, e.Timeout)
}

// worker runs the queries of a Source on one goroutine that owns the WMI
// connection, one query at a time. A caller waits for its query's answer
// until its deadline or its context is done; a query that is still running
// then makes the worker busy until it returns, and further queries fail at
// once with a BusyError. After a query that overran returns, the connection
// is closed and the next query makes a new one.
//
// A query that overran is watched: when it has been running for limit
// deadlines, the worker logs it and calls hung, once (the agent exits and
// the service control manager starts it again: a query that never returns
// would otherwise keep every class TIMEOUT forever).
type worker struct {
	dial  dialFunc
	clock clock.Clock
	log   *slog.Logger
	after func(time.Duration) <-chan time.Time
	limit int
	hung  func(error)
	reqs  chan *request
	quit  chan struct{}
	done  chan struct{} // closed when the goroutine has exited

	mu       sync.Mutex
	running  *request // the query in progress; nil when idle
	closed   bool
	closeErr error // from closing the connection, set before done closes
	overruns int   // queries that passed their deadline
	fired    bool  // the watchdog called hung
}

// workerOptions are the parts of a worker that tests replace.
type workerOptions struct {
	clock clock.Clock
	log   *slog.Logger
	// after is the watchdog's timer (time.After).
	after func(time.Duration) <-chan time.Time
	// limit is the number of deadlines after which hung is called.
	limit int
	// hung is called once, from the watchdog's goroutine, with a
	// *HungError.
	hung func(error)
}

// request is one query handed to the worker.
type request struct {
	class     string
	namespace string // "" for the connection's default namespace
	wql       string
	dst       any
	timeout   time.Duration
	started   time.Time
	overran   bool          // set by the caller when it stopped waiting; under worker.mu
	answer    chan error    // buffered: the worker never blocks on it
	returned  chan struct{} // closed by the worker when the query returned
}

// newWorker starts a worker that owns c (which may be nil: the first query
// then dials).
func newWorker(c conn, dial dialFunc, o workerOptions) *worker {
	w := &worker{
		dial:  dial,
		clock: o.clock,
		log:   o.log,
		after: o.after,
		limit: o.limit,
		hung:  o.hung,
		reqs:  make(chan *request),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go w.loop(c)
	return w
}

// loop is the worker's goroutine: it owns the connection.
func (w *worker) loop(c conn) {
	defer close(w.done)
	for {
		select {
		case <-w.quit:
			if c != nil {
				w.mu.Lock()
				w.closeErr = c.Close()
				w.mu.Unlock()
			}
			return
		case r := <-w.reqs:
			var err error
			if c == nil {
				if c, err = w.dial(); err != nil {
					c = nil
					err = fmt.Errorf("connect to WMI: %w", err)
				}
			}
			panicked := false
			if c != nil {
				var stack []byte
				panicked, stack, err = safeQuery(c, r.namespace, r.wql, r.dst)
				if panicked {
					w.log.Error("WMI query panicked: recovered; the class is reported as QUERY_FAILED and the connection is made anew",
						"class", r.class, "err", err, "stack", string(stack))
				}
			}
			w.mu.Lock()
			overran := r.overran
			w.running = nil
			w.mu.Unlock()
			close(r.returned)
			r.answer <- err
			if overran {
				w.log.Info("the WMI query that passed its deadline returned; queries resume on a new connection",
					"class", r.class, "running", w.clock.Now().Sub(r.started).Round(time.Millisecond), "err", err)
			}
			if (overran || panicked) && c != nil {
				// A query that hung or panicked may have left the
				// connection in a bad state: start afresh.
				_ = c.Close()
				c = nil
			}
		}
	}
}

// safeQuery runs c.Query, turning a panic (of the COM layer, say) into an
// error and returning the panicking goroutine's stack.
func safeQuery(c conn, namespace, wql string, dst any) (panicked bool, stack []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked, stack, err = true, debug.Stack(), fmt.Errorf("WMI query %q panicked: %v", wql, p)
		}
	}()
	if namespace == "" {
		return false, nil, c.Query(wql, dst)
	}
	nc, ok := c.(namespaceConn)
	if !ok {
		return false, nil, errNoNamespace
	}
	return false, nil, nc.QueryNamespace(namespace, wql, dst)
}

// query runs wql into dst on the worker and waits until it answers, until
// timeout has passed, or until ctx is done. When it stops waiting first it
// returns a *TimeoutError (past timeout) or ctx's error (ctx done), and dst
// must not be read: the worker still writes it. When an earlier query is
// still running it returns a *BusyError at once.
func (w *worker) query(ctx context.Context, timeout time.Duration, class, wql string, dst any) error {
	return w.queryNamespace(ctx, timeout, "", class, wql, dst)
}

// queryNamespace is query in namespace ("" for the connection's default).
func (w *worker) queryNamespace(ctx context.Context, timeout time.Duration, namespace, class, wql string, dst any) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	if r := w.running; r != nil {
		running := w.clock.Now().Sub(r.started)
		w.mu.Unlock()
		return &BusyError{Class: r.class, Running: running, Timeout: r.timeout, Deadlines: int(running / r.timeout), Limit: w.limit}
	}
	if err := ctx.Err(); err != nil {
		w.mu.Unlock()
		return err
	}
	r := &request{class: class, namespace: namespace, wql: wql, dst: dst, timeout: timeout, started: w.clock.Now(),
		answer: make(chan error, 1), returned: make(chan struct{})}
	w.running = r
	w.mu.Unlock()

	qctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The worker is idle (running was nil) and comes back to receive, unless
	// it has been told to quit.
	select {
	case w.reqs <- r:
	case <-w.quit:
		w.mu.Lock()
		w.running = nil
		w.mu.Unlock()
		return ErrClosed
	}

	select {
	case err := <-r.answer:
		return err
	case <-qctx.Done():
	}
	w.mu.Lock()
	select {
	case err := <-r.answer: // answered at the deadline: take it
		w.mu.Unlock()
		return err
	default:
	}
	r.overran = true
	w.overruns++
	overruns := w.overruns
	w.mu.Unlock()
	go w.watch(r)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("query of %s abandoned (it is still running): %w", class, err)
	}
	w.log.Warn("WMI query past its deadline: it goes on running, and no other query starts until it returns",
		"class", class, "deadline", timeout, "overruns", overruns, "watchdog_after", time.Duration(w.limit)*timeout)
	return &TimeoutError{Class: class, Timeout: timeout, Overruns: overruns, WatchdogAfter: time.Duration(w.limit) * timeout}
}

// watch is the watchdog of r, a query that passed its deadline: when r has
// been running for limit deadlines by the worker's clock, it logs and calls
// hung (once per worker). It returns when r returns or the worker closes.
func (w *worker) watch(r *request) {
	limit := time.Duration(w.limit) * r.timeout
	for {
		running := w.clock.Now().Sub(r.started)
		if running >= limit {
			w.fire(r, running)
			return
		}
		select {
		case <-w.after(limit - running):
		case <-r.returned:
			return
		case <-w.quit:
			return
		}
	}
}

// fire logs that r is hung and calls hung, unless r has returned meanwhile
// or hung was called already.
func (w *worker) fire(r *request, running time.Duration) {
	w.mu.Lock()
	if w.running != r || w.fired {
		w.mu.Unlock()
		return
	}
	w.fired = true
	w.mu.Unlock()
	err := &HungError{Class: r.class, Running: running, Timeout: r.timeout, Deadlines: int(running / r.timeout)}
	w.log.Error("WMI watchdog: a query has not returned for several deadlines; the agent exits with an error so that "+
		"the service control manager restarts it (recovery actions)",
		"class", r.class, "running", running.Round(time.Second), "deadline", r.timeout, "deadlines", err.Deadlines)
	w.hung(err)
}

// busy reports whether a query is running.
func (w *worker) busy() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running != nil
}

// close stops the worker. When it is idle, close waits for it and returns
// the error of closing the connection; when a query is still running, close
// returns at once and the worker closes the connection after the query
// returns.
func (w *worker) close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	running := w.running != nil
	close(w.quit)
	w.mu.Unlock()
	if running {
		return nil
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closeErr != nil {
		return fmt.Errorf("wmi: close connection: %w", w.closeErr)
	}
	return nil
}
