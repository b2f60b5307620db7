package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/rows"
)

// command is one subcommand: its flags, each of which may also come from an
// environment variable, its help, and what it does.
type command struct {
	name string
	// short is the one line of the overview; summary opens --help.
	short, summary string
	// examples are command lines shown by --help.
	examples []string
	fs       *flag.FlagSet
	env      map[string]string // flag name -> environment variable
	// sections lists the flags in the order declared, under headings.
	sections []section
	run      func(ctx context.Context, c *cli) error
}

// section is a heading of --help and its flags.
type section struct {
	title string
	flags []string
}

func newCommand(name, short, summary string, examples ...string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &command{name: name, short: short, summary: summary, examples: examples, fs: fs, env: map[string]string{},
		sections: []section{{title: "Flags"}}}
}

// section starts a new heading for the flags declared after it.
func (c *command) section(title string) { c.sections = append(c.sections, section{title: title}) }

// String declares a string flag that the environment variable env (when
// not "") may set.
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

// Var declares a flag of any flag.Value.
func (c *command) Var(v flag.Value, name, usage string) {
	c.fs.Var(v, name, usage)
	c.bindEnv(name, "")
}

func (c *command) bindEnv(name, env string) {
	last := &c.sections[len(c.sections)-1]
	last.flags = append(last.flags, name)
	if env != "" {
		c.env[name] = env
	}
}

// parse reads the flags: a flag given on the command line wins over its
// environment variable, which wins over the default. The config file comes
// after both (cli.connect).
func (c *command) parse(args []string, env lookupEnv) ([]string, error) {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	given := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, variable := range c.env {
		v, ok := env(variable)
		if !ok || given[name] {
			continue
		}
		if err := c.fs.Set(name, v); err != nil {
			return nil, usagef("environment variable %s=%q (for --%s): %v", variable, v, name, err)
		}
	}
	return c.fs.Args(), nil
}

// usage writes the command's help: synopsis, summary, examples, and every
// flag with its environment variable and default, then the exit codes.
func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: sessionaudit %s [flags]\n\n%s\n", c.name, c.summary)
	if len(c.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, sec := range c.sections {
		if len(sec.flags) == 0 {
			continue
		}
		fmt.Fprintf(tw, "\n%s:\n", sec.title)
		for _, name := range sec.flags {
			f := c.fs.Lookup(name)
			var extra []string
			if env := c.env[f.Name]; env != "" {
				extra = append(extra, "env "+env)
			}
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "0s" {
				extra = append(extra, "default "+f.DefValue)
			}
			text := f.Usage
			if len(extra) > 0 {
				text += "\n(" + strings.Join(extra, ", ") + ")"
			}
			lines := strings.Split(text, "\n")
			fmt.Fprintf(tw, "  --%s\t%s\n", f.Name, lines[0])
			for _, l := range lines[1:] {
				fmt.Fprintf(tw, "  \t%s\n", l)
			}
		}
	}
	tw.Flush()
	if c.name != "version" {
		fmt.Fprintf(w, "\nTimes (--at, --since, --until): RFC 3339 (2026-03-01T08:00:00Z), a date\n"+
			"(2026-03-01, midnight UTC), now, or a duration ago (-2h, 90m, 30d, 2w).\n")
		fmt.Fprintf(w, "\n%s", exitCodesHelp)
	}
}

// typesFlag is a repeatable --type that also takes comma lists.
type typesFlag []pb.LogonType

func (t *typesFlag) String() string {
	var names []string
	for _, v := range *t {
		names = append(names, rows.LogonTypeNames[v])
	}
	return strings.Join(names, ",")
}

func (t *typesFlag) Set(s string) error {
	for part := range strings.SplitSeq(s, ",") {
		v, err := rows.ParseLogonType(part)
		if err != nil {
			return err
		}
		*t = append(*t, v)
	}
	return nil
}
