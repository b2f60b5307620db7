package wmi

import (
	"context"
	"fmt"
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

// dialFunc makes a new connection to WMI.
type dialFunc func() (conn, error)

// TimeoutError says that a query did not answer before its deadline. The
// query goes on running on the worker until WMI returns.
type TimeoutError struct {
	// Class is the class queried.
	Class string
	// Timeout is the query's deadline, counted from its start.
	Timeout time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("query of %s did not answer within %v; it is still running and no other query starts until it returns", e.Class, e.Timeout)
}

// BusyError says that a query was not started because an earlier one, which
// passed its deadline, is still running.
type BusyError struct {
	// Class is the class of the query still running.
	Class string
	// Running is how long it has been running.
	Running time.Duration
}

func (e *BusyError) Error() string {
	return fmt.Sprintf("not queried: the query of %s started %v ago is still running (WMI runs one query at a time)", e.Class, e.Running.Round(time.Second))
}

// worker runs the queries of a Source on one goroutine that owns the WMI
// connection, one query at a time. A caller waits for its query's answer
// until its context is done; a query that is still running then makes the
// worker busy until it returns, and further queries fail at once with a
// BusyError. After a query that overran returns, the connection is closed
// and the next query makes a new one.
type worker struct {
	dial  dialFunc
	clock clock.Clock
	reqs  chan *request
	quit  chan struct{}
	done  chan struct{} // closed when the goroutine has exited

	mu       sync.Mutex
	running  *request // the query in progress; nil when idle
	closed   bool
	closeErr error // from closing the connection, set before done closes
}

// request is one query handed to the worker.
type request struct {
	class   string
	wql     string
	dst     any
	started time.Time
	overran bool       // set by the caller when it stopped waiting; under worker.mu
	answer  chan error // buffered: the worker never blocks on it
}

// newWorker starts a worker that owns c (which may be nil: the first query
// then dials).
func newWorker(c conn, dial dialFunc, clk clock.Clock) *worker {
	w := &worker{
		dial:  dial,
		clock: clk,
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
				panicked, err = safeQuery(c, r.wql, r.dst)
			}
			w.mu.Lock()
			overran := r.overran
			w.running = nil
			w.mu.Unlock()
			r.answer <- err
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
// error.
func safeQuery(c conn, wql string, dst any) (panicked bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked, err = true, fmt.Errorf("WMI query %q panicked: %v", wql, p)
		}
	}()
	return false, c.Query(wql, dst)
}

// query runs wql into dst on the worker and waits until it answers, until
// timeout has passed, or until ctx is done. When it stops waiting first it
// returns a *TimeoutError (past timeout) or ctx's error (ctx done), and dst
// must not be read: the worker still writes it. When an earlier query is
// still running it returns a *BusyError at once.
func (w *worker) query(ctx context.Context, timeout time.Duration, class, wql string, dst any) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	if r := w.running; r != nil {
		w.mu.Unlock()
		return &BusyError{Class: r.class, Running: w.clock.Now().Sub(r.started)}
	}
	if err := ctx.Err(); err != nil {
		w.mu.Unlock()
		return err
	}
	r := &request{class: class, wql: wql, dst: dst, started: w.clock.Now(), answer: make(chan error, 1)}
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
	w.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("query of %s abandoned (it is still running): %w", class, err)
	}
	return &TimeoutError{Class: class, Timeout: timeout}
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
