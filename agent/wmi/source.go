package wmi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/source"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// DefaultQueryTimeout is the deadline of one query when the settings give
// none. Win32_LogonSession has been seen to take 5 to 24 seconds on busy
// servers.
const DefaultQueryTimeout = time.Minute

// DefaultWatchdogDeadlines is Options.WatchdogDeadlines when zero: a query
// still running after this many deadlines is taken as hung, and the agent
// exits so that the service control manager restarts it.
const DefaultWatchdogDeadlines = 3

// ExitWatchdog is the exit code of the process when the watchdog fires and
// Options.Exit is nil.
const ExitWatchdog = 3

// ErrClosed is returned by Snapshot and Collect after Close.
var ErrClosed = errors.New("wmi: source closed")

// ErrNotWindows is returned by New on systems other than Windows.
var ErrNotWindows = errors.New("wmi: the WMI source exists only on Windows; use the simulated or fixture source")

// QueryOrder is the order in which a Source queries the classes: the host's
// two single-instance classes, then Win32_ServerSession, then the logon
// classes. WMI runs one query at a time, and a query past its deadline
// keeps the classes after it from being queried until it returns: the
// logon classes, which have taken 5 to 24 seconds on busy servers, come
// last, so that a slow Win32_LogonSession or Win32_LoggedOnUser does not
// cost the SMB sessions of the same snapshot.
var QueryOrder = []string{
	source.ClassOperatingSystem,
	source.ClassComputerSystem,
	source.ClassServerSession,
	source.ClassLogonSession,
	source.ClassLoggedOnUser,
}

// Settings are what a Source takes from the agent's settings at every
// snapshot.
type Settings struct {
	// Disabled lists classes (source.Class* constants) not to collect: each
	// is reported as DISABLED.
	Disabled []string
	// QueryTimeout is the deadline of each query; zero means
	// DefaultQueryTimeout.
	QueryTimeout time.Duration
}

// Options configures a Source. The zero value collects every class with the
// default deadline.
type Options struct {
	// Settings, when set, is called at the start of every snapshot and its
	// result used for that snapshot, so that a class turned off and on
	// again, or a new deadline, takes effect without a restart. When nil,
	// Disabled and QueryTimeout are used.
	Settings func() Settings
	// Disabled lists classes (source.Class* constants) not to collect when
	// Settings is nil.
	Disabled []string
	// QueryTimeout is the deadline of each query when Settings is nil; zero
	// means DefaultQueryTimeout.
	QueryTimeout time.Duration
	// WatchdogDeadlines is the number of deadlines after which a query that
	// has not returned is taken as hung; zero means
	// DefaultWatchdogDeadlines.
	WatchdogDeadlines int
	// Exit is called once, by the watchdog, with a *HungError, after the
	// error has been logged. It must end the process with a non-zero exit
	// code, at once or after stopping cleanly: the service control manager
	// then starts the agent again. Nil means os.Exit(ExitWatchdog).
	Exit func(error)
	// SIDBudget is how long a snapshot waits at most for the SID lookups of
	// accounts it has not met before; zero means DefaultSIDBudget.
	SIDBudget time.Duration
	// AgentVersion is reported in Host.agent_version.
	AgentVersion string
	// CountSessionProcesses makes every snapshot that lists logon sessions
	// of an interactive, RDP or cached type also query
	// Win32_SessionProcess, last, with the same deadline, and mark the
	// sessions with no process left as lingering (source.Lingering;
	// docs/agent.md, "Lingering logon sessions"). A failure of that query
	// is logged and keeps the previous verdicts; it is no collection error.
	CountSessionProcesses bool
	// Clock gives TakenAt and measures how long a query has been running;
	// nil means the system clock.
	Clock clock.Clock
	// After is the watchdog's timer; nil means time.After.
	After func(time.Duration) <-chan time.Time
	// Logger receives the source's log lines (a query past its deadline,
	// the watchdog, a recovered panic); nil means slog.Default().
	Logger *slog.Logger
}

// platform is what New takes from the operating system: tests replace it.
type platform struct {
	// dial makes a connection to WMI.
	dial dialFunc
	// machineGUID reads the machine GUID.
	machineGUID func() (string, error)
	// smbiosUUID reads Win32_ComputerSystemProduct.UUID, raw; nil when the
	// platform has none (tests, other systems).
	smbiosUUID func() (string, error)
	// lookupSID resolves an account to its SID.
	lookupSID lookupSIDFunc
}

// Source takes snapshots of the local host through WMI. It implements
// source.Source; like every Source it runs one snapshot at a time.
type Source struct {
	opts        Options
	clock       clock.Clock
	log         *slog.Logger
	w           *worker
	sids        *sidResolver
	machineGUID func() (string, error)
	smbios      smbiosReader
	lingering   source.Lingering // since when each session has been lingering (Snapshot)
	fallback    string           // the last SmbFallbackReason logged (Collect)

	mu     sync.Mutex
	closed bool
}

// newSource validates opts and starts a Source on the connection c (made by
// p.dial; nil to dial at the first query).
func newSource(opts Options, c conn, p platform) (*Source, error) {
	if opts.Settings == nil {
		static := Settings{Disabled: slices.Clone(opts.Disabled), QueryTimeout: opts.QueryTimeout}
		if _, err := static.check(); err != nil {
			return nil, err
		}
		opts.Settings = func() Settings { return static }
	}
	if opts.WatchdogDeadlines < 0 {
		return nil, fmt.Errorf("wmi: watchdog deadlines %d is negative", opts.WatchdogDeadlines)
	}
	if opts.WatchdogDeadlines == 0 {
		opts.WatchdogDeadlines = DefaultWatchdogDeadlines
	}
	if opts.SIDBudget <= 0 {
		opts.SIDBudget = DefaultSIDBudget
	}
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Exit == nil {
		opts.Exit = func(error) { os.Exit(ExitWatchdog) }
	}
	s := &Source{
		opts:  opts,
		clock: opts.Clock,
		log:   opts.Logger,
		w: newWorker(c, p.dial, workerOptions{
			clock: opts.Clock, log: opts.Logger, after: opts.After, limit: opts.WatchdogDeadlines, hung: opts.Exit,
		}),
		machineGUID: p.machineGUID,
		smbios:      smbiosReader{read: p.smbiosUUID},
	}
	if p.lookupSID != nil {
		s.sids = newSIDResolver(p.lookupSID, opts.Clock, opts.Logger)
	}
	return s, nil
}

// check validates s and returns the set of disabled classes and the
// deadline to use.
func (s Settings) check() (queryPlan, error) {
	plan := queryPlan{disabled: make(map[string]bool, len(s.Disabled)), timeout: s.QueryTimeout}
	for _, class := range s.Disabled {
		if !slices.Contains(source.Classes, class) {
			return queryPlan{}, fmt.Errorf("wmi: disabled class %q is not one of %s", class, strings.Join(source.Classes, ", "))
		}
		plan.disabled[class] = true
	}
	if s.QueryTimeout < 0 {
		return queryPlan{}, fmt.Errorf("wmi: query timeout %v is negative", s.QueryTimeout)
	}
	if plan.timeout == 0 {
		plan.timeout = DefaultQueryTimeout
	}
	return plan, nil
}

// queryPlan is what one snapshot uses of Settings.
type queryPlan struct {
	disabled map[string]bool
	timeout  time.Duration
}

// Snapshot collects the rows (see Collect), builds the snapshot with
// source.BuildSnapshot and gives the accounts of its logon sessions their
// SIDs (those known, or found within Options.SIDBudget).
func (s *Source) Snapshot(ctx context.Context) (*sessionauditv1.Snapshot, error) {
	c, err := s.Collect(ctx)
	if err != nil {
		return nil, err
	}
	snap, _ := source.BuildSnapshot(c)
	if !slices.ContainsFunc(c.Failures, func(f source.ClassFailure) bool { return f.Class == source.ClassLogonSession }) {
		var counts map[string]int
		if c.SessionProcessesCounted {
			var bad int
			if counts, bad = source.CountSessionProcesses(c.SessionProcesses); bad > 0 {
				s.log.Warn("Win32_SessionProcess links without a logon session's LogonId: skipped", "links", bad)
			}
		}
		s.lingering.Mark(snap.GetLogonSessions(), counts, c.TakenAt)
	}
	if s.sids != nil {
		if late := s.sids.fill(ctx, snap.GetLogonSessions(), s.opts.SIDBudget); late > 0 {
			s.log.Info("SID lookups still running: these accounts are reported without a SID this time",
				"accounts", late, "budget", s.opts.SIDBudget)
		}
	}
	return snap, nil
}

// Collect reads the machine GUID and queries each enabled class in
// QueryOrder, each with its own deadline, with the settings in force now
// (Options.Settings). A failed query (QUERY_FAILED) does not stop the
// others; a query past its deadline (TIMEOUT) is still running, so the
// classes after it are reported as TIMEOUT without being queried; disabled
// classes are DISABLED. Failures are listed in the order of
// source.Classes. It returns an error only when the source is closed, ctx
// is done, the settings are not valid, or the machine GUID cannot be read.
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
	plan, err := s.opts.Settings().check()
	if err != nil {
		return nil, err
	}
	c := &source.Collection{TakenAt: s.clock.Now(), AgentVersion: s.opts.AgentVersion}
	guid, err := s.machineGUID()
	if err != nil {
		return nil, fmt.Errorf("wmi: snapshot: machine GUID: %w", err)
	}
	c.MachineGUID = guid
	c.SMBIOSUUID = s.smbios.get(s.log)

	failed := make(map[string]source.ClassFailure)
	var stuck error // the timeout or busy error that stops this pass
	for _, class := range QueryOrder {
		if plan.disabled[class] {
			failed[class] = source.ClassFailure{
				Class: class,
				Kind:  sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_DISABLED,
				Err:   errors.New("class not collected: turned off by configuration"),
			}
			continue
		}
		if stuck != nil {
			failed[class] = source.ClassFailure{
				Class: class,
				Kind:  sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_TIMEOUT,
				Err:   fmt.Errorf("not queried: %w", stuck),
			}
			continue
		}
		err := s.queryClass(ctx, plan.timeout, class, c)
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
		failed[class] = source.ClassFailure{Class: class, Kind: kind, Err: err}
	}
	for _, class := range source.Classes {
		if f, ok := failed[class]; ok {
			c.Failures = append(c.Failures, f)
		}
	}
	if _, logonFailed := failed[source.ClassLogonSession]; s.opts.CountSessionProcesses && stuck == nil && !logonFailed &&
		slices.ContainsFunc(c.LogonSessions, func(r source.LogonSessionRow) bool { return source.LingeringType(r.LogonType) }) {
		rows, err := query[source.SessionProcessRow](ctx, s, plan.timeout, source.ClassSessionProcess)
		switch {
		case err == nil:
			c.SessionProcesses, c.SessionProcessesCounted = rows, true
		case ctx.Err() != nil:
			return nil, fmt.Errorf("wmi: snapshot: %w", err)
		case errors.Is(err, ErrClosed):
			return nil, ErrClosed
		default:
			s.log.Warn("Win32_SessionProcess not counted: lingering logon sessions keep the previous verdict", "error", err)
		}
	}
	return c, nil
}

// queryClass queries one class into c, with the deadline timeout.
func (s *Source) queryClass(ctx context.Context, timeout time.Duration, class string, c *source.Collection) error {
	var err error
	switch class {
	case source.ClassOperatingSystem:
		var rows []source.OperatingSystemRow
		if rows, err = query[source.OperatingSystemRow](ctx, s, timeout, class); err == nil && len(rows) > 0 {
			c.OperatingSystem = &rows[0]
		}
	case source.ClassComputerSystem:
		var rows []source.ComputerSystemRow
		if rows, err = query[source.ComputerSystemRow](ctx, s, timeout, class); err == nil && len(rows) > 0 {
			c.ComputerSystem = &rows[0]
		}
	case source.ClassLogonSession:
		c.LogonSessions, err = query[source.LogonSessionRow](ctx, s, timeout, class)
	case source.ClassLoggedOnUser:
		c.LoggedOnUsers, err = query[source.LoggedOnUserRow](ctx, s, timeout, class)
	case source.ClassServerSession:
		return s.queryServerSessions(ctx, timeout, c)
	default:
		err = fmt.Errorf("no query for class %s", class)
	}
	return err
}

// queryServerSessions reads the server sessions into c: from
// MSFT_SmbSession (source.NamespaceSMB) where the host has it, else from
// Win32_ServerSession, noting why in c.SmbFallbackReason. A query of
// MSFT_SmbSession past its deadline is not followed by the fallback (the
// worker is still busy with it): its error is returned.
func (s *Source) queryServerSessions(ctx context.Context, timeout time.Duration, c *source.Collection) error {
	var rows []source.SmbSessionRow
	err := s.w.queryNamespace(ctx, timeout, source.NamespaceSMB, source.ClassSmbSession,
		SelectQuery[source.SmbSessionRow](source.ClassSmbSession), &rows)
	if err == nil {
		c.SmbSessions, c.ServerSessionSource = rows, source.ClassSmbSession
		s.noteFallback("")
		return nil
	}
	var timeoutErr *TimeoutError
	var busy *BusyError
	if ctx.Err() != nil || errors.Is(err, ErrClosed) || errors.As(err, &timeoutErr) || errors.As(err, &busy) {
		return fmt.Errorf("%s: %w", source.ClassSmbSession, err)
	}
	c.SmbFallbackReason = fmt.Sprintf("%s in %s: %v", source.ClassSmbSession, source.NamespaceSMB, err)
	s.noteFallback(c.SmbFallbackReason)
	c.ServerSessionSource = source.ClassServerSession
	if c.ServerSessions, err = query[source.ServerSessionRow](ctx, s, timeout, source.ClassServerSession); err != nil {
		return fmt.Errorf("%w (after %s)", err, c.SmbFallbackReason)
	}
	return nil
}

// noteFallback logs reason when it differs from the last one (so that a host
// without the SMB namespace logs it once, not at every snapshot).
func (s *Source) noteFallback(reason string) {
	if reason == s.fallback {
		return
	}
	s.fallback = reason
	if reason != "" {
		s.log.Warn("server sessions read from Win32_ServerSession instead of MSFT_SmbSession", "reason", reason)
	} else {
		s.log.Info("server sessions read from MSFT_SmbSession")
	}
}

// query runs SelectQuery(class, Row) on the worker and returns its rows.
func query[Row any](ctx context.Context, s *Source, timeout time.Duration, class string) ([]Row, error) {
	var rows []Row
	if err := s.w.query(ctx, timeout, class, SelectQuery[Row](class), &rows); err != nil {
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
	if s.sids != nil {
		s.sids.close()
	}
	return s.w.close()
}
