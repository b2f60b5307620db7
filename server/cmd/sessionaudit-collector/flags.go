package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/sessionaudit/sessionaudit/server/internal/envflag"
)

// command is one subcommand: its flags, each of which may also come from an
// environment variable, and what it does.
type command struct {
	name    string
	summary string
	// args describes the positional arguments, for usage.
	args string
	*envflag.Set
	run func(ctx context.Context, c *cli, args []string) error
}

func newCommand(name, args, summary string) *command {
	return &command{name: name, args: args, summary: summary, Set: envflag.New(name)}
}

// parse reads the flags: a flag given on the command line wins over its
// environment variable, which wins over the default.
func (c *command) parse(args []string) ([]string, error) {
	rest, err := c.Set.Parse(args, os.LookupEnv)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return nil, usageError{err.Error()}
	}
	return rest, err
}

// usage writes the command's help: synopsis, summary, and every flag with
// its environment variable and default.
func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: sessionaudit-collector %s [flags] %s\n\n%s\n", c.name, c.args, c.summary)
	var n int
	c.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	c.VisitAll(func(f *flag.Flag) {
		var extra []string
		if env := c.Env(f.Name); env != "" {
			extra = append(extra, "env "+env)
		}
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "0s" {
			extra = append(extra, "default "+f.DefValue)
		}
		note := ""
		if len(extra) > 0 {
			note = " (" + strings.Join(extra, ", ") + ")"
		}
		fmt.Fprintf(tw, "  --%s\t%s%s\n", f.Name, f.Usage, note)
	})
	tw.Flush()
}
