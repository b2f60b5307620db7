package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/source"
	"github.com/sessionaudit/sessionaudit/agent/wmi"
)

// TestWMISettingsFollowTheWatcher: what the WMI source reads at each
// snapshot is the watcher's current settings, so that a class turned off
// and on again by Group Policy, or a new QueryTimeoutSeconds, takes effect
// after a reload, without a restart.
func TestWMISettingsFollowTheWatcher(t *testing.T) {
	policy := config.MapLayer{LayerName: "Group Policy", Values: map[string]string{
		config.CollectServerSessions: "0",
		config.QueryTimeoutSeconds:   "20",
	}}
	watcher := config.NewWatcher(policy)
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = watcher.Run(ctx, ticks) }()
	reload := func() {
		t.Helper()
		ticks <- time.Now()
		select {
		case <-watcher.Updates():
		case <-time.After(5 * time.Second):
			t.Fatal("no update after a reload")
		}
	}

	current := wmiSettings(watcher)
	if got := current(); !slices.Equal(got.Disabled, []string{source.ClassServerSession}) || got.QueryTimeout != 20*time.Second {
		t.Errorf("at start: %+v, want Win32_ServerSession disabled and a 20s deadline", got)
	}
	delete(policy.Values, config.CollectServerSessions)
	policy.Values[config.CollectLogonSessions] = "0"
	policy.Values[config.QueryTimeoutSeconds] = "90"
	reload()
	want := []string{source.ClassLogonSession, source.ClassLoggedOnUser}
	if got := current(); !slices.Equal(got.Disabled, want) || got.QueryTimeout != 90*time.Second {
		t.Errorf("after the reload: %+v, want %v disabled and a 90s deadline", got, want)
	}
	delete(policy.Values, config.CollectLogonSessions)
	reload()
	if got := current(); len(got.Disabled) != 0 {
		t.Errorf("turned on again: disabled %v, want none", got.Disabled)
	}
}

// TestWatchdogExit: the WMI watchdog's exit stops the program with the
// HungError as the cause (the program returns it: a failure, which the
// service control manager answers with a restart) and exits the process
// with exitError if the stop takes longer than forceExitAfter.
func TestWatchdogExit(t *testing.T) {
	defer func(d time.Duration) { forceExitAfter = d }(forceExitAfter)
	forceExitAfter = 10 * time.Millisecond
	ctx, cancel := context.WithCancelCause(context.Background())
	codes := make(chan int, 1)
	exit := watchdogExit(cancel, slog.New(slog.NewTextHandler(io.Discard, nil)), func(code int) { codes <- code })
	hung := &wmi.HungError{Class: source.ClassLogonSession, Running: 3 * time.Minute, Timeout: time.Minute, Deadlines: 3}
	exit(hung)
	if ctx.Err() == nil || !errors.Is(context.Cause(ctx), hung) {
		t.Errorf("context cause %v, want the HungError", context.Cause(ctx))
	}
	select {
	case code := <-codes:
		if code != exitError {
			t.Errorf("exit code %d, want %d", code, exitError)
		}
	case <-time.After(5 * time.Second):
		t.Error("the process was not made to exit after forceExitAfter")
	}
}
