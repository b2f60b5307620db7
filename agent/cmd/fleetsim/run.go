package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sessionaudit/sessionaudit/agent/fleet"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/agent/uplink"
	"github.com/sessionaudit/sessionaudit/proto/identity"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

const runDoc = `Simulated agents enroll with an enrollment secret, report a simulated
history (a day by default, generated in seconds on a manual clock) to a running
collector, and wait until the collector acknowledged everything. Then, as an
analyst with an API token, it asks the collector's QueryService who was on the
file server at its busiest moment, prints the answer as a table, and checks it
and every other interval of every host against what the agents reported
(start equal, end within the bounds the reports imply). Exit status 1 on any
difference. 'make demo' runs it against a collector it starts.

The hosts are, in turn: a file server, a domain controller, a member server,
then workstations. The history ends a minute before now (the collector
refuses reports from the future).
`

// runMode is "fleetsim run".
func runMode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", runDoc, stdout)
	address := fs.String("address", "", "the collector's gRPC address, host:port (required)")
	serverName := fs.String("server-name", "", "the name the collector's certificate must carry (default the host of --address)")
	caCert := fs.String("ca-cert", "", "the CA certificate the collector's chains to, PEM: init-pki's agent-ca.crt (required)")
	secret := fs.String("enrollment-secret", os.Getenv("FLEETSIM_ENROLLMENT_SECRET"), "enrollment secret allowing --hosts enrollments (env FLEETSIM_ENROLLMENT_SECRET; required)")
	token := fs.String("token", os.Getenv("FLEETSIM_TOKEN"), "API token for the query (env FLEETSIM_TOKEN); empty: no query, no check")
	hosts := fs.Int("hosts", 6, "number of simulated hosts, 1 to 1000")
	history := fs.Duration("history", 24*time.Hour, "length of the simulated history, ending a minute before now (at most 28 days)")
	poll := fs.Duration("poll", time.Minute, "simulated poll interval of the agents")
	seed := fs.Uint64("seed", 1, "seed of the simulation: the same seed gives the same hosts and sessions")
	stateDir := fs.String("state-dir", "", "directory for the agents' keys and certificates, one subdirectory each (default a temporary directory, removed at exit)")
	timeout := fs.Duration("timeout", 2*time.Minute, "longest time for enrollment and delivery")
	verbose := fs.Bool("v", false, "log the uplinks' warnings (retries, pushback) to stderr")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch {
	case *address == "":
		return usagef("--address is required")
	case *caCert == "":
		return usagef("--ca-cert is required")
	case *secret == "":
		return usagef("--enrollment-secret (or FLEETSIM_ENROLLMENT_SECRET) is required")
	case *hosts < 1 || *hosts > 1000:
		return usagef("--hosts %d: want 1 to 1000", *hosts)
	case *poll < time.Second || *history < *poll || *history > 28*24*time.Hour:
		return usagef("--poll %v, --history %v: want a poll of at least 1s and a history of one poll to 28 days", *poll, *history)
	}
	pool, err := uplink.LoadCAFile(*caCert)
	if err != nil {
		return err
	}
	if *stateDir == "" {
		dir, err := os.MkdirTemp("", "fleetsim-")
		if err != nil {
			return fmt.Errorf("state directory: %w", err)
		}
		defer os.RemoveAll(dir)
		*stateDir = dir
	}
	level := slog.LevelError + 1
	if *verbose {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var profiles []simulate.Profile
	for i := range *hosts {
		profiles = append(profiles, demoProfiles[min(i, len(demoProfiles)-1)])
	}
	end := time.Now().UTC().Truncate(time.Minute).Add(-time.Minute)
	start := end.Add(-*history)
	f, err := fleet.New(fleet.Config{
		Address: *address, ServerName: *serverName, CAPool: pool, EnrollmentSecret: *secret, StateDir: *stateDir,
		Profiles: profiles, Seed: *seed, Start: start, Poll: *poll, Logger: logger,
	})
	if err != nil {
		return err
	}
	defer f.Stop()
	tctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	t0 := time.Now()
	if err := waitServing(tctx, *address, *serverName, pool); err != nil {
		return err
	}
	if err := f.Enroll(tctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fleetsim: %d agents enrolled with the secret, each with its own key and certificate (%v)\n",
		len(f.Agents), time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	f.Start(ctx)
	if err := f.Advance(tctx, end); err != nil {
		return err
	}
	if err := f.Delivered(tctx); err != nil {
		return err
	}
	for _, a := range f.Agents {
		c := a.Counts()
		fmt.Fprintf(stdout, "  %-10s %-17s %-14s %5d reports (%d snapshots, %d deltas, %d heartbeats)\n",
			a.Name, a.Profile, a.Client.Identity().AgentID, c.Reports, c.Snapshots, c.Deltas, c.Heartbeats)
	}
	c := f.Counts()
	fmt.Fprintf(stdout, "fleetsim: %v of history, %d reports acknowledged by the collector in %v\n\n",
		*history, c.Reports, time.Since(t0).Round(time.Millisecond))
	if *token == "" {
		fmt.Fprintln(stdout, "fleetsim: no --token: no query asked")
		return nil
	}
	return query(tctx, stdout, *address, *serverName, pool, *token, f)
}

// demoProfiles is the demo's fleet: one of each kind, then workstations.
var demoProfiles = []simulate.Profile{simulate.FileServer, simulate.DomainController, simulate.Server, simulate.Workstation}

// query asks the QueryService who was on the first file server at its
// busiest moment, prints the answer, and compares it and every interval of
// the fleet with the ground truth.
func query(ctx context.Context, out io.Writer, address, serverName string, pool *x509.CertPool, token string, f *fleet.Fleet) error {
	conn, err := analystConn(address, serverName, pool)
	if err != nil {
		return err
	}
	defer conn.Close()
	r := fleet.QueryReader{Client: pb.NewQueryServiceClient(conn), Token: token}

	var fs *fleet.Agent
	for _, a := range f.Agents {
		if a.Profile == simulate.FileServer {
			fs = a
			break
		}
	}
	if fs == nil {
		fs = f.Agents[0]
	}
	at := fs.Truth.Busiest
	got, err := r.WhoWasOn(ctx, fs.Name, at)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Who was on %s at %s? (QueryService.WhoWasOn, as an analyst with an API token)\n\n", fs.Name, at.Format(time.RFC3339))
	printPresence(out, got)
	want := fs.Truth.At(at)
	if diff := samePresence(got, want); diff != "" {
		return fmt.Errorf("the answer for %s at %s differs from what its agent reported: %s", fs.Name, at.Format(time.RFC3339), diff)
	}
	fmt.Fprintf(out, "\nThe answer matches what %s's agent reported: %d sessions at that moment.\n", fs.Name, len(want))

	cmp, err := fleet.Compare(ctx, r, f.Truths())
	if err != nil {
		return err
	}
	if n := len(cmp.Mismatches); n > 0 {
		for i, m := range cmp.Mismatches {
			if i == 20 {
				fmt.Fprintf(out, "  ... and %d more\n", n-i)
				break
			}
			fmt.Fprintf(out, "  MISMATCH %v\n", m)
		}
		return fmt.Errorf("%d of %d intervals differ between the store and what the agents reported", n, cmp.Intervals)
	}
	fmt.Fprintf(out, "Every interval of every host checked the same way (%d intervals of %d hosts, %d queries): all match.\n",
		cmp.Intervals, cmp.Hosts, cmp.Queries)
	return nil
}

// samePresence returns "" when got holds exactly the intervals of want
// (kind, key, start), else what differs.
func samePresence(got []fleet.Observed, want []*fleet.Interval) string {
	key := func(k fleet.Kind, id string, t time.Time) string {
		return fmt.Sprintf("%s %s %d", k, id, t.Truncate(time.Microsecond).UnixMicro())
	}
	g := map[string]bool{}
	for _, o := range got {
		g[key(o.Kind, o.Key, o.Start)] = true
	}
	var missing []string
	for _, iv := range want {
		k := key(iv.Kind, iv.Key, iv.Start)
		if !g[k] {
			missing = append(missing, iv.String())
		}
		delete(g, k)
	}
	var extra []string
	for k := range g {
		extra = append(extra, k)
	}
	if len(missing)+len(extra) == 0 && len(want) > 0 {
		return ""
	}
	return fmt.Sprintf("missing %v, extra %v", missing, extra)
}

// printPresence prints a WhoWasOn answer as two tables.
func printPresence(out io.Writer, got []fleet.Observed) {
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LOGON SESSION\tACCOUNT\tTYPE\tPACKAGE\tSTART (UTC)\tEND")
	nl, ns := 0, 0
	for _, o := range got {
		if o.Kind == fleet.Logon {
			nl++
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Key, dash(o.Account), logonTypeText(o.LogonTypeRaw), dash(o.Package),
				o.Start.UTC().Format("2006-01-02 15:04"), endText(o))
		}
	}
	fmt.Fprintln(tw, "\t\t\t\t\t")
	fmt.Fprintln(tw, "SMB SESSION FROM\tUSER\t\t\tSTART (UTC)\tEND")
	for _, o := range got {
		if o.Kind == fleet.Server {
			ns++
			computer, user, _ := strings.Cut(o.Key, `\`)
			fmt.Fprintf(tw, "%s\t%s\t\t\t%s\t%s\n", computer, user, o.Start.UTC().Format("2006-01-02 15:04"), endText(o))
		}
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "\n%d logon sessions and %d SMB sessions.\n", nl, ns)
}

// logonTypeText names a raw Win32_LogonSession.LogonType as every surface
// does (pb.LogonTypeName), "-" when absent.
func logonTypeText(raw *uint32) string {
	if raw == nil {
		return "-"
	}
	return pb.LogonTypeName(*raw)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func endText(o fleet.Observed) string {
	if o.Open {
		return "open"
	}
	return fmt.Sprintf("between %s and %s", o.LastSeen.UTC().Format("15:04"), o.EndBefore.UTC().Format("15:04"))
}

// analystConn dials the collector as an analyst tool: TLS verified against
// pool, no client certificate (the API token authenticates).
func analystConn(address, serverName string, pool *x509.CertPool) (*grpc.ClientConn, error) {
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(address)
	}
	conn, err := grpc.NewClient(address, grpc.WithTransportCredentials(credentials.NewTLS(identity.ClientTLSConfig(pool, serverName, nil))))
	if err != nil {
		return nil, fmt.Errorf("connection to the collector at %s: %w", address, err)
	}
	return conn, nil
}

// waitServing waits until the collector's health service says SERVING (its
// store answers), or ctx is done.
func waitServing(ctx context.Context, address, serverName string, pool *x509.CertPool) error {
	conn, err := analystConn(address, serverName, pool)
	if err != nil {
		return err
	}
	defer conn.Close()
	h := healthpb.NewHealthClient(conn)
	var last string
	for {
		resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = resp.GetStatus().String()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the collector at %s is not SERVING (last: %s): %w", address, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
