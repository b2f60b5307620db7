// Command sessionaudit-agent is the sessionaudit agent: it reads the logon
// and SMB server sessions of its host and reports them to the collector.
//
// Usage:
//
//	sessionaudit-agent run [flags]        collect and report (foreground, or as the service)
//	sessionaudit-agent install [flags]    register the Windows service (flags are kept for run)
//	sessionaudit-agent uninstall          stop and remove the Windows service
//	sessionaudit-agent settings [flags]   print the effective settings and where each comes from
//	sessionaudit-agent check-state-dir    check the state directory as run does (-n: change nothing)
//	sessionaudit-agent bench-footprint    measure memory and CPU over unchanged poll cycles
//	sessionaudit-agent version            print the version
//
// See docs/agent.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// exit codes
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: sessionaudit-agent <command> [flags]

commands:
  run              collect and report until stopped (the Windows service runs "run --service")
  install [flags]  register the Windows service; the flags are registered for "run"
  uninstall        stop and remove the Windows service
  settings [flags] print the effective settings and the layer each comes from
  check-state-dir  check the state directory as run does at its start (-n: only say what it would do)
  bench-footprint  measure RSS and CPU per unchanged poll cycle (500 sessions)
  version          print the version

"sessionaudit-agent <command> -h" lists a command's flags. See docs/agent.md.
`)
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	var err error
	switch cmd {
	case "run":
		err = cmdRun(rest, stderr)
	case "install":
		err = cmdInstall(rest, stdout, stderr)
	case "uninstall":
		err = cmdUninstall(rest, stdout, stderr)
	case "settings":
		err = cmdSettings(rest, stdout, stderr)
	case "check-state-dir":
		err = cmdCheckStateDir(rest, stdout, stderr)
	case "bench-footprint":
		err = cmdBenchFootprint(rest, stdout, stderr)
	case "version", "-version", "--version":
		err = cmdVersion(stdout)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "sessionaudit-agent: unknown command %q\n\n", cmd)
		usage(stderr)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "sessionaudit-agent %s: %v\n", cmd, err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "sessionaudit-agent %s: %v\n", cmd, err)
		return exitError
	}
}

// usageError is a mistake on the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }
