// Command sessionaudit-collector is the sessionaudit collector: it serves
// agents and analysts over gRPC (serve), prepares its database (migrate) and
// certificates (init-pki), and administers enrollment secrets, agents and API
// tokens.
//
// Every flag may also be given by the environment variable its help names;
// a flag on the command line wins. Run "sessionaudit-collector help" for the
// commands and "sessionaudit-collector COMMAND --help" for one command.
//
// Exit status: 0 on success, 1 when the command failed, 2 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sessionaudit/sessionaudit/store"
)

// Exit codes scripts may rely on.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// cli holds what every command shares.
type cli struct {
	stdout, stderr io.Writer
	databaseURL    string
	// now is the clock, for tests.
	now func() time.Time
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// run runs one command line and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr, now: time.Now}
	cmds := c.commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if cmd := find(cmds, args[1:]); cmd != nil {
				cmd.usage(stdout)
				return exitOK
			}
		}
		c.overview(stdout, cmds)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd := find(cmds, args)
	if cmd == nil {
		fmt.Fprintf(stderr, "sessionaudit-collector: unknown command %q; run 'sessionaudit-collector help'\n", strings.Join(args[:min(2, len(args))], " "))
		return exitUsage
	}
	rest := args[len(strings.Fields(cmd.name)):]
	pos, err := cmd.parse(rest)
	if errors.Is(err, flag.ErrHelp) {
		cmd.usage(stdout)
		return exitOK
	}
	if err == nil {
		err = cmd.run(ctx, c, pos)
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "sessionaudit-collector %s: %v\n\n", cmd.name, err)
		cmd.usage(stderr)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "sessionaudit-collector %s: %v\n", cmd.name, err)
		return exitFailure
	}
}

// find returns the command that args start with: a one-word or a two-word
// name.
func find(cmds []*command, args []string) *command {
	for _, n := range []int{2, 1} {
		if len(args) < n {
			continue
		}
		name := strings.Join(args[:n], " ")
		for _, c := range cmds {
			if c.name == name {
				return c
			}
		}
	}
	return nil
}

func (c *cli) overview(w io.Writer, cmds []*command) {
	fmt.Fprint(w, `sessionaudit-collector: the sessionaudit collector and its administration.

Usage: sessionaudit-collector COMMAND [flags] [arguments]

Commands:
`)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, cmd := range cmds {
		first, _, _ := strings.Cut(cmd.summary, "\n")
		fmt.Fprintf(tw, "  %s %s\t%s\n", cmd.name, cmd.args, first)
	}
	tw.Flush()
	fmt.Fprint(w, `
"sessionaudit-collector COMMAND --help" explains a command and its flags.
Every flag may also be set by the environment variable its help names.
Exit status: 0 success, 1 failure, 2 usage error.
`)
}

// databaseFlag declares --database-url on cmd.
func (c *cli) databaseFlag(cmd *command) {
	cmd.String(&c.databaseURL, "database-url", "SESSIONAUDIT_DATABASE_URL", "",
		"PostgreSQL URL, e.g. postgres://collector:PASSWORD@db:5432/sessionaudit?sslmode=verify-full")
}

// openStore opens the store named by --database-url.
func (c *cli) openStore(ctx context.Context) (*store.Store, error) {
	if c.databaseURL == "" {
		return nil, usageError{"--database-url (or SESSIONAUDIT_DATABASE_URL) is required"}
	}
	return store.Open(ctx, c.databaseURL)
}

// commands lists every command, in the order help shows them.
func (c *cli) commands() []*command {
	return []*command{
		c.serveCommand(),
		c.migrateCommand(),
		c.initPKICommand(),
		c.secretCreateCommand(), c.secretListCommand(), c.secretRevokeCommand(),
		c.agentListCommand(), c.agentDisableCommand(true), c.agentDisableCommand(false), c.agentAllowReenrollCommand(),
		c.tokenCreateCommand(), c.tokenListCommand(), c.tokenRevokeCommand(),
		c.versionCommand(),
	}
}

func (c *cli) versionCommand() *command {
	cmd := newCommand("version", "", "Print the collector's version, Go version and platform.")
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Sprintf("unexpected arguments %q", args)}
		}
		_, err := fmt.Fprintf(c.stdout, "sessionaudit-collector %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return err
	}
	return cmd
}

func (c *cli) migrateCommand() *command {
	cmd := newCommand("migrate", "", "Apply the schema migrations (under an advisory lock, so several collectors may\n"+
		"run it at once) and create the coming months' partitions. 'serve' does it too.")
	c.databaseFlag(cmd)
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Sprintf("unexpected arguments %q", args)}
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		if c.databaseURL == "" {
			return usageError{"--database-url (or SESSIONAUDIT_DATABASE_URL) is required"}
		}
		if err := store.Migrate(ctx, c.databaseURL); err != nil {
			return err
		}
		st, err := c.openStore(ctx)
		if err != nil {
			return err
		}
		defer st.Close()
		if err := st.EnsurePartitions(ctx, c.now()); err != nil {
			return err
		}
		v, err := st.SchemaVersion(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "schema at version %d; partitions ready\n", v)
		return nil
	}
	return cmd
}
