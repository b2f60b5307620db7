//go:build linux

package e2e

// The chaos suite's machinery on the collector's side: a PostgreSQL
// cluster of its own that it can crash and restart, collector processes
// it can kill with SIGKILL, and a TCP balancer in front of two collectors.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// chaosPGBin is where Debian's postgresql-15 package puts the server's
// programs; SESSIONAUDIT_PG_BIN overrides it.
const chaosPGBin = "/usr/lib/postgresql/15/bin"

// chaosEnv is what every fault's scenario shares: the PostgreSQL cluster,
// the collector binary and the PKI its processes serve with.
type chaosEnv struct {
	dir       string // the run's directory: logs, PKI, agents' state
	pg        *chaosPG
	collector string // the sessionaudit-collector binary
	pkiDir    string
}

// newChaosEnv starts the cluster, builds (or takes) the collector binary
// and writes the PKI. It fails the test when something is missing: the
// suite only runs when asked for (-chaos), and then it must run.
func newChaosEnv(t *testing.T) *chaosEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "sessionaudit-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	// The cluster's directory must be reachable by the postgres user
	// when the suite runs as root.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() && *chaosLogs != "" {
			if n, err := chaosCopyLogs(dir, *chaosLogs); err != nil {
				t.Errorf("chaos: copying the logs to %s: %v", *chaosLogs, err)
			} else {
				t.Logf("chaos: %d logs (collectors, agents, PostgreSQL) copied to %s", n, *chaosLogs)
			}
		}
		if t.Failed() && *chaosKeep {
			t.Logf("chaos: kept %s (logs of the collectors, agents and PostgreSQL)", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	env := &chaosEnv{dir: dir, pkiDir: filepath.Join(dir, "pki")}
	env.collector = *chaosCollectorBin
	if env.collector == "" {
		env.collector = filepath.Join(dir, "bin", "sessionaudit-collector")
		start := time.Now()
		out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", env.collector,
			"github.com/sessionaudit/sessionaudit/server/cmd/sessionaudit-collector").CombinedOutput()
		if err != nil {
			t.Fatalf("chaos: go build sessionaudit-collector: %v\n%s", err, out)
		}
		t.Logf("chaos: built sessionaudit-collector in %v", time.Since(start).Round(time.Millisecond))
	}
	out, err := exec.Command(env.collector, "init-pki", "--pki-dir", env.pkiDir, "--dns", "localhost", "--ip", "127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("chaos: sessionaudit-collector init-pki: %v\n%s", err, out)
	}
	env.pg = startChaosPG(t, filepath.Join(dir, "pg"))
	return env
}

// chaosPG is a PostgreSQL cluster in a directory of the suite's own,
// started with pg_ctl: unlike a shared server it can be crashed (pg_ctl
// stop -m immediate: every server process killed, recovery from the WAL at
// the next start) without harming anyone else's tests.
type chaosPG struct {
	t       *testing.T
	bin     string
	dir     string // data is dir/data, the socket and log in dir
	port    int
	asUser  string // run the programs as this user (root cannot run them)
	running bool
}

// startChaosPG initialises a cluster in dir and starts it on a free
// loopback port. Durability settings: fsync off (the suite crashes the
// server's processes, never the machine, so the kernel keeps what they
// wrote), synchronous_commit on (a commit the collector acknowledges is
// in the WAL the restarted server recovers from).
func startChaosPG(t *testing.T, dir string) *chaosPG {
	t.Helper()
	bin := os.Getenv("SESSIONAUDIT_PG_BIN")
	if bin == "" {
		bin = chaosPGBin
	}
	if _, err := os.Stat(filepath.Join(bin, "pg_ctl")); err != nil {
		t.Fatalf("chaos: PostgreSQL 15's programs are not in %s (apt-get install postgresql-15, or set SESSIONAUDIT_PG_BIN): %v", bin, err)
	}
	pg := &chaosPG{t: t, bin: bin, dir: dir, port: chaosFreePort(t)}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: the cluster belongs to the
		// postgres user that Debian's package creates.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("chaos: running as root, and no postgres user to own the cluster: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		pg.asUser = "postgres"
	}
	if out, err := pg.run("initdb", "-D", pg.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		t.Fatalf("chaos: initdb: %v\n%s", err, out)
	}
	pg.start()
	t.Cleanup(func() {
		if pg.running {
			_, _ = pg.run("pg_ctl", "-D", pg.data(), "-m", "immediate", "-w", "stop")
		}
	})
	return pg
}

func (pg *chaosPG) data() string { return filepath.Join(pg.dir, "data") }

// run runs one of PostgreSQL's programs, as the cluster's owner.
func (pg *chaosPG) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(pg.bin, name)
	var cmd *exec.Cmd
	if pg.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", pg.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = pg.dir
	return cmd.CombinedOutput()
}

// start starts the server and waits until it accepts connections.
func (pg *chaosPG) start() {
	pg.t.Helper()
	opts := strings.Join([]string{
		"-c port=" + strconv.Itoa(pg.port), "-c listen_addresses=127.0.0.1", "-c unix_socket_directories=" + pg.dir,
		"-c fsync=off", "-c full_page_writes=off", "-c synchronous_commit=on", "-c max_connections=200",
	}, " ")
	if out, err := pg.run("pg_ctl", "-D", pg.data(), "-l", filepath.Join(pg.dir, "postgresql.log"), "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(pg.dir, "postgresql.log"))
		pg.t.Fatalf("chaos: pg_ctl start: %v\n%s\n%s", err, out, chaosTail(log, 20))
	}
	pg.running = true
}

// crash kills every server process (pg_ctl stop -m immediate): open
// transactions are lost, committed ones come back by recovery at start.
func (pg *chaosPG) crash() {
	pg.t.Helper()
	if out, err := pg.run("pg_ctl", "-D", pg.data(), "-m", "immediate", "-w", "stop"); err != nil {
		pg.t.Fatalf("chaos: pg_ctl stop -m immediate: %v\n%s", err, out)
	}
	pg.running = false
}

// url is the address of database db, as the cluster's superuser.
func (pg *chaosPG) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", pg.port, db)
}

// newDatabase creates an empty database named after the scenario.
func (pg *chaosPG) newDatabase(name string) string {
	pg.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.url("postgres"))
	if err != nil {
		pg.t.Fatalf("chaos: connect to the cluster: %v", err)
	}
	defer conn.Close(ctx)
	db := "chaos_" + strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || '0' <= r && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(name))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		pg.t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		pg.t.Fatal(err)
	}
	return pg.url(db)
}

// chaosCollector is one sessionaudit-collector process, serving on a port
// that stays its own across restarts.
type chaosCollector struct {
	t      *testing.T
	env    *chaosEnv
	name   string
	dbURL  string
	Addr   string
	starts int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// startChaosCollector starts a collector process on a free port.
func startChaosCollector(t *testing.T, env *chaosEnv, name, dbURL string) *chaosCollector {
	t.Helper()
	c := &chaosCollector{t: t, env: env, name: name, dbURL: dbURL, Addr: fmt.Sprintf("127.0.0.1:%d", chaosFreePort(t))}
	c.start()
	t.Cleanup(c.kill)
	return c
}

// start starts the process (again) and waits until it logs that it serves.
func (c *chaosCollector) start() {
	c.t.Helper()
	c.starts++
	logPath := filepath.Join(c.env.dir, fmt.Sprintf("%s-%s-%d.log", chaosSafeName(c.t.Name()), c.name, c.starts))
	logFile, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.env.collector, "serve", "--database-url", c.dbURL, "--pki-dir", c.env.pkiDir,
		"--listen", c.Addr, "--http-listen", "", "--metrics-listen", "", "--log-format", "text", "--log-level", "info",
		"--shutdown-timeout", "5s")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		c.t.Fatalf("chaos: start %s: %v", c.name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	for {
		log, _ := os.ReadFile(logPath)
		if bytes.Contains(log, []byte(`msg="collector serving"`)) {
			return
		}
		select {
		case <-done:
			c.t.Fatalf("chaos: %s exited at start:\n%s", c.name, chaosTail(log, 20))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("chaos: %s did not serve within 60 s:\n%s", c.name, chaosTail(log, 20))
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone: no graceful
// stop, calls in flight are cut wherever they are.
func (c *chaosCollector) kill() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// chaosBalancer is a TCP balancer on one loopback address in front of
// several collectors, as a load balancer in front of a collector pool: each
// new connection goes to the next backend in turn that accepts it. A
// backend that died takes its connections with it; the agents reconnect
// and land on one that lives.
type chaosBalancer struct {
	Addr string
	lis  net.Listener

	mu       sync.Mutex
	backends []string
	next     int
	conns    map[net.Conn]bool
	open     map[string]int // connections open, by backend
}

// openTo returns the connections open to each backend.
func (b *chaosBalancer) openTo() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]int, len(b.open))
	for k, v := range b.open {
		out[k] = v
	}
	return out
}

func startChaosBalancer(t *testing.T, backends ...string) *chaosBalancer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &chaosBalancer{Addr: lis.Addr().String(), lis: lis, backends: backends, conns: map[net.Conn]bool{}, open: map[string]int{}}
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *chaosBalancer) serve() {
	for {
		c, err := b.lis.Accept()
		if err != nil {
			return
		}
		go b.forward(c)
	}
}

// forward connects c to the next backend that accepts.
func (b *chaosBalancer) forward(c net.Conn) {
	b.mu.Lock()
	n := len(b.backends)
	first := b.next
	b.next++
	backends := append([]string(nil), b.backends...)
	b.mu.Unlock()
	var up net.Conn
	var backend string
	for i := 0; i < n && up == nil; i++ {
		backend = backends[(first+i)%n]
		up, _ = net.DialTimeout("tcp", backend, time.Second)
	}
	if up == nil {
		c.Close()
		return
	}
	b.mu.Lock()
	b.conns[c], b.conns[up] = true, true
	b.open[backend]++
	b.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		// Either side gone: the other goes too, as when a balancer
		// loses a backend.
		dst.Close()
		src.Close()
	}
	wg.Add(2)
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
	b.mu.Lock()
	delete(b.conns, c)
	delete(b.conns, up)
	b.open[backend]--
	b.mu.Unlock()
}

func (b *chaosBalancer) close() {
	b.lis.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.Close()
	}
}

// chaosCopyLogs copies every *.log under dir to the same place under to.
func chaosCopyLogs(dir, to string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".log") {
			return nil // what cannot be read (the cluster's files) is not a log
		}
		rel, _ := filepath.Rel(dir, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		dst := filepath.Join(to, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		n++
		return os.WriteFile(dst, b, 0o644)
	})
	return n, err
}

// chaosFreePort returns a loopback port nobody listens on now.
func chaosFreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// chaosTail returns the last n lines of b.
func chaosTail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// chaosSafeName makes a test name usable in a file name.
func chaosSafeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r == os.PathSeparator {
			return '_'
		}
		return r
	}, s)
}

// chaosMountTmpfs mounts a tmpfs of size bytes on dir: a disk that fills.
// It returns an error when this process may not mount (not root, or a
// container without CAP_SYS_ADMIN).
func chaosMountTmpfs(t *testing.T, dir string, size int) error {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	t.Cleanup(func() {
		for i := 0; i < 50; i++ {
			err := syscall.Unmount(dir, 0)
			if err == nil || !errors.Is(err, syscall.EBUSY) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Unmount(dir, syscall.MNT_DETACH)
	})
	return nil
}
