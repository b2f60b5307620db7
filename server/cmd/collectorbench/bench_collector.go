package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const benchCollectorDoc = `A collector for 'connections --collector-dir' in a process of its own, so that its RSS
and CPU are measured apart from the agents', and each process has its own
open files limit. It serves on a free loopback port with TLS and writes into
--dir: ca.crt (the CA agents trust), address, secret (an unlimited
enrollment secret) and pid. It runs until SIGTERM or SIGINT. Its limits are
the collector's defaults except --max-connections and the enrollment rate
(unlimited, so that enrolling the benchmark's agents is not what is
measured).
`

// benchCollectorMode is "collectorbench collector".
func benchCollectorMode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("collector", benchCollectorDoc, stdout)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL of a database the benchmark may fill (env DATABASE_URL; required)")
	dir := fs.String("dir", "", "directory for ca.crt, ca.key, address, secret and pid (required; reused: the same CA)")
	maxConns := fs.Int("max-connections", 100000, "the collector's MaxConnections")
	groups := fs.Bool("heartbeat-groups", true, "the collector stores plain heartbeats of many agents in one statement (false: one transaction each, as before)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dbURL == "" || *dir == "" {
		return usagef("--database-url and --dir are required")
	}
	limit, err := raiseFileLimit(uint64(*maxConns + 1024))
	if err != nil {
		return fmt.Errorf("raise the open files limit: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	c, err := startBenchCollector(ctx, *dbURL, *dir, *maxConns, 0, *groups, log)
	if err != nil {
		return err
	}
	defer c.stop()
	for name, v := range map[string]string{"address": c.addr, "secret": c.secret, "pid": strconv.Itoa(os.Getpid())} {
		if err := os.WriteFile(filepath.Join(*dir, name), []byte(v+"\n"), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	fmt.Fprintf(stdout, "bench collector serving on %s (pid %d, open files limit %d)\n", c.addr, os.Getpid(), limit)
	<-ctx.Done()
	return nil
}

// externalCollector is a "collectorbench collector" running in another process.
type externalCollector struct {
	addr, secret string
	pid          int
}

// readExternalCollector reads what "collectorbench collector" wrote into dir.
func readExternalCollector(dir string) (*externalCollector, error) {
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("bench collector's %s (is 'collectorbench collector --dir %s' running?): %w", name, dir, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	var e externalCollector
	var err error
	if e.addr, err = read("address"); err != nil {
		return nil, err
	}
	if e.secret, err = read("secret"); err != nil {
		return nil, err
	}
	p, err := read("pid")
	if err != nil {
		return nil, err
	}
	if e.pid, err = strconv.Atoi(p); err != nil {
		return nil, fmt.Errorf("bench collector's pid %q: %w", p, err)
	}
	return &e, nil
}

// procCPUSeconds returns the user and system CPU time of process pid so
// far (Linux), or 0.
func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(fields[11], 64)
	k, _ := strconv.ParseFloat(fields[12], 64)
	return (u + k) / 100
}
