package run

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/change"
	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/source"
	"github.com/sessionaudit/sessionaudit/agent/spool"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// SpoolDir is the name of the spool's directory under the state directory.
const SpoolDir = "spool"

// Options configure Run. Source, Watcher and StateDir are required.
type Options struct {
	// Source takes the snapshots. Run does not close it.
	Source source.Source
	// Watcher gives the settings and their changes. Run calls its Run
	// (once: a Watcher serves one agent).
	Watcher *config.Watcher
	// ReloadTicks drive the Watcher's reloads; nil means every
	// config.DefaultReloadInterval.
	ReloadTicks <-chan time.Time
	// StateDir holds the identity and the spool (see the package comment);
	// DefaultStateDir in production.
	StateDir string
	// Clock tells the time (taken_at of simulated sources, resync interval,
	// certificate expiry); nil means the system clock.
	Clock clock.Clock
	// After returns a channel that receives after d: the poll timer. Nil
	// means time.After. Tests return a channel they feed.
	After func(d time.Duration) <-chan time.Time
	// Logger receives the agent's logs; nil means slog.Default().
	Logger *slog.Logger
	// LogLevel, when set, is kept at the LogLevel setting: pass the
	// LevelVar of Logger's handler.
	LogLevel *slog.LevelVar
	// Uplink, when set, adjusts the uplink client's options before each
	// client is made (tests: ServerName, Backoff; the fleet simulator: a
	// dialer).
	Uplink func(*uplink.Options)
	// Version is the agent's version, for its log; the command passes the
	// version its build was stamped with.
	Version string
	// OnReport, when set, is called with each report after it is spooled,
	// from Run's goroutine; it must not keep or modify the report.
	OnReport func(*pb.Report)
}

// Run collects and reports until ctx is done, then stops cleanly (the
// pump's call in flight is cancelled, the spool closed) and returns nil.
// It returns an error only when it cannot start: a missing option, a spool
// that cannot be opened. Failures afterwards (a snapshot, the collector)
// are logged and retried, never returned: the agent keeps collecting.
func Run(ctx context.Context, opts Options) error {
	if opts.Source == nil {
		return errors.New("run: no source")
	}
	if opts.Watcher == nil {
		return errors.New("run: no settings watcher")
	}
	if opts.StateDir == "" {
		return errors.New("run: no state directory")
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
	log := opts.Logger

	settings, warnings := opts.Watcher.Current()
	if opts.LogLevel != nil {
		opts.LogLevel.Set(settings.LogLevel)
	}
	log.Info("agent starting", "version", opts.Version, "state_dir", opts.StateDir, "settings", settings)
	logWarnings(log, warnings)

	spoolDir := filepath.Join(opts.StateDir, SpoolDir)
	sp, err := spool.Open(spoolDir, spool.Options{MaxBytes: settings.SpoolMaxBytes})
	if err != nil {
		return fmt.Errorf("run: open the spool in %s: %w", spoolDir, err)
	}
	defer func() {
		if err := sp.Close(); err != nil {
			log.Error("closing the spool", "dir", spoolDir, "err", err)
		}
	}()
	if sp.IncarnationCreated() {
		log.Info("spool incarnation made: a new spool, or the first start of an agent that keeps one; "+
			"the collector numbers this spool's reports apart from any earlier spool's",
			"incarnation", fmt.Sprintf("%016x", sp.Incarnation()))
	}
	st := sp.Stats()
	log.Info("spool opened", "dir", spoolDir, "next_sequence", sp.NextSequence(), "acknowledged", st.Acknowledged,
		"segments", st.Segments, "bytes", st.Bytes, "corrupt_bytes", st.CorruptBytes, "torn_bytes", st.TornBytes,
		"lost_reports", st.LostReports, "needs_resync", sp.NeedsResync())
	for _, l := range st.Lost {
		// One line per run of lost reports not yet delivered: what the
		// collector will record as a coverage gap of the host.
		if l.Reason == pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_OVERFLOW {
			log.Warn("spool full earlier: reports were dropped; the reports after them are still delivered and the collector records the gap",
				"first_sequence", l.FirstSequence, "last_sequence", l.LastSequence, "lost_reports", l.Reports(),
				"next_sequence", l.NextSequence)
			continue
		}
		log.Warn("spool damaged: reports lost; the reports after them are still delivered and the collector records the gap",
			"first_sequence", l.FirstSequence, "last_sequence", l.LastSequence, "lost_reports", l.Reports(),
			"next_sequence", l.NextSequence, "damaged_bytes", l.Bytes, "segments", l.Segments)
	}

	tracker, err := change.NewTracker(change.Options{
		FirstSequence:  sp.NextSequence(),
		ResyncInterval: settings.ResyncInterval,
		Clock:          opts.Clock,
	})
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	a := &loop{opts: opts, log: log, spool: sp, tracker: tracker, settings: settings,
		notify: make(chan struct{}, 1), uplinkCfg: make(chan uplinkConfig, 1), wake: make(chan struct{}, 1),
		dropped: st.DroppedReports, droppedBytes: st.DroppedBytes}

	// The Watcher.
	ticks := opts.ReloadTicks
	if ticks == nil {
		t := time.NewTicker(config.DefaultReloadInterval)
		defer t.Stop()
		ticks = t.C
	}
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		_ = opts.Watcher.Run(ctx, ticks)
	}()
	// The uplink.
	up := &uplinkSupervisor{loop: a, cfg: a.uplinkCfg}
	upDone := make(chan struct{})
	go func() {
		defer close(upDone)
		up.run(ctx)
	}()

	a.pollLoop(ctx)
	cancel()
	<-upDone
	<-watchDone
	log.Info("agent stopped", "next_sequence", sp.NextSequence())
	return nil
}

// loop is the state of one Run, owned by its goroutine unless noted.
type loop struct {
	opts     Options
	log      *slog.Logger
	spool    *spool.Spool
	tracker  *change.Tracker
	settings config.Settings

	// host is the host of the last snapshot, for the uplink (Enroll needs
	// the machine GUID). Shared.
	host atomic.Pointer[pb.Host]
	// resync is set by the pump (the collector asked for a Snapshot).
	// Shared.
	resync atomic.Bool
	// notify wakes the pump after an append.
	notify chan struct{}
	// wake makes the poll loop poll at once (after the pump moved the
	// spool past the collector's mark: renumber.go). Nil in tests that
	// call poll themselves.
	wake chan struct{}
	// uplinkCfg carries the uplink's settings to its supervisor.
	uplinkCfg chan uplinkConfig
	// snapshotFailures counts consecutive failed snapshots.
	snapshotFailures int
	// dropped and droppedBytes are the spool's drops on overflow over its
	// life (Stats.DroppedReports, DroppedBytes) already logged.
	dropped      uint64
	droppedBytes int64
}

// pollLoop polls every PollInterval and applies settings changes, until
// ctx is done.
func (a *loop) pollLoop(ctx context.Context) {
	updates := a.opts.Watcher.Updates()
	for {
		a.poll(ctx)
		timer := a.opts.After(a.settings.PollInterval)
	wait:
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer:
				break wait
			case <-a.wake:
				break wait
			case u, ok := <-updates:
				if !ok {
					updates = nil
					continue
				}
				if a.apply(u) {
					timer = a.opts.After(a.settings.PollInterval)
				}
			}
		}
	}
}

// poll takes one snapshot and spools its report.
func (a *loop) poll(ctx context.Context) {
	if a.host.Load() == nil {
		// First poll: hand the uplink its settings once the host is known.
		defer func() {
			if a.host.Load() != nil {
				a.sendUplinkConfig()
			}
		}()
	}
	snap, err := a.opts.Source.Snapshot(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		a.snapshotFailures++
		a.log.Error("no snapshot this poll: the source failed; retrying at the next poll",
			"consecutive_failures", a.snapshotFailures, "err", err)
		return
	}
	if a.snapshotFailures > 0 {
		a.log.Info("snapshots work again", "after_failures", a.snapshotFailures)
		a.snapshotFailures = 0
	}
	disable(snap, a.settings)
	a.host.Store(snap.GetHost())
	if a.resync.Swap(false) {
		a.tracker.RequestResync()
	}
	rep := a.spoolReport(snap)
	if rep == nil {
		return
	}
	if st := a.spool.Stats(); st.DroppedReports > a.dropped {
		// The spool dropped reports to stay in its bound.
		args := []any{"dropped_reports", st.DroppedReports - a.dropped, "dropped_bytes", st.DroppedBytes - a.droppedBytes,
			"spool_max_mb", a.settings.SpoolMaxBytes >> 20}
		for _, l := range st.Lost {
			if l.Reason == pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_OVERFLOW {
				// The run the first report kept carries to the collector.
				args = append(args, "first_sequence", l.FirstSequence, "last_sequence", l.LastSequence, "next_sequence", l.NextSequence)
			}
		}
		a.log.Warn("spool full: the oldest reports were dropped; the first report kept names them and the collector "+
			"records a coverage gap", args...)
		a.dropped, a.droppedBytes = st.DroppedReports, st.DroppedBytes
	}
	if a.spool.NeedsResync() {
		// Reports the collector needs were dropped: a full Snapshot next.
		a.tracker.RequestResync()
	}
	select {
	case a.notify <- struct{}{}:
	default:
	}
	a.log.Debug("report spooled", "sequence", rep.GetSequence(), "kind", rep.ContentName(),
		"logon_sessions", len(snap.GetLogonSessions()), "server_sessions", len(snap.GetServerSessions()),
		"errors", len(snap.GetErrors()))
	if a.opts.OnReport != nil {
		a.opts.OnReport(rep)
	}
}

// apply takes new settings into use and reports whether the poll interval
// changed.
func (a *loop) apply(u config.Update) (pollChanged bool) {
	old, s := a.settings, u.Settings
	var changed []string
	for _, d := range config.Definitions {
		if old.Value(d.Name) != s.Value(d.Name) || old.Origin(d.Name) != s.Origin(d.Name) ||
			(d.Secret && old.EnrollmentSecret.Reveal() != s.EnrollmentSecret.Reveal()) {
			changed = append(changed, fmt.Sprintf("%s=%s (from %s)", d.Name, s.Value(d.Name), s.Origin(d.Name)))
		}
	}
	a.settings = s
	logWarnings(a.log, u.Warnings)
	if len(changed) == 0 {
		return false
	}
	a.log.Info("settings changed", "changed", changed)
	if s.PollInterval != old.PollInterval {
		pollChanged = true
	}
	if s.ResyncInterval != old.ResyncInterval {
		a.tracker.SetResyncInterval(s.ResyncInterval)
	}
	if s.LogLevel != old.LogLevel && a.opts.LogLevel != nil {
		a.opts.LogLevel.Set(s.LogLevel)
	}
	if s.SpoolMaxBytes != old.SpoolMaxBytes {
		a.log.Warn("SpoolMaxMB changed: the new bound takes effect when the agent restarts",
			"spool_max_mb", s.SpoolMaxBytes>>20, "in_use_mb", old.SpoolMaxBytes>>20)
	}
	if a.host.Load() != nil {
		a.sendUplinkConfig()
	}
	return pollChanged
}

// sendUplinkConfig hands the uplink settings to the supervisor, replacing
// any it has not taken yet.
func (a *loop) sendUplinkConfig() {
	c := uplinkConfigOf(a.settings)
	for {
		select {
		case a.uplinkCfg <- c:
			return
		default:
		}
		select {
		case <-a.uplinkCfg:
		default:
		}
	}
}

// disable removes from snap the session classes that s turns off and
// records them as DISABLED, unless the source already did.
func disable(snap *pb.Snapshot, s config.Settings) {
	for _, class := range s.DisabledClasses() {
		switch class {
		case source.ClassLogonSession:
			snap.LogonSessions = nil
		case source.ClassServerSession:
			snap.ServerSessions = nil
		}
		if slices.ContainsFunc(snap.Errors, func(e *pb.CollectionError) bool {
			return e.GetWmiClass() == class && e.GetKind() == pb.CollectionErrorKind_COLLECTION_ERROR_KIND_DISABLED
		}) {
			continue
		}
		snap.Errors = append(snap.Errors, &pb.CollectionError{
			Kind: pb.CollectionErrorKind_COLLECTION_ERROR_KIND_DISABLED, WmiClass: class,
			Message: "class not collected: turned off by configuration",
		})
	}
}

func logWarnings(log *slog.Logger, ws []config.Warning) {
	for _, w := range ws {
		log.Warn("setting ignored: using the next layer's value or the default", "warning", w.String())
	}
}
