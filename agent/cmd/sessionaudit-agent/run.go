package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/fixture"
	"github.com/sessionaudit/sessionaudit/agent/run"
	"github.com/sessionaudit/sessionaudit/agent/service"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/agent/source"
	"github.com/sessionaudit/sessionaudit/agent/wmi"
)

// Source names for -source.
const (
	sourceWMI      = "wmi"
	sourceSimulate = "simulate"
	sourceFixture  = "fixture"
)

// defaultSource is wmi on Windows, simulate elsewhere (the Linux build is
// for tests and demonstrations).
func defaultSource() string {
	if runtime.GOOS == "windows" {
		return sourceWMI
	}
	return sourceSimulate
}

// runFlags are the flags of run (and install, which registers them).
type runFlags struct {
	fs         *flag.FlagSet
	layer      *config.FlagLayer
	configPath string
	stateDir   string
	source     string
	fixture    string
	profile    string
	seed       uint64
	service    bool
	logFile    string
}

func newRunFlags(name string, stderr io.Writer) *runFlags {
	f := &runFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.fs.SetOutput(stderr)
	f.layer = config.RegisterFlags(f.fs)
	f.fs.StringVar(&f.configPath, "config", "", "Path of the config file (default "+config.DefaultFilePath()+
		"; a missing default file is not an error, a missing named file is).")
	f.fs.StringVar(&f.stateDir, "state-dir", run.DefaultStateDir(), "Directory of the agent's identity and spool.")
	f.fs.StringVar(&f.source, "source", defaultSource(), "Where sessions come from: wmi (Windows), simulate, or fixture (replay -fixture FILE; used under Wine).")
	f.fs.StringVar(&f.fixture, "fixture", "", "Fixture file (JSON lines of snapshots) replayed by -source fixture, looping.")
	f.fs.StringVar(&f.profile, "simulate-profile", "workstation", "Simulated host: workstation, server, fileserver or dc.")
	f.fs.Uint64Var(&f.seed, "simulate-seed", 1, "Seed of the simulated host (same seed, same host).")
	f.fs.BoolVar(&f.service, "service", false, "Run under the Windows service control manager even if it is not detected "+
		"(Wine; the installed service's command line has it).")
	f.fs.StringVar(&f.logFile, "log-file", "", "Append the log to this file instead of standard error "+
		"(default for the Windows service: agent.log in the state directory).")
	return f
}

func (f *runFlags) parse(args []string) error {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if f.fs.NArg() > 0 {
		return usagef("unexpected arguments %q", f.fs.Args())
	}
	switch f.source {
	case sourceWMI, sourceSimulate:
	case sourceFixture:
		if f.fixture == "" {
			return usagef("-source fixture needs -fixture FILE")
		}
	default:
		return usagef("-source %q: want wmi, simulate or fixture", f.source)
	}
	if _, err := simulate.ParseProfile(f.profile); err != nil {
		return usageError{err}
	}
	if f.stateDir == "" {
		return usagef("-state-dir must not be empty")
	}
	return nil
}

// layers returns the configuration layers, highest first: policy (Group
// Policy in production, config.NewPolicyLayer), the config file, the
// installer's settings (the MSI's, config.NewInstallerLayer), the flags.
func (f *runFlags) layers(policy, installer config.Layer) []config.Layer {
	file := config.FileLayer{Path: f.configPath, MustExist: f.configPath != ""}
	return []config.Layer{policy, file, installer, f.layer}
}

// newSource makes the source named by the flags. The WMI source takes the
// watcher's current settings at every snapshot, and calls exit when its
// watchdog finds a query hung.
func (f *runFlags) newSource(watcher *config.Watcher, clk clock.Clock, log *slog.Logger, exit func(error)) (source.Source, error) {
	switch f.source {
	case sourceWMI:
		src, err := wmi.New(wmi.Options{Settings: wmiSettings(watcher), Exit: exit, AgentVersion: version, Clock: clk, Logger: log,
			CountSessionProcesses: true})
		if err != nil {
			return nil, fmt.Errorf("WMI source: %w", err)
		}
		return src, nil
	case sourceFixture:
		return fixture.Open(f.fixture, fixture.Options{AtEnd: fixture.Loop, Clock: clk})
	default:
		p, _ := simulate.ParseProfile(f.profile)
		return simulate.New(simulate.Config{Seed: f.seed, Profile: p, Clock: clk, AgentVersion: version})
	}
}

// wmiSettings returns what the WMI source takes from the watcher's current
// settings, read at every snapshot: a class turned off and on again, or a
// new QueryTimeoutSeconds, takes effect without a restart.
func wmiSettings(watcher *config.Watcher) func() wmi.Settings {
	return func() wmi.Settings {
		s, _ := watcher.Current()
		return wmi.Settings{Disabled: s.DisabledClasses(), QueryTimeout: s.QueryTimeout}
	}
}

// forceExitAfter bounds the clean stop that follows the WMI watchdog: the
// process exits with exitError after it, stopped or not.
var forceExitAfter = 30 * time.Second

// watchdogExit returns the WMI source's Options.Exit: it stops the program
// (cancel with the watchdog's error as cause, which the program returns, so
// that the service reports a failure and the service control manager
// restarts it), and exits the process after forceExitAfter if the stop
// has not ended it by then.
func watchdogExit(cancel context.CancelCauseFunc, log *slog.Logger, exit func(int)) func(error) {
	return func(err error) {
		cancel(err)
		time.AfterFunc(forceExitAfter, func() {
			log.Error("the agent did not stop within the time allowed after the WMI watchdog fired: exiting now", "after", forceExitAfter)
			exit(exitError)
		})
	}
}

func cmdRun(args []string, stderr io.Writer) error {
	f := newRunFlags("run", stderr)
	if err := f.parse(args); err != nil {
		return err
	}
	asService := service.IsService(f.service)
	// Before anything in the state directory is opened (the log, the config
	// file, the spool): check it, and make it or move it aside
	// (run.PrepareStateDir). What it did is logged once the log is open.
	prepared, prepErr := run.PrepareStateDir(f.stateDir)
	logFile := f.logFile
	if logFile == "" && asService && prepErr == nil {
		logFile = filepath.Join(f.stateDir, "agent.log")
	}
	var out io.Writer = stderr
	if logFile != "" {
		lf, err := openLog(logFile)
		if err != nil {
			return err
		}
		defer lf.Close()
		out = lf
		// A panic that nothing recovers (on a goroutine of a library, say)
		// ends the process: its trace goes to the log file too, not only to
		// a standard error that a service does not have.
		if err := debug.SetCrashOutput(lf, debug.CrashOptions{}); err != nil {
			fmt.Fprintf(stderr, "sessionaudit-agent: crash output to the log file: %v\n", err)
		}
	}
	level := new(slog.LevelVar)
	h, closeEventLog := service.EventLogHandler(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	defer closeEventLog()
	log := slog.New(h)
	slog.SetDefault(log)
	prepared.Log(log)
	if prepErr != nil {
		log.Error("cannot start", "err", prepErr)
		return prepErr
	}

	program := func(ctx context.Context) error {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		watcher := config.NewWatcher(f.layers(config.NewPolicyLayer(), config.NewInstallerLayer())...)
		settings, _ := watcher.Current()
		level.Set(settings.LogLevel)
		clk := clock.System{}
		src, err := f.newSource(watcher, clk, log, watchdogExit(cancel, log, os.Exit))
		if err != nil {
			log.Error("cannot start: no session source", "source", f.source, "err", err)
			return err
		}
		defer src.Close()
		log.Info("session source ready", "source", f.source, "fixture", f.fixture, "service", asService)
		err = run.Run(ctx, run.Options{
			Source: src, Watcher: watcher, StateDir: f.stateDir, Clock: clk, Logger: log, LogLevel: level, Version: version,
		})
		if err != nil {
			log.Error("cannot start", "err", err)
			return err
		}
		if hung := new(wmi.HungError); errors.As(context.Cause(ctx), &hung) {
			return hung // stopped by the WMI watchdog: a failure, so that the agent is restarted
		}
		return nil
	}
	return service.Run(program, f.service, log)
}

// maxLogBytes is the size beyond which the log file is renamed to .1 at
// start.
const maxLogBytes = 10 << 20

// openLog opens path for appending; a file over maxLogBytes is moved to
// path+".1" first (one generation kept).
func openLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("log file %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > maxLogBytes {
		_ = os.Rename(path, path+".1")
	}
	lf, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	return lf, nil
}

func cmdInstall(args []string, stdout, stderr io.Writer) error {
	f := newRunFlags("install", stderr)
	if err := f.parse(args); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find this executable's path: %w", err)
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return err
	}
	reg := f.serviceArgs()
	if err := service.Install(exe, reg); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "service %s installed: %s run --service %s\nstart it with: sc start %s\n",
		service.Name, exe, strings.Join(reg, " "), service.Name)
	return nil
}

// pathFlags are the flags whose value is a path: the service gets them
// absolute, since it does not start in the installer's directory.
var pathFlags = map[string]bool{"config": true, "state-dir": true, "fixture": true, "log-file": true, "ca-certificate": true}

// serviceArgs returns the flags set on the command line, as the service's
// command line carries them after "run --service": one "-name=value" each,
// paths made absolute.
func (f *runFlags) serviceArgs() []string {
	var out []string
	f.fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "service" {
			return
		}
		v := fl.Value.String()
		if pathFlags[fl.Name] && v != "" {
			if abs, err := filepath.Abs(v); err == nil {
				v = abs
			}
		}
		out = append(out, "-"+fl.Name+"="+v)
	})
	return out
}

func cmdUninstall(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("uninstall", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("uninstall takes no arguments")
	}
	if err := service.Uninstall(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "service %s stopped and removed (the state directory is kept)\n", service.Name)
	return nil
}

func cmdSettings(args []string, stdout, stderr io.Writer) error {
	f := newRunFlags("settings", stderr)
	if err := f.parse(args); err != nil {
		return err
	}
	s, ws := config.Load(f.layers(config.NewPolicyLayer(), config.NewInstallerLayer())...)
	for _, line := range s.Describe() {
		fmt.Fprintln(stdout, line)
	}
	for _, w := range ws {
		fmt.Fprintln(stdout, "warning:", w.String())
	}
	return nil
}

func cmdVersion(stdout io.Writer) error {
	_, err := fmt.Fprintf(stdout, "sessionaudit-agent %s %s/%s %s\n", version, runtime.GOOS, runtime.GOARCH, runtime.Version())
	return err
}
