package storetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/postgres"
)

// ContainerLabel is set on the containers storetest starts, together with
// ContainerLabel+".host" and ContainerLabel+".pid" naming the test process.
// If a test process dies before [Main] terminates its container (a -timeout
// panic, a kill), the next test process on the same host removes it; to
// remove all of them by hand:
//
//	docker rm -f -v $(docker ps -aq --filter label=org.sessionaudit.storetest)
const ContainerLabel = "org.sessionaudit.storetest"

// Credentials of the database created in the container.
const (
	containerUser     = "sessionaudit"
	containerPassword = "sessionaudit"
	containerDatabase = "sessionaudit"
)

// server is the PostgreSQL server of the test process.
type server struct {
	baseURL   *url.URL      // URL of the maintenance database; path replaced per database
	admin     *pgxpool.Pool // connected to the maintenance database
	version   int           // server_version_num
	describe  string        // for messages: where the server comes from
	container *postgres.PostgresContainer
}

// unavailableError means there is no server to test with: the test is
// skipped, or fails under CI=true.
type unavailableError struct{ reason string }

func (e *unavailableError) Error() string {
	image := os.Getenv(EnvImage)
	if image == "" {
		image = DefaultImage
	}
	return fmt.Sprintf("no PostgreSQL server for the tests: %s is not set and %s.\n"+
		"To fix: run deploy/postgres-test-image/build (builds %s; needs Docker and root), "+
		"or set %s to an image you have (e.g. postgres:15), "+
		"or set %s=postgres://user:password@host:5432/db (a role that may CREATE DATABASE). "+
		"See docs/testing.md.",
		EnvDatabaseURL, e.reason, DefaultImage, EnvImage, EnvDatabaseURL)
}

func startServer() (*server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if raw := os.Getenv(EnvDatabaseURL); raw != "" {
		return connectServer(ctx, raw, EnvDatabaseURL+" ("+redact(raw)+")", nil)
	}
	return startContainer(ctx)
}

// connectServer opens the admin pool on rawURL and checks that its role may
// create databases.
func connectServer(ctx context.Context, rawURL, describe string, ctr *postgres.PostgresContainer) (*server, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return nil, fmt.Errorf("%s must be a URL like postgres://user:password@host:5432/db, got %q",
			describe, redact(rawURL))
	}
	admin, err := pgxpool.New(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", describe, err)
	}
	s := &server{baseURL: u, admin: admin, describe: describe, container: ctr}
	var canCreate bool
	var version string
	err = admin.QueryRow(ctx, `SELECT rolsuper OR rolcreatedb, current_setting('server_version_num')
		FROM pg_roles WHERE rolname = current_user`).Scan(&canCreate, &version)
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("connecting to %s: %w", describe, err)
	}
	if !canCreate {
		admin.Close()
		return nil, fmt.Errorf("the role of %s may not create databases; "+
			"use a superuser or ALTER ROLE %s CREATEDB", describe, u.User.Username())
	}
	if s.version, err = strconv.Atoi(version); err != nil {
		admin.Close()
		return nil, fmt.Errorf("reading server_version_num of %s: %q: %w", describe, version, err)
	}
	return s, nil
}

func startContainer(ctx context.Context) (*server, error) {
	// The ryuk reaper image cannot be pulled without a registry; Main
	// terminates the container instead.
	if _, set := os.LookupEnv("TESTCONTAINERS_RYUK_DISABLED"); !set {
		os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	image := os.Getenv(EnvImage)
	if image == "" {
		image = DefaultImage
	}

	docker, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, &unavailableError{fmt.Sprintf("no Docker client (%v)", err)}
	}
	defer docker.Close()
	if _, err := docker.Ping(ctx, client.PingOptions{}); err != nil {
		return nil, &unavailableError{fmt.Sprintf("Docker is not reachable (%v)", err)}
	}
	setHostOverride(ctx, docker)
	// Checked here so that a missing image skips at once instead of failing
	// (slowly) to pull it.
	if _, err := docker.ImageInspect(ctx, image); err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, &unavailableError{fmt.Sprintf("Docker has no image %s (%s)", image, EnvImage)}
		}
		return nil, fmt.Errorf("inspecting docker image %s: %w", image, err)
	}

	hostname, _ := os.Hostname()
	removeOrphans(ctx, docker, hostname)

	ctr, err := postgres.Run(ctx, image,
		postgres.WithUsername(containerUser),
		postgres.WithPassword(containerPassword),
		postgres.WithDatabase(containerDatabase),
		postgres.BasicWaitStrategies(),
		// The data only lives as long as the test process: keep it in memory.
		testcontainers.WithTmpfs(map[string]string{"/var/lib/postgresql/data": "rw"}),
		testcontainers.WithLabels(map[string]string{
			ContainerLabel:           "1",
			ContainerLabel + ".host": hostname,
			ContainerLabel + ".pid":  strconv.Itoa(os.Getpid()),
		}),
	)
	if err != nil {
		stopErr := testcontainers.TerminateContainer(ctr)
		return nil, errors.Join(fmt.Errorf("starting PostgreSQL container from image %s: %w", image, err), stopErr)
	}
	connURL, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		stopErr := testcontainers.TerminateContainer(ctr)
		return nil, errors.Join(fmt.Errorf("getting the address of the PostgreSQL container (image %s): %w", image, err), stopErr)
	}
	s, err := connectServer(ctx, connURL, fmt.Sprintf("container %.12s (image %s)", ctr.GetContainerID(), image), ctr)
	if err != nil {
		return nil, errors.Join(err, testcontainers.TerminateContainer(ctr))
	}
	return s, nil
}

// removeOrphans removes the containers left by test processes of this host
// that no longer run. Failures are ignored: orphans only cost resources.
func removeOrphans(ctx context.Context, docker *testcontainers.DockerClient, hostname string) {
	list, err := docker.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: client.Filters{}.Add("label", ContainerLabel+".host="+hostname),
	})
	if err != nil {
		return
	}
	for _, c := range list.Items {
		pid, err := strconv.Atoi(c.Labels[ContainerLabel+".pid"])
		if err != nil || pid <= 0 || pid == os.Getpid() || processExists(pid) {
			continue
		}
		_, _ = docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	}
}

// processExists reports whether a process with the given id runs.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// setHostOverride tells testcontainers to reach published ports on
// 127.0.0.1 when the Docker daemon runs in this network namespace, which it
// recognises by the default bridge's interface (docker0) being local and
// having an address in the bridge's subnet.
//
// Without it, testcontainers running where /.dockerenv exists (as on the CI
// machines, which run their own Docker daemon) assumes that the daemon is
// outside, on the default route's gateway, and never reaches the container.
// An explicit TESTCONTAINERS_HOST_OVERRIDE is left alone.
func setHostOverride(ctx context.Context, docker *testcontainers.DockerClient) {
	const env = "TESTCONTAINERS_HOST_OVERRIDE"
	if _, set := os.LookupEnv(env); set || !strings.HasPrefix(docker.DaemonHost(), "unix://") {
		return
	}
	bridge, err := docker.NetworkInspect(ctx, "bridge", client.NetworkInspectOptions{})
	if err != nil {
		return
	}
	name := bridge.Network.Options["com.docker.network.bridge.name"]
	if name == "" {
		name = "docker0"
	}
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return
	}
	addrs, err := iface.Addrs()
	if err != nil {
		return
	}
	for _, cfg := range bridge.Network.IPAM.Config {
		for _, a := range addrs {
			ipNet, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipNet.IP)
			if ok && cfg.Subnet.IsValid() && cfg.Subnet.Contains(ip.Unmap()) {
				os.Setenv(env, "127.0.0.1")
				return
			}
		}
	}
}

// close releases the admin pool and terminates the container, if any.
func (s *server) close() error {
	s.admin.Close()
	if s.container == nil {
		return nil
	}
	if err := testcontainers.TerminateContainer(s.container); err != nil {
		return fmt.Errorf("terminating %s: %w", s.describe, err)
	}
	return nil
}
