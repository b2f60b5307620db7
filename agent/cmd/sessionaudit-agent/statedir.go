package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/sessionaudit/sessionaudit/agent/run"
)

// cmdCheckStateDir checks the state directory as "run" does at its start
// (run.PrepareStateDir) and prints what it saw and did; with -n it only
// looks and says what it would do. For administrators and the Windows test
// plan (deploy/windows/test-plan.ps1): try the check on a directory of
// one's choosing without starting an agent.
func cmdCheckStateDir(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check-state-dir", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("state-dir", run.DefaultStateDir(), "Directory to check.")
	dryRun := fs.Bool("n", false, "Only look and say what would be done; change nothing.")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if *dir == "" {
		return usagef("-state-dir must not be empty")
	}
	fmt.Fprintf(stdout, "state directory: %s\n", *dir)
	if *dryRun {
		step, err := run.InspectStateDir(*dir)
		if err != nil {
			return err
		}
		printStateDirStep(stdout, 1, step)
		fmt.Fprintln(stdout, "nothing changed (-n)")
		return nil
	}
	report, err := run.PrepareStateDir(*dir)
	for i, step := range report.Steps {
		printStateDirStep(stdout, i+1, step)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "result: usable")
	return nil
}

// printStateDirStep prints one look at the state directory: the facts, the
// entries found untrusted, the decision and what followed.
func printStateDirStep(w io.Writer, n int, s run.StateDirStep) {
	fmt.Fprintf(w, "look %d: %s\n", n, s.Facts.Facts)
	if s.Facts.Scanned {
		fmt.Fprintf(w, "  entries not trusted: %d\n", s.Facts.UntrustedCount)
		for _, e := range s.Facts.Untrusted {
			fmt.Fprintf(w, "    %s\n", e)
		}
	}
	fmt.Fprintf(w, "  decision: %s: %s\n", s.Decision.Action, s.Decision.Reason)
	if s.MovedTo != "" {
		fmt.Fprintf(w, "  moved aside to: %s\n", s.MovedTo)
	}
	if s.Raced {
		fmt.Fprintln(w, "  it appeared meanwhile: looking again")
	}
}
