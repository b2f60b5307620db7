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
	"time"
)

// command is one subcommand: its flags, each of which may also come from an
// environment variable, and what it does.
type command struct {
	name    string
	summary string
	// args describes the positional arguments, for usage.
	args string
	fs   *flag.FlagSet
	env  map[string]string // flag name -> environment variable
	run  func(ctx context.Context, c *cli, args []string) error
}

func newCommand(name, args, summary string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &command{name: name, args: args, summary: summary, fs: fs, env: map[string]string{}}
}

// String declares a string flag that the environment variable env may set.
func (c *command) String(p *string, name, env, def, usage string) {
	c.fs.StringVar(p, name, def, usage)
	c.bindEnv(name, env)
}

// Duration declares a duration flag; see String.
func (c *command) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	c.fs.DurationVar(p, name, def, usage)
	c.bindEnv(name, env)
}

// Int declares an integer flag; see String.
func (c *command) Int(p *int, name, env string, def int, usage string) {
	c.fs.IntVar(p, name, def, usage)
	c.bindEnv(name, env)
}

// Bool declares a boolean flag; see String.
func (c *command) Bool(p *bool, name, env string, def bool, usage string) {
	c.fs.BoolVar(p, name, def, usage)
	c.bindEnv(name, env)
}

func (c *command) bindEnv(name, env string) {
	if env != "" {
		c.env[name] = env
	}
}

// parse reads the flags: a flag given on the command line wins over its
// environment variable, which wins over the default.
func (c *command) parse(args []string) ([]string, error) {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	given := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, env := range c.env {
		v, ok := os.LookupEnv(env)
		if !ok || given[name] {
			continue
		}
		if err := c.fs.Set(name, v); err != nil {
			return nil, usageError{fmt.Sprintf("environment variable %s=%q (for --%s): %v", env, v, name, err)}
		}
	}
	return c.fs.Args(), nil
}

// usage writes the command's help: synopsis, summary, and every flag with
// its environment variable and default.
func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: sessionaudit-collector %s [flags] %s\n\n%s\n", c.name, c.args, c.summary)
	var n int
	c.fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	c.fs.VisitAll(func(f *flag.Flag) {
		var extra []string
		if env := c.env[f.Name]; env != "" {
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
