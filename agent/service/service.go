// Package service runs the agent as an operating-system service.
//
// On Windows the agent is a service of the Service Control Manager (SCM),
// built on golang.org/x/sys/windows/svc:
//
//   - Install registers the service: started automatically at boot, as
//     LocalSystem, depending on the WMI service (Winmgmt) so that the SCM
//     starts WMI first; the command line it registers is the installing
//     executable with "run --service" and the flags given to install. It
//     then sets the recovery actions itself (restart after 5 s, 30 s and
//     60 s; the failure count resets after a day; also on a non-zero exit,
//     not only on a crash), and registers the event log source. Run sets
//     the recovery actions again each time the service starts, since an
//     MSI built with wixl cannot (ServiceConfig is refused).
//   - Uninstall stops the service (waiting up to StopTimeout), deletes it
//     and removes the event log source.
//   - Run runs the program under the SCM when the process is a service, or
//     when forced: Wine's svc.IsWindowsService() reports false for a
//     service its SCM started, so the registered command line carries
//     "--service" and Run trusts it. A stop or shutdown request cancels the
//     program's context; the service reports STOPPED once the program has
//     returned. A program that fails reports a non-zero exit code, which
//     triggers the recovery actions.
//   - Errors and warnings also go to the Application event log, source
//     Name (EventLogHandler).
//
// Elsewhere, Install and Uninstall return ErrWindowsOnly and Run runs the
// program in the foreground until SIGINT or SIGTERM (systemd's stop).
package service

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Name is the service's name (sc query sessionaudit-agent) and its event
// log source.
const Name = "sessionaudit-agent"

// DisplayName is the name shown in services.msc.
const DisplayName = "sessionaudit agent"

// Description is the service's description in services.msc.
const Description = "Reports the logon sessions and SMB server sessions of this host to the sessionaudit collector."

// StopTimeout bounds how long Uninstall waits for the service to stop.
const StopTimeout = 30 * time.Second

// ErrWindowsOnly is returned by Install and Uninstall outside Windows.
var ErrWindowsOnly = errors.New("service: install and uninstall exist only on Windows " +
	"(on Linux, run the agent with `sessionaudit-agent run` under systemd)")

// Program is what the service runs: it works until ctx is done, then
// returns nil, or returns an error when it cannot go on.
type Program func(ctx context.Context) error

// minLevel is the least severity copied to the event log.
const minLevel = slog.LevelWarn
