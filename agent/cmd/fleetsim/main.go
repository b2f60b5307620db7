// Command fleetsim runs many simulated sessionaudit agents in one process
// against a collector process, over gRPC and mutual TLS: the README's demo
// and the collector image's test run it (run). Like the rest of agent/, it
// imports nothing from server/ or store/.
//
// The collector benchmarks, which serve a collector and a store in their
// own process, are server/cmd/collectorbench.
//
// Run "fleetsim help" for the modes and "fleetsim MODE --help" for the
// flags of one.
//
// Exit status: 0 on success, 1 when the mode failed (for run: the store's
// answer differs from what the agents reported), 2 for a usage error.
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
)

// mode is one of fleetsim's modes.
type mode struct {
	name, summary, doc string
	run                func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

var modes = []mode{
	{"run", "simulated agents enroll, report a simulated history, and one query is checked", runDoc, runMode},
	{"version", "print the version", versionDoc, versionMode},
}

// movedModes are the benchmark modes fleetsim had, and their names in
// collectorbench.
var movedModes = map[string]string{"bench-ingest": "ingest", "bench-connections": "connections", "bench-collector": "collector"}

const versionDoc = "Prints \"fleetsim VERSION\".\n"

// versionMode is "fleetsim version".
func versionMode(_ context.Context, args []string, stdout, _ io.Writer) error {
	if err := parse(newFlags("version", versionDoc, stdout), args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fleetsim %s\n", version)
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func overview(w io.Writer) {
	fmt.Fprintf(w, "Usage: fleetsim MODE [flags]\n\n"+
		"Runs many simulated sessionaudit agents in one process. Each agent simulates a\n"+
		"Windows host (agent/simulate), turns its snapshots into reports (agent/change),\n"+
		"and delivers them with the agent's uplink over gRPC and mutual TLS, with its own\n"+
		"key and certificate enrolled with an enrollment secret. Reports wait in memory,\n"+
		"not in a disk spool (see agent/fleet).\n\nModes:\n")
	for _, m := range modes {
		fmt.Fprintf(w, "  %-18s %s\n", m.name, m.summary)
	}
	fmt.Fprintf(w, "\nRun 'fleetsim MODE --help' for a mode's flags. The collector benchmarks\n"+
		"(formerly fleetsim bench-ingest, bench-connections, bench-collector) are\n"+
		"collectorbench (server/cmd/collectorbench).\n")
}

// dispatch runs one command line and returns the exit status.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			for _, m := range modes {
				if m.name == args[1] {
					_ = m.run(ctx, []string{"--help"}, stdout, stdout)
					return 0
				}
			}
		}
		overview(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, m := range modes {
		if m.name != args[0] {
			continue
		}
		err := m.run(ctx, args[1:], stdout, stderr)
		var ue usageError
		switch {
		case err == nil || errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "fleetsim %s: %v (see 'fleetsim %s --help')\n", m.name, err, m.name)
			return 2
		default:
			fmt.Fprintf(stderr, "fleetsim %s: %v\n", m.name, err)
			return 1
		}
	}
	if to, ok := movedModes[args[0]]; ok {
		fmt.Fprintf(stderr, "fleetsim: %s moved to 'collectorbench %s' (server/cmd/collectorbench)\n", args[0], to)
		return 2
	}
	fmt.Fprintf(stderr, "fleetsim: unknown mode %q; run 'fleetsim help'\n", args[0])
	return 2
}

// usageError is a mistake in the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// newFlags returns a flag set whose --help prints doc then the flags.
func newFlags(name, doc string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: fleetsim %s [flags]\n\n%s\nFlags:\n", name, doc)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(out, "  --%s\n      %s%s\n", f.Name, f.Usage, def)
		})
	}
	return fs
}

// parse parses args; a flag error is a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
