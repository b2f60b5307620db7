package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/run"
)

// cmdBenchFootprint measures the agent's footprint over unchanged poll
// cycles (docs/benchmarks.md, "Agent footprint").
func cmdBenchFootprint(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-footprint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cycles := fs.Int("cycles", 2000, "Unchanged poll cycles to measure.")
	logons := fs.Int("logon-sessions", 400, "Logon sessions of the measured host.")
	servers := fs.Int("server-sessions", 100, "Server (SMB) sessions of the measured host.")
	poll := fs.Duration("poll", 10*time.Second, "Poll interval the spool rate is extrapolated to.")
	memLimit := fs.Int64("memory-limit-mb", 0, "debug.SetMemoryLimit in MiB (0: the runtime's default or GOMEMLIMIT).")
	gcPercent := fs.Int("gc-percent", 0, "debug.SetGCPercent (0: the runtime's default or GOGC).")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sessionaudit-footprint-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	r, err := run.Footprint(context.Background(), run.FootprintOptions{
		StateDir: dir, Cycles: *cycles, LogonSessions: *logons, ServerSessions: *servers,
		PollInterval: *poll, MemoryLimit: *memLimit << 20, GCPercent: *gcPercent,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "host: %d logon + %d server sessions; %d unchanged cycles; %s %s/%s, %d CPUs, GOMAXPROCS %d\n",
		*logons, *servers, r.Cycles, runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(stdout, "CPU per unchanged cycle:  %s (user+system, getrusage)\n", r.CPUPerCycle.Round(time.Microsecond))
	fmt.Fprintf(stdout, "RSS after GC:             %.1f MiB (VmRSS), peak %.1f MiB (VmHWM), heap in use %.1f MiB\n",
		mib(r.RSS), mib(r.HWM), float64(r.HeapInUse)/(1<<20))
	fmt.Fprintf(stdout, "spool bytes:              snapshot %.0f B, heartbeat %.1f B/cycle\n", r.SnapshotBytes, r.HeartbeatBytes)
	fmt.Fprintf(stdout, "spool bytes per hour:     %.0f B at %s polls (heartbeats + 1 snapshot a day)\n", r.SpoolBytesPerHour, *poll)
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
