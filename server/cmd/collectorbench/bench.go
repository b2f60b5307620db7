package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/sessionaudit/sessionaudit/server"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/store"
)

// benchCollector is a collector served in this process for the benchmarks,
// on a free loopback port, with real TLS and the given store.
type benchCollector struct {
	srv    *server.Server
	st     *store.Store
	addr   string
	pool   *x509.CertPool
	secret string
	done   chan error
}

// startBenchCollector migrates the database, makes a CA and a server
// certificate, and serves a collector whose limits are its defaults except
// maxConns and the enrollment rate (raised so that enrolling the benchmark's
// agents is not the bottleneck being measured). It creates an unlimited
// enrollment secret.
//
// With caDir, the CA is loaded from caDir (ca.crt, ca.key) or made and
// written there, so that agents' identities kept from an earlier run stay
// valid.
func startBenchCollector(ctx context.Context, databaseURL, caDir string, maxConns, maxIngests int, groups bool, log *slog.Logger) (*benchCollector, error) {
	if err := store.Migrate(ctx, databaseURL); err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, databaseURL)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if err := st.EnsurePartitionsBetween(ctx, now.AddDate(0, -1, 0), now.AddDate(0, 3, 0)); err != nil {
		st.Close()
		return nil, err
	}
	ca, err := benchCA(caDir, now)
	if err != nil {
		st.Close()
		return nil, err
	}
	trust, err := pki.NewTrust([]*x509.Certificate{ca.Certificate()}, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	sc, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 24*time.Hour, now)
	if err != nil {
		st.Close()
		return nil, err
	}
	srv, err := server.New(server.Config{
		CA: ca, ServerCertificate: sc, Trust: trust, MaxConnections: maxConns, MaxConcurrentIngests: maxIngests,
		EnrollPerSecond: 1e6, EnrollBurst: 1e6, RetryDelay: time.Second, Logger: log, NoHeartbeatGroups: !groups,
	}, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	_, secret, err := st.CreateEnrollmentSecret(ctx, "collectorbench", 0, now.Add(24*time.Hour))
	if err != nil {
		st.Close()
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("listen on loopback: %w", err)
	}
	c := &benchCollector{srv: srv, st: st, addr: lis.Addr().String(), secret: secret, done: make(chan error, 1)}
	c.pool = x509.NewCertPool()
	c.pool.AddCert(ca.Certificate())
	go func() { c.done <- srv.Serve(lis) }()
	return c, nil
}

// benchCA makes the benchmark's CA, or loads it from dir when dir holds one
// (writing it there otherwise).
func benchCA(dir string, now time.Time) (*pki.CA, error) {
	if dir == "" {
		return pki.NewCA("collectorbench CA", 30*24*time.Hour, now)
	}
	cert, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if _, err := os.Stat(cert); err == nil {
		return pki.LoadCA(cert, key)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench CA directory: %w", err)
	}
	ca, err := pki.NewCA("collectorbench CA", 30*24*time.Hour, now)
	if err != nil {
		return nil, err
	}
	return ca, ca.WriteFiles(cert, key, false)
}

// stop shuts the collector down and closes the store.
func (c *benchCollector) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = c.srv.Shutdown(ctx)
	<-c.done
	c.st.Close()
}

// sourceDialer returns a dial option that spreads connections over n
// loopback source addresses (127.0.0.2 ...), so that many connections to
// one collector port do not run out of ephemeral ports (about 28,000 per
// source address with Linux's default range).
func sourceDialer(n int) grpc.DialOption {
	var next atomic.Uint32
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		i := next.Add(1) % uint32(n)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(i/250), byte(2+i%250))}}
		return d.DialContext(ctx, "tcp", addr)
	})
}

// stateRoot returns a directory for the agents' identities: under
// /dev/shm when it exists (thousands of small files, flushed on every
// write, would measure the disk), else the temporary directory.
func stateRoot() (string, error) {
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	return os.MkdirTemp(base, "collectorbench-")
}

// percentile returns the p-th percentile (0 to 100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func sortDurations(d []time.Duration) []time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d
}

// procStatus returns a field of /proc/<pid>/status in kB (VmRSS, VmHWM), or
// 0 where there is no /proc.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// cpuSeconds returns the user and system CPU time of this process so far
// (Linux), or 0.
func cpuSeconds() float64 { return procCPUSeconds(os.Getpid()) }

// machine describes the machine the benchmark ran on.
func machine(w io.Writer) {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	memTotal := procMeminfo("MemTotal")
	fmt.Fprintf(w, "machine: %d CPUs (%s), %.1f GiB RAM, %s/%s, %s\n", runtime.NumCPU(), model,
		float64(memTotal)/(1<<20), runtime.GOOS, runtime.GOARCH, runtime.Version())
}

func procMeminfo(field string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
