package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/sys/windows/svc"
	"golang.org/x/sys/windows/svc/eventlog"
	"golang.org/x/sys/windows/svc/mgr"
)

// Event IDs written to the event log.
const (
	eventError   = 1
	eventWarning = 2
)

// recoveryActions restart the service after 5 s, 30 s, then every 60 s.
var recoveryActions = []mgr.RecoveryAction{
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 60 * time.Second},
}

// recoveryReset is when the SCM resets the failure count (seconds).
const recoveryReset = 24 * 60 * 60

// Install registers the service to run exePath with "run --service" and
// args, and sets its recovery actions, its dependency on Winmgmt and its
// event log source (see the package comment). It fails if the service
// exists already.
func Install(exePath string, args []string) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service: install: connect to the service control manager (run as Administrator): %w", err)
	}
	defer m.Disconnect()
	if s, err := m.OpenService(Name); err == nil {
		s.Close()
		return fmt.Errorf("service: install: service %s exists already (uninstall it first)", Name)
	}
	s, err := m.CreateService(Name, exePath, mgr.Config{
		DisplayName:  DisplayName,
		Description:  Description,
		StartType:    mgr.StartAutomatic,
		ErrorControl: mgr.ErrorNormal,
		Dependencies: []string{"Winmgmt"},
		// ServiceStartName empty: LocalSystem.
	}, append([]string{"run", "--service"}, args...)...)
	if err != nil {
		return fmt.Errorf("service: install: create service %s for %s: %w", Name, exePath, err)
	}
	defer s.Close()
	if err := setRecovery(s); err != nil {
		return fmt.Errorf("service: install: %w", err)
	}
	if err := eventlog.InstallAsEventCreate(Name, eventlog.Error|eventlog.Warning|eventlog.Info); err != nil &&
		!isExists(err) {
		return fmt.Errorf("service: install: register event log source %s: %w", Name, err)
	}
	return nil
}

// setRecovery sets the recovery actions of the service s and applies them
// to non-zero exits too.
func setRecovery(s *mgr.Service) error {
	if err := s.SetRecoveryActions(recoveryActions, recoveryReset); err != nil {
		return fmt.Errorf("set the recovery actions of %s: %w", Name, err)
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("apply the recovery actions of %s to non-zero exits: %w", Name, err)
	}
	return nil
}

// ensureRecovery sets the service's recovery actions from inside the
// service: an MSI built with wixl cannot (ServiceConfig is refused), so a
// service the MSI registered gets them at its first start.
func ensureRecovery() error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service control manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(Name)
	if err != nil {
		return fmt.Errorf("open service %s: %w", Name, err)
	}
	defer s.Close()
	return setRecovery(s)
}

// isExists reports whether err says that the event source exists
// (eventlog.InstallAsEventCreate says so in its text, "registry key already
// exists", not with an error value): a reinstall keeps the source.
func isExists(err error) bool { return strings.Contains(err.Error(), "already exists") }

// Uninstall stops the service if it runs, deletes it and removes its event
// log source.
func Uninstall() error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("service: uninstall: connect to the service control manager (run as Administrator): %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(Name)
	if err != nil {
		return fmt.Errorf("service: uninstall: service %s is not installed: %w", Name, err)
	}
	defer s.Close()
	if st, err := s.Query(); err == nil && st.State != svc.Stopped {
		if _, err := s.Control(svc.Stop); err != nil {
			return fmt.Errorf("service: uninstall: stop %s: %w", Name, err)
		}
		deadline := time.Now().Add(StopTimeout)
		for {
			st, err := s.Query()
			if err != nil {
				return fmt.Errorf("service: uninstall: query %s while stopping: %w", Name, err)
			}
			if st.State == svc.Stopped {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("service: uninstall: %s did not stop within %s", Name, StopTimeout)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	if err := s.Delete(); err != nil {
		return fmt.Errorf("service: uninstall: delete %s: %w", Name, err)
	}
	if err := eventlog.Remove(Name); err != nil {
		return fmt.Errorf("service: uninstall: remove event log source %s (the service is deleted): %w", Name, err)
	}
	return nil
}

// IsService reports whether Run will talk to the SCM: when forceService
// (the registered command line says --service; needed under Wine) or when
// svc.IsWindowsService says so.
func IsService(forceService bool) bool {
	if forceService {
		return true
	}
	is, err := svc.IsWindowsService()
	return err == nil && is
}

// Run runs program as a service when IsService(forceService), else in the
// foreground until Ctrl+C. It returns the program's error.
func Run(program Program, forceService bool, log *slog.Logger) error {
	if !IsService(forceService) {
		ctx, stop := signalContext()
		defer stop()
		return program(ctx)
	}
	if err := ensureRecovery(); err != nil {
		log.Warn("service: cannot set the recovery actions (restart after a failure)", "err", err)
	}
	h := &handler{program: program, log: log}
	if err := svc.Run(Name, h); err != nil {
		return fmt.Errorf("service: run %s under the service control manager: %w", Name, err)
	}
	return h.err
}

// handler is the svc.Handler: it runs the program and turns Stop and
// Shutdown into a cancelled context.
type handler struct {
	program Program
	log     *slog.Logger
	err     error
}

func (h *handler) Execute(_ []string, req <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	const accepts = svc.AcceptStop | svc.AcceptShutdown
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.program(ctx) }()
	status <- svc.Status{State: svc.Running, Accepts: accepts}
	for {
		select {
		case err := <-done:
			// The program ended without a stop request: a failure.
			if err == nil {
				err = errors.New("the agent stopped without a stop request")
			}
			h.err = err
			h.log.Error("agent failed: the service stops; the service control manager restarts it", "err", err)
			return false, 1
		case c := <-req:
			switch c.Cmd {
			case svc.Interrogate:
				status <- c.CurrentStatus
			case svc.Stop, svc.Shutdown:
				h.log.Info("stop requested by the service control manager", "request", cmdName(c.Cmd))
				status <- svc.Status{State: svc.StopPending, WaitHint: uint32(StopTimeout / time.Millisecond)}
				cancel()
				if err := <-done; err != nil {
					h.err = err
					h.log.Error("agent failed while stopping", "err", err)
					return false, 1
				}
				return false, 0
			default:
				h.log.Warn("unexpected service control request ignored", "cmd", uint32(c.Cmd))
			}
		}
	}
}

func cmdName(c svc.Cmd) string {
	if c == svc.Shutdown {
		return "shutdown"
	}
	return "stop"
}

// EventLogHandler returns a handler that logs to h and copies warnings and
// errors to the Application event log under source Name, and the function
// that closes the event log. If the event log cannot be opened, it returns
// h and logs nothing more there.
func EventLogHandler(h slog.Handler) (slog.Handler, func() error) {
	el, err := eventlog.Open(Name)
	if err != nil {
		return h, func() error { return nil }
	}
	return newTeeHandler(h,
		lineWriter(func(msg string) error { return el.Warning(eventWarning, msg) }),
		lineWriter(func(msg string) error { return el.Error(eventError, msg) }),
	), el.Close
}
