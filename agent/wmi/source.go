package wmi

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/source"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// DefaultQueryTimeout is the deadline of one query when Options.QueryTimeout
// is zero. Win32_LogonSession has been seen to take 5 to 24 seconds on busy
// servers.
const DefaultQueryTimeout = time.Minute

// ErrClosed is returned by Snapshot and Collect after Close.
var ErrClosed = errors.New("wmi: source closed")

// ErrNotWindows is returned by New on systems other than Windows.
var ErrNotWindows = errors.New("wmi: the WMI source exists only on Windows; use the simulated or fixture source")

// Options configures a Source. The zero value collects every class with the
// default deadline.
type Options struct {
	// Disabled lists classes (source.Class* constants) not to collect: each
	// is reported as DISABLED in every snapshot.
	Disabled []string
	// QueryTimeout is the deadline of each query; zero means
	// DefaultQueryTimeout.
	QueryTimeout time.Duration
	// AgentVersion is reported in Host.agent_version.
	AgentVersion string
	// Clock gives TakenAt; nil means the system clock.
	Clock clock.Clock
}

// Source takes snapshots of the local host through WMI. It implements
// source.Source; like every Source it runs one snapshot at a time.
type Source struct {
	opts        Options
	disabled    map[string]bool
	clock       clock.Clock
	w           *worker
	machineGUID func() (string, error)

	mu     sync.Mutex
	closed bool
}

// newSource validates opts and starts a Source on the connection c (made by
// dial; nil to dial at the first query), reading the machine GUID with
// machineGUID.
func newSource(opts Options, c conn, dial dialFunc, machineGUID func() (string, error)) (*Source, error) {
	disabled := make(map[string]bool, len(opts.Disabled))
	for _, class := range opts.Disabled {
		if !slices.Contains(source.Classes, class) {
			return nil, fmt.Errorf("wmi: disabled class %q is not one of %s", class, strings.Join(source.Classes, ", "))
		}
		disabled[class] = true
	}
	if opts.QueryTimeout < 0 {
		return nil, fmt.Errorf("wmi: query timeout %v is negative", opts.QueryTimeout)
	}
	if opts.QueryTimeout == 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.System{}
	}
	return &Source{
		opts:        opts,
		disabled:    disabled,
		clock:       clk,
		w:           newWorker(c, dial, clk),
		machineGUID: machineGUID,
	}, nil
}

// Snapshot collects the rows (see Collect) and builds the snapshot with
// source.BuildSnapshot.
func (s *Source) Snapshot(ctx context.Context) (*sessionauditv1.Snapshot, error) {
	c, err := s.Collect(ctx)
	if err != nil {
		return nil, err
	}
	snap, _ := source.BuildSnapshot(c)
	return snap, nil
}

// Collect reads the machine GUID and queries each enabled class in the
// order of source.Classes, each with its own deadline. A failed query
// (QUERY_FAILED) does not stop the others; a query past its deadline
// (TIMEOUT) is still running, so the classes after it are reported as
// TIMEOUT without being queried; disabled classes are DISABLED. It returns
// an error only when the source is closed, ctx is done, or the machine GUID
// cannot be read.
func (s *Source) Collect(ctx context.Context) (*source.Collection, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("wmi: snapshot: %w", err)
	}
	c := &source.Collection{TakenAt: s.clock.Now(), AgentVersion: s.opts.AgentVersion}
	guid, err := s.machineGUID()
	if err != nil {
		return nil, fmt.Errorf("wmi: snapshot: machine GUID: %w", err)
	}
	c.MachineGUID = guid

	var stuck error // the timeout or busy error that stops this pass
	for _, class := range source.Classes {
		if s.disabled[class] {
			c.Failures = append(c.Failures, source.ClassFailure{
				Class: class,
				Kind:  sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_DISABLED,
				Err:   errors.New("class not collected: turned off by configuration"),
			})
			continue
		}
		if stuck != nil {
			c.Failures = append(c.Failures, source.ClassFailure{
				Class: class,
				Kind:  sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_TIMEOUT,
				Err:   fmt.Errorf("not queried: %w", stuck),
			})
			continue
		}
		err := s.queryClass(ctx, class, c)
		if err == nil {
			continue
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("wmi: snapshot: %w", err)
		}
		if errors.Is(err, ErrClosed) {
			return nil, ErrClosed // closed while collecting
		}
		kind := sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_QUERY_FAILED
		var timeout *TimeoutError
		var busy *BusyError
		switch {
		case errors.As(err, &busy):
			kind = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_TIMEOUT
			stuck = err
		case errors.As(err, &timeout):
			kind = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_TIMEOUT
			stuck = fmt.Errorf("the query of %s is still running past its deadline", class)
		}
		c.Failures = append(c.Failures, source.ClassFailure{Class: class, Kind: kind, Err: err})
	}
	return c, nil
}

// queryClass queries one class into c.
func (s *Source) queryClass(ctx context.Context, class string, c *source.Collection) error {
	var err error
	switch class {
	case source.ClassOperatingSystem:
		var rows []source.OperatingSystemRow
		if rows, err = query[source.OperatingSystemRow](ctx, s, class); err == nil && len(rows) > 0 {
			c.OperatingSystem = &rows[0]
		}
	case source.ClassComputerSystem:
		var rows []source.ComputerSystemRow
		if rows, err = query[source.ComputerSystemRow](ctx, s, class); err == nil && len(rows) > 0 {
			c.ComputerSystem = &rows[0]
		}
	case source.ClassLogonSession:
		c.LogonSessions, err = query[source.LogonSessionRow](ctx, s, class)
	case source.ClassLoggedOnUser:
		c.LoggedOnUsers, err = query[source.LoggedOnUserRow](ctx, s, class)
	case source.ClassServerSession:
		c.ServerSessions, err = query[source.ServerSessionRow](ctx, s, class)
	default:
		err = fmt.Errorf("no query for class %s", class)
	}
	return err
}

// query runs SelectQuery(class, Row) on the worker and returns its rows.
func query[Row any](ctx context.Context, s *Source, class string) ([]Row, error) {
	var rows []Row
	if err := s.w.query(ctx, s.opts.QueryTimeout, class, SelectQuery[Row](class), &rows); err != nil {
		return nil, err // rows may still be written by the worker: drop them
	}
	return rows, nil
}

// SelectQuery returns the WQL query that selects, from class, the properties
// named by the exported fields of Row (a struct): "SELECT A, B FROM class".
func SelectQuery[Row any](class string) string {
	t := reflect.TypeFor[Row]()
	var props []string
	for f := range t.Fields() {
		if f.IsExported() {
			props = append(props, f.Name)
		}
	}
	return "SELECT " + strings.Join(props, ", ") + " FROM " + class
}

// Close stops the worker and closes the WMI connection; Snapshot fails
// afterwards. When a query is still running past its deadline, Close does
// not wait for it: the connection is closed when it returns.
func (s *Source) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.w.close()
}
