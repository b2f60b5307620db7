//go:build !windows

package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"
)

// TestRunStopsOnSIGTERM: in the foreground, SIGTERM (systemd's stop)
// cancels the program's context and Run returns the program's result.
func TestRunStopsOnSIGTERM(t *testing.T) {
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			return nil
		}, true, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	<-started
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM did not stop the program")
	}
}

// TestWindowsOnly: install and uninstall say they exist only on Windows.
func TestWindowsOnly(t *testing.T) {
	if err := Install("/usr/local/bin/sessionaudit-agent", nil); !errors.Is(err, ErrWindowsOnly) {
		t.Errorf("Install: %v; want ErrWindowsOnly", err)
	}
	if err := Uninstall(); !errors.Is(err, ErrWindowsOnly) {
		t.Errorf("Uninstall: %v; want ErrWindowsOnly", err)
	}
	if IsService(true) {
		t.Error("IsService(true) outside Windows")
	}
}
