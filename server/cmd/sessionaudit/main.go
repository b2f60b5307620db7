// Command sessionaudit is the analysts' command line: it asks a sessionaudit
// collector's QueryService (gRPC over TLS, with an API token) who was on a
// host at a moment, an account's or a host's timeline, SMB sessions by
// source or target, open sessions, silent hosts, and exports a range.
//
// Its rows are those of server/rows, the same fields as the HTTP API and the
// web UI: a table for people by default, --json (the HTTP API's response
// shape) and --csv for machines.
//
// Settings come from a flag, else an environment variable
// (SESSIONAUDIT_COLLECTOR, SESSIONAUDIT_TOKEN, SESSIONAUDIT_CA_CERT, …),
// else the config file ($XDG_CONFIG_HOME/sessionaudit/cli.conf or
// ~/.config/sessionaudit/cli.conf). Run "sessionaudit help" for the commands
// and "sessionaudit COMMAND --help" for one command; docs/cli.md is the
// manual.
//
// Exit status: 0 success (also when nothing matched), 1 the collector could
// not be reached or failed, 2 usage error (a bad flag, time, account, config
// file, or a parameter the collector refused), 3 nothing matched and
// --fail-empty was given, 4 the token is missing, not valid, or lacks the
// role.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"
)

// Exit codes scripts may rely on.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitEmpty   = 3
	exitAuth    = 4
)

// exitCodesHelp is the exit status paragraph of every help text.
const exitCodesHelp = `Exit status:
  0  success, also when nothing matched
  1  the collector could not be reached, failed, or timed out
  2  usage error: a bad flag, time, account or config file, or a parameter the
     collector refused (it names the parameter)
  3  nothing matched and --fail-empty was given
  4  authentication: no token, a token the collector does not accept, or a
     role that may not query
`

// lookupEnv reads an environment variable; os.LookupEnv outside tests.
type lookupEnv func(string) (string, bool)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// run runs one command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, env lookupEnv) int {
	return newCLI(stdout, stderr, env).main(ctx, args)
}

// usageError is a mistake in the command line, the environment or the
// config file: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// emptyError says that nothing matched under --fail-empty: exit status 3.
var errEmpty = errors.New("nothing matched (--fail-empty)")

func (c *cli) main(ctx context.Context, args []string) int {
	cmds := c.commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if cmd := find(cmds, args[1]); cmd != nil {
				cmd.usage(c.stdout)
				return exitOK
			}
			fmt.Fprintf(c.stderr, "sessionaudit: no command %q; run 'sessionaudit help'\n", sanitize(args[1]))
			return exitUsage
		}
		c.overview(c.stdout, cmds)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd := find(cmds, args[0])
	if cmd == nil {
		fmt.Fprintf(c.stderr, "sessionaudit: unknown command %q; run 'sessionaudit help'\n", sanitize(args[0]))
		return exitUsage
	}
	pos, err := cmd.parse(args[1:], c.env)
	if errors.Is(err, flag.ErrHelp) {
		cmd.usage(c.stdout)
		return exitOK
	}
	if err == nil && len(pos) > 0 {
		err = usagef("unexpected arguments %q (every value is given with a flag)", pos)
	}
	if err == nil {
		err = cmd.run(ctx, c)
	}
	code := exitCode(err)
	switch {
	case err == nil:
	case errors.Is(err, errEmpty):
		fmt.Fprintf(c.stderr, "sessionaudit %s: %s\n", cmd.name, sanitize(err.Error()))
	case code == exitUsage:
		fmt.Fprintf(c.stderr, "sessionaudit %s: %s\nRun 'sessionaudit %s --help' for its flags.\n", cmd.name, sanitize(err.Error()), cmd.name)
	default:
		fmt.Fprintf(c.stderr, "sessionaudit %s: %s\n", cmd.name, sanitize(err.Error()))
	}
	return code
}

// exitCode maps a command's error to the exit status.
func exitCode(err error) int {
	var ue usageError
	var qe *queryError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errEmpty):
		return exitEmpty
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &qe):
		return qe.exit
	}
	return exitFailure
}

func find(cmds []*command, name string) *command {
	for _, c := range cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (c *cli) overview(w io.Writer, cmds []*command) {
	fmt.Fprint(w, `sessionaudit: ask a sessionaudit collector who was logged on where, and when.

Usage: sessionaudit COMMAND [flags]

Commands:
`)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, cmd := range cmds {
		fmt.Fprintf(tw, "  %s\t%s\n", cmd.name, cmd.short)
	}
	tw.Flush()
	fmt.Fprint(w, `
Examples:
  sessionaudit who --host FS01 --at 2026-03-03T03:12:00Z
  sessionaudit timeline --user 'CONTOSO\alice' --since 30d
  sessionaudit smb --from WS0123 --since 7d
  sessionaudit sessions --type rdp --open
  sessionaudit hosts --stale 1h
  sessionaudit export --since 2026-03-01 --until 2026-03-08 --csv --output logon.csv

Connection: --collector HOST:PORT, --token, --ca-cert, or their environment
variables SESSIONAUDIT_COLLECTOR, SESSIONAUDIT_TOKEN, SESSIONAUDIT_CA_CERT, or
"collector = …", "token = …", "ca-cert = …" lines in the config file
(--config; default `+defaultConfigHelp+`).
A flag wins over its variable, which wins over the config file.

"sessionaudit COMMAND --help" explains a command and its flags.

`+exitCodesHelp)
}

// commands lists every command, in the order help shows them.
func (c *cli) commands() []*command {
	return []*command{
		c.whoCommand(),
		c.timelineCommand(),
		c.smbCommand(),
		c.sessionsCommand(),
		c.hostsCommand(),
		c.exportCommand(),
		c.versionCommand(),
	}
}

// newCLI returns a cli writing to stdout and stderr, reading the
// environment through env, with the real clock.
func newCLI(stdout, stderr io.Writer, env lookupEnv) *cli {
	return &cli{stdout: stdout, stderr: stderr, env: env, now: time.Now, loc: time.Local}
}
