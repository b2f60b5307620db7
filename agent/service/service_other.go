//go:build !windows

package service

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// Install returns ErrWindowsOnly.
func Install(exePath string, args []string) error { return ErrWindowsOnly }

// Uninstall returns ErrWindowsOnly.
func Uninstall() error { return ErrWindowsOnly }

// Run runs program in the foreground until SIGINT or SIGTERM, which cancel
// its context; forceService is ignored. It returns the program's error.
func Run(program Program, forceService bool, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Debug("running in the foreground: SIGINT or SIGTERM stops the agent")
	return program(ctx)
}

// IsService reports whether the process runs under a service manager that
// Run talks to: never outside Windows.
func IsService(forceService bool) bool { return false }

// EventLogHandler returns h: there is no event log outside Windows.
func EventLogHandler(h slog.Handler) (slog.Handler, func() error) {
	return h, func() error { return nil }
}
