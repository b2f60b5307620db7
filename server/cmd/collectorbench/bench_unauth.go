package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sessionaudit/sessionaudit/proto/identity"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

const benchUnauthDoc = `What calls from a peer without a client certificate cost a collector. For each
--collector (a collectorbench binary, "label=path"; this one by default), a
collector is started in a process of its own ('BINARY collector', real TLS,
the given PostgreSQL), then --calls calls of --method, each with a request of
about --bytes, are made at once without a client certificate over
--connections connections, and the collector process's resident memory is
reported: before, the highest sampled during the calls (every 10 ms) and the
kernel's high-water mark (VmHWM). The collector is killed if its RSS passes
--max-rss-mib, and the figure is then reported as "killed above".

The requests are valid protobuf, so that a collector that reads and decodes
them before refusing pays the whole price:
  Ingest             a batch of one Snapshot of logon sessions that carry only a
                     one-character logon id (about 5 bytes each on the wire,
                     a Go struct each once decoded);
  ListLogonSessions  a query whose logon_types list is --bytes long (packed
                     enums, four times that once decoded), with a token that
                     is not valid.

To compare two versions in one run, build the older collectorbench from its
commit (git archive COMMIT | tar -x -C DIR; go build in DIR) and pass both:
  collectorbench unauthenticated --collector before=/tmp/cb-old --collector after=/tmp/cb-new
`

// collectorFlag is the repeated --collector label=path.
type collectorFlag []struct{ label, path string }

func (f *collectorFlag) String() string {
	var s []string
	for _, c := range *f {
		s = append(s, c.label+"="+c.path)
	}
	return strings.Join(s, ",")
}

func (f *collectorFlag) Set(v string) error {
	label, path, ok := strings.Cut(v, "=")
	if !ok || label == "" || path == "" {
		return fmt.Errorf("%q: want label=path", v)
	}
	*f = append(*f, struct{ label, path string }{label, path})
	return nil
}

// benchUnauth is "collectorbench unauthenticated".
func benchUnauth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("unauthenticated", benchUnauthDoc, stdout)
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL of a database the benchmark may fill (env DATABASE_URL; required)")
	var collectors collectorFlag
	fs.Var(&collectors, "collector", "label=path of a collectorbench binary whose collector is measured; repeatable (default: this binary)")
	calls := fs.Int("calls", 40, "calls made at once")
	size := fs.Int("bytes", 1_900_000, "approximate size of each request")
	conns := fs.Int("connections", 1, "connections the calls are spread over")
	method := fs.String("method", "Ingest", "Ingest or ListLogonSessions")
	maxRSS := fs.Int("max-rss-mib", 6144, "kill the collector when its RSS passes this")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *dbURL == "":
		return usagef("--database-url (or DATABASE_URL) is required")
	case *calls < 1 || *conns < 1 || *size < 1 || *maxRSS < 1:
		return usagef("--calls, --connections, --bytes and --max-rss-mib must be positive")
	case *method != "Ingest" && *method != "ListLogonSessions":
		return usagef("--method %q: want Ingest or ListLogonSessions", *method)
	}
	if len(collectors) == 0 {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		_ = collectors.Set("this=" + self)
	}
	body, fullMethod := unauthBody(*method, *size)
	machine(stdout)
	fmt.Fprintf(stdout, "%d %s calls of %d bytes each, no client certificate, over %d connection(s), all at once\n\n",
		*calls, *method, len(body), *conns)
	fmt.Fprintf(stdout, "%-10s %10s %14s %14s %9s  %s\n", "collector", "RSS before", "RSS peak seen", "VmHWM", "seconds", "answers")
	for _, c := range collectors {
		r, err := measureUnauth(ctx, c.path, *dbURL, fullMethod, body, *calls, *conns, int64(*maxRSS)<<10, stderr)
		if err != nil {
			return fmt.Errorf("collector %s (%s): %w", c.label, c.path, err)
		}
		peak, hwm := fmt.Sprintf("%.1f MiB", r.peak), fmt.Sprintf("%.1f MiB", r.hwm)
		if r.killed {
			peak, hwm = fmt.Sprintf("> %d MiB", *maxRSS), "killed"
		}
		fmt.Fprintf(stdout, "%-10s %6.1f MiB %14s %14s %9.2f  %s\n", c.label, r.before, peak, hwm, r.seconds, r.answers)
	}
	return nil
}

// unauthBody returns a request of about size bytes for method, and the
// method's full name.
func unauthBody(method string, size int) ([]byte, string) {
	if method == "ListLogonSessions" {
		req := &pb.ListLogonSessionsRequest{}
		for proto.Size(req) < size { // one byte each: grow in steps
			req.LogonTypes = append(req.LogonTypes, make([]pb.LogonType, max(1, (size-proto.Size(req))/2))...)
			for i := range req.LogonTypes {
				req.LogonTypes[i] = pb.LogonType_LOGON_TYPE_NETWORK
			}
		}
		b, _ := proto.Marshal(req)
		return b, pb.QueryService_ListLogonSessions_FullMethodName
	}
	snap := &pb.Snapshot{}
	req := &pb.IngestRequest{Batch: &pb.Batch{Reports: []*pb.Report{{Sequence: 1, Content: &pb.Report_Snapshot{Snapshot: snap}}}}}
	for proto.Size(req) < size { // about 5 bytes each: grow in steps
		for range max(1, (size-proto.Size(req))/8) {
			snap.LogonSessions = append(snap.LogonSessions, &pb.LogonSession{LogonId: "1"})
		}
	}
	b, _ := proto.Marshal(req)
	return b, pb.CollectorService_Ingest_FullMethodName
}

type unauthResult struct {
	before, peak, hwm float64 // MiB
	seconds           float64
	killed            bool
	answers           string
}

// measureUnauth starts "bin collector", makes the calls, and measures the
// collector's RSS.
func measureUnauth(ctx context.Context, bin, dbURL, method string, body []byte, calls, conns int, maxKB int64, stderr io.Writer) (unauthResult, error) {
	var r unauthResult
	dir, err := os.MkdirTemp("", "collectorbench-unauth-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, bin, "collector", "--database-url", dbURL, "--dir", dir, "--max-connections", "1000")
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	if err := cmd.Start(); err != nil {
		return r, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	pid := cmd.Process.Pid
	var addr string
	for deadline := time.Now().Add(60 * time.Second); ; {
		if b, err := os.ReadFile(filepath.Join(dir, "address")); err == nil && strings.HasSuffix(string(b), "\n") {
			addr = strings.TrimSpace(string(b))
			break
		}
		select {
		case err := <-exited:
			return r, fmt.Errorf("the collector exited before serving: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return r, errors.New("the collector did not start within 60 s")
		}
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return r, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return r, errors.New("ca.crt holds no certificate")
	}
	time.Sleep(time.Second) // let the collector settle
	r.before = float64(procStatus(pid, "VmRSS")) / 1024

	var clients []*grpc.ClientConn
	for range conns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(identity.ClientTLSConfig(pool, "localhost", nil))))
		if err != nil {
			return r, err
		}
		defer cc.Close()
		clients = append(clients, cc)
	}

	// Sample the collector's RSS while the calls run, and kill it above
	// the bound.
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	var peakKB int64
	go func() {
		defer close(sampled)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			kb := procStatus(pid, "VmRSS")
			peakKB = max(peakKB, kb)
			if kb > maxKB && !r.killed {
				r.killed = true
				_ = cmd.Process.Kill()
			}
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()

	callCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer not-a-token")
	var mu sync.Mutex
	codeCount := map[codes.Code]int{}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range calls {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(callCtx, 2*time.Minute)
			defer cancel()
			in, out := body, []byte(nil)
			err := clients[i%len(clients)].Invoke(cctx, method, &in, &out, grpc.ForceCodec(rawCodec{}))
			mu.Lock()
			codeCount[status.Code(err)]++
			mu.Unlock()
		})
	}
	wg.Wait()
	r.seconds = time.Since(start).Seconds()
	time.Sleep(500 * time.Millisecond) // what the collector still does after answering
	close(stopSampling)
	<-sampled
	r.peak = float64(peakKB) / 1024
	if !r.killed {
		r.hwm = float64(procStatus(pid, "VmHWM")) / 1024
	}
	var answers []string
	for code, n := range codeCount {
		answers = append(answers, fmt.Sprintf("%d %s", n, code))
	}
	slices.Sort(answers)
	r.answers = strings.Join(answers, ", ")
	return r, nil
}

// rawCodec sends a []byte as the request as it is (and takes the answer
// as it is).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }
