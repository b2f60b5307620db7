package run

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/config"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// FootprintOptions configure Footprint.
type FootprintOptions struct {
	// StateDir is where the spool is written (a temporary directory).
	StateDir string
	// Cycles is the number of unchanged poll cycles measured (after one
	// warm-up cycle, the first Snapshot).
	Cycles int
	// LogonSessions and ServerSessions size the host; the figure
	// is 500 sessions in all.
	LogonSessions, ServerSessions int
	// PollInterval is the interval the spool rate is extrapolated to.
	PollInterval time.Duration
	// MemoryLimit, when positive, is set with debug.SetMemoryLimit.
	MemoryLimit int64
	// GCPercent, when non-zero, is set with debug.SetGCPercent.
	GCPercent int
}

// FootprintResult is what Footprint measured.
type FootprintResult struct {
	Cycles int
	// CPUPerCycle is user+system CPU time of the process over the cycles,
	// divided by their number (getrusage).
	CPUPerCycle time.Duration
	// RSS and HWM are VmRSS and VmHWM of /proc/self/status after the
	// cycles and a garbage collection, in bytes.
	RSS, HWM int64
	// HeapInUse is runtime.MemStats.HeapInuse after that collection.
	HeapInUse uint64
	// SnapshotBytes is the spool's growth for the first report (a
	// Snapshot); HeartbeatBytes the mean growth per unchanged cycle.
	SnapshotBytes, HeartbeatBytes float64
	// SpoolBytesPerHour extrapolates the spool's writes at PollInterval:
	// heartbeats, plus one Snapshot per day (ResyncIntervalMinutes'
	// default) spread over the hours.
	SpoolBytesPerHour float64
}

// Footprint runs the real loop (Run, spool only: no collector) over a
// source that returns the same host every time, and measures the process:
// the figures of docs/benchmarks.md, "Agent footprint". Linux only (it
// reads /proc/self/status).
func Footprint(ctx context.Context, o FootprintOptions) (FootprintResult, error) {
	var r FootprintResult
	if o.Cycles <= 0 || o.PollInterval <= 0 {
		return r, fmt.Errorf("run: footprint: want positive Cycles and PollInterval, have %d and %s", o.Cycles, o.PollInterval)
	}
	if o.MemoryLimit > 0 {
		debug.SetMemoryLimit(o.MemoryLimit)
	}
	if o.GCPercent != 0 {
		debug.SetGCPercent(o.GCPercent)
	}
	clk := clock.NewManual(time.Now().Add(-time.Duration(o.Cycles+10) * o.PollInterval))
	src := NewUnchangedSource(clk, o.LogonSessions, o.ServerSessions)
	watcher := config.NewWatcher(config.MapLayer{LayerName: "footprint", Values: map[string]string{
		config.PollIntervalSeconds: fmt.Sprint(int(o.PollInterval / time.Second)),
	}})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ready := make(chan time.Time, 1)
	var (
		n                          int
		cpu0                       time.Duration
		bytesAfterFirst, bytesLast int64
		firstErr                   error
	)
	spoolBytes := func() int64 { return dirBytes(o.StateDir + "/" + SpoolDir) }
	err := Run(ctx, Options{
		Source: src, Watcher: watcher, StateDir: o.StateDir, Clock: clk,
		ReloadTicks: make(chan time.Time), // no reloads
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		After: func(d time.Duration) <-chan time.Time {
			clk.Advance(d)
			ready <- time.Time{}
			return ready
		},
		OnReport: func(rep *pb.Report) {
			n++
			switch {
			case n == 1:
				if rep.GetSnapshot() == nil {
					firstErr = fmt.Errorf("first report is not a snapshot")
				}
				bytesAfterFirst = spoolBytes()
				r.SnapshotBytes = float64(bytesAfterFirst)
				runtime.GC()
				var err error
				if cpu0, err = processCPU(); err != nil {
					firstErr = err
				}
			case rep.GetHeartbeat() == nil && firstErr == nil:
				firstErr = fmt.Errorf("report %d is not a heartbeat: the source changed", rep.GetSequence())
			}
			if n == o.Cycles+1 || firstErr != nil {
				cpu1, err := processCPU()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				r.CPUPerCycle = (cpu1 - cpu0) / time.Duration(max(1, n-1))
				bytesLast = spoolBytes()
				cancel()
			}
		},
	})
	if err != nil {
		return r, err
	}
	if firstErr != nil {
		return r, fmt.Errorf("run: footprint: %w", firstErr)
	}
	r.Cycles = n - 1
	r.HeartbeatBytes = float64(bytesLast-bytesAfterFirst) / float64(r.Cycles)
	perHour := float64(time.Hour / o.PollInterval)
	r.SpoolBytesPerHour = perHour*r.HeartbeatBytes + r.SnapshotBytes/24
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r.HeapInUse = ms.HeapInuse
	r.RSS, r.HWM, err = processMemory()
	return r, err
}

// UnchangedSource is a source.Source whose host never changes: the same
// logon and server sessions at every snapshot, taken_at from its clock and
// each server session's ActiveTime growing with it (so that nothing
// counts as a change). It measures the cost of a quiet poll.
type UnchangedSource struct {
	clk  clock.Clock
	t0   time.Time
	base *pb.Snapshot
}

// NewUnchangedSource returns a host with logons logon sessions and
// servers server sessions.
func NewUnchangedSource(clk clock.Clock, logons, servers int) *UnchangedSource {
	t0 := clk.Now().Truncate(time.Second)
	boot := t0.Add(-72 * time.Hour)
	snap := &pb.Snapshot{Host: &pb.Host{
		MachineGuid: "5a1d0000-0000-4000-8000-000000000500", Hostname: "FOOTPRINT-500", Domain: "CONTOSO",
		OsCaption: "Microsoft Windows Server 2022 Standard", OsVersion: "10.0.20348", OsBuild: "20348",
		LastBootTime: timestamppb.New(boot), AgentVersion: "footprint",
	}}
	for i := range logons {
		typ := uint32(3)
		if i%10 == 0 {
			typ = 10
		}
		snap.LogonSessions = append(snap.LogonSessions, &pb.LogonSession{
			LogonId: fmt.Sprint(0x3e7 + 1000 + i), LogonType: pb.LogonType(typ), LogonTypeRaw: &typ,
			AuthenticationPackage: "Kerberos", StartTime: timestamppb.New(boot.Add(time.Duration(i) * time.Minute)),
			Account: &pb.Account{Domain: "CONTOSO", Name: fmt.Sprintf("user%04d", i),
				Sid: fmt.Sprintf("S-1-5-21-1004336348-1177238915-682003330-%d", 10000+i)},
		})
	}
	for i := range servers {
		active, idle, opened, st := uint32(3600+i), uint32(60), uint32(2), uint32(2)
		snap.ServerSessions = append(snap.ServerSessions, &pb.ServerSession{
			ComputerName: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), UserName: fmt.Sprintf("user%04d", i),
			ClientType: "SMB 3.1.1", TransportName: `\Device\NetbiosSmb`, ActiveTime: &active, IdleTime: &idle,
			ResourcesOpened: &opened, SessionType: pb.ServerSessionType(st), SessionTypeRaw: &st,
		})
	}
	return &UnchangedSource{clk: clk, t0: t0, base: snap}
}

// Snapshot returns the host as of the clock's time.
func (s *UnchangedSource) Snapshot(ctx context.Context) (*pb.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.clk.Now()
	snap := proto.CloneOf(s.base)
	snap.TakenAt = timestamppb.New(now)
	grow := uint32(now.Sub(s.t0) / time.Second)
	for _, ss := range snap.ServerSessions {
		v := ss.GetActiveTime() + grow
		ss.ActiveTime = &v
	}
	return snap, nil
}

// Close does nothing.
func (s *UnchangedSource) Close() error { return nil }
