// Command collectorbench measures the collector over gRPC with many
// simulated agents (agent/fleet, agent/uplink) in one process: sustained
// ingest (ingest), agents held at a poll rate (connections), a benchmark
// collector in a process of its own for the latter (collector), and what
// calls without a client certificate cost a collector (unauthenticated).
// The figures and the exact commands are in docs/benchmarks.md.
//
// It lives under server/ because it serves a collector (server.New) over a
// store (store.Open) in its own process, and bench-ingest's second phase
// writes straight into store.Ingest; the agent packages it drives import
// neither. The simulator alone, against a collector process, is fleetsim
// (agent/cmd/fleetsim).
//
// Run "collectorbench help" for the modes and "collectorbench MODE --help"
// for the flags of one.
//
// Exit status: 0 on success, 1 when the mode failed, 2 for a usage error.
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

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

// mode is one of collectorbench's modes.
type mode struct {
	name, summary, doc string
	run                func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var modes = []mode{
	{"ingest", "sustained ingest through gRPC on loopback, and the store's own rate for the ratio", benchIngestDoc, benchIngest},
	{"connections", "how many agents one collector holds at 60-second polls with p99 acknowledgement under a bound", benchConnectionsDoc, benchConnections},
	{"collector", "a collector in its own process for 'connections --collector-dir'", benchCollectorDoc, benchCollectorMode},
	{"unauthenticated", "what calls without a client certificate cost a collector process, in RSS", benchUnauthDoc, benchUnauth},
	{"version", "print the version", "Prints \"collectorbench VERSION\".\n", versionMode},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func overview(w io.Writer) {
	fmt.Fprintf(w, "Usage: collectorbench MODE [flags]\n\n"+
		"Measures the collector over gRPC with many simulated sessionaudit agents in one\n"+
		"process. Each agent simulates a Windows host (agent/simulate) or sends\n"+
		"heartbeats, and delivers with the agent's uplink over gRPC and mutual TLS, with\n"+
		"its own key and certificate enrolled with an enrollment secret. The collector\n"+
		"(server.New, real TLS, the given PostgreSQL) runs in this process or, for\n"+
		"connections, in a process of its own (collectorbench collector).\n\nModes:\n")
	for _, m := range modes {
		fmt.Fprintf(w, "  %-12s %s\n", m.name, m.summary)
	}
	fmt.Fprintf(w, "\nRun 'collectorbench MODE --help' for a mode's flags.\n")
}

// versionMode is "collectorbench version".
func versionMode(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlags("version", "Prints \"collectorbench VERSION\".\n", stdout)
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "collectorbench %s\n", version)
	return nil
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
			fmt.Fprintf(stderr, "collectorbench %s: %v (see 'collectorbench %s --help')\n", m.name, err, m.name)
			return 2
		default:
			fmt.Fprintf(stderr, "collectorbench %s: %v\n", m.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "collectorbench: unknown mode %q; run 'collectorbench help'\n", args[0])
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
		fmt.Fprintf(out, "Usage: collectorbench %s [flags]\n\n%s\nFlags:\n", name, doc)
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
