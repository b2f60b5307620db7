package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/internal/envflag"
)

// command is one subcommand: its flags, each of which may also come from an
// environment variable, its help, and what it does.
type command struct {
	name string
	// short is the one line of the overview; summary opens --help.
	short, summary string
	// examples are command lines shown by --help.
	examples []string
	*envflag.Set
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
	c := &command{name: name, short: short, summary: summary, examples: examples, Set: envflag.New(name),
		sections: []section{{title: "Flags"}}}
	c.Declared = func(flag string) {
		last := &c.sections[len(c.sections)-1]
		last.flags = append(last.flags, flag)
	}
	return c
}

// section starts a new heading for the flags declared after it.
func (c *command) section(title string) { c.sections = append(c.sections, section{title: title}) }

// parse reads the flags: a flag given on the command line wins over its
// environment variable, which wins over the default. The config file comes
// after both (cli.connect).
func (c *command) parse(args []string, env lookupEnv) ([]string, error) {
	rest, err := c.Set.Parse(args, env)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return nil, usageError{err.Error()}
	}
	return rest, err
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
			f := c.Lookup(name)
			var extra []string
			if env := c.Env(f.Name); env != "" {
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
		names = append(names, pb.LogonTypeNames[v])
	}
	return strings.Join(names, ",")
}

func (t *typesFlag) Set(s string) error {
	for part := range strings.SplitSeq(s, ",") {
		v, err := pb.ParseLogonType(part)
		if err != nil {
			return err
		}
		*t = append(*t, v)
	}
	return nil
}
