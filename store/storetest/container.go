//go:build unix

package storetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/modules/postgres"
)

// Credentials of the database created in the container.
const (
	containerUser     = "sessionaudit"
	containerPassword = "sessionaudit"
	containerDatabase = "sessionaudit"
)

// startContainer starts PostgreSQL from the image named by EnvImage with
// testcontainers, or reports why it cannot as an *unavailableError.
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
	stop := func() error { return testcontainers.TerminateContainer(ctr) }
	s, err := connectServer(ctx, connURL, fmt.Sprintf("container %.12s (image %s)", ctr.GetContainerID(), image), stop)
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

// processExists reports whether a process with the given id runs.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
