// Command demo runs sessionaudit end to end on one machine for the README's
// quickstart: it migrates a PostgreSQL database, lets a few simulated Windows
// hosts report a day of sessions (snapshots, deltas and heartbeats, as the
// agent makes them), stores them as intervals, and prints an analyst's
// answer to "who was on the file server at T".
//
// Run it through deploy/demo/run (make demo), which provides PostgreSQL.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/change"
	"github.com/sessionaudit/sessionaudit/agent/clock"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server"
	"github.com/sessionaudit/sessionaudit/store"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type options struct {
	databaseURL string
	hosts       int
	history     time.Duration
	poll        time.Duration
	batch       int
	seed        uint64
}

func run(args []string, out io.Writer) error {
	var o options
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.StringVar(&o.databaseURL, "database-url", os.Getenv("DATABASE_URL"), "PostgreSQL URL (default $DATABASE_URL)")
	fs.IntVar(&o.hosts, "hosts", 6, "number of simulated hosts (1 to 1000)")
	fs.DurationVar(&o.history, "history", 24*time.Hour, "length of the simulated history, ending now")
	fs.DurationVar(&o.poll, "poll", time.Minute, "simulated poll interval of the agents")
	fs.IntVar(&o.batch, "batch", 60, "reports per ingest batch")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the simulation (same seed, same hosts)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: demo --database-url URL [flags]\n\n"+
			"Simulates Windows hosts reporting their sessions into sessionaudit's store,\n"+
			"then answers one analyst's question. Normally run by 'make demo'.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case o.databaseURL == "":
		return errors.New("--database-url (or DATABASE_URL) is required")
	case o.hosts < 1 || o.hosts > 1000:
		return fmt.Errorf("--hosts %d: want 1 to 1000", o.hosts)
	case o.poll < time.Second || o.history < o.poll:
		return fmt.Errorf("--poll %v and --history %v: want a poll of at least 1s and a history of at least one poll", o.poll, o.history)
	case o.batch < 1:
		return fmt.Errorf("--batch %d: want at least 1", o.batch)
	}

	ctx := context.Background()
	start := time.Now()
	if err := store.Migrate(ctx, o.databaseURL); err != nil {
		return err
	}
	st, err := store.Open(ctx, o.databaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	end := time.Now().UTC().Truncate(time.Minute)
	from := end.Add(-o.history)
	if err := st.EnsurePartitionsBetween(ctx, from.Add(-31*24*time.Hour), end.Add(62*24*time.Hour)); err != nil {
		return err
	}
	fmt.Fprintf(out, "demo: database migrated; simulating %d hosts over %v (one poll every %v)\n", o.hosts, o.history, o.poll)

	var fileServer string
	var busiest truth // the file server's busiest moment, as its agent saw it
	var totals counts
	for i := range o.hosts {
		profile := demoProfiles[i%len(demoProfiles)]
		h, err := newHost(o, i, profile, from)
		if err != nil {
			return err
		}
		var t *truth
		if profile == simulate.FileServer && fileServer == "" {
			t = &busiest
		}
		c, err := h.report(ctx, st, end, o, t)
		if err != nil {
			return fmt.Errorf("host %s: %w", h.src.Hostname(), err)
		}
		totals.add(c)
		fmt.Fprintf(out, "  %-10s %-12s %5d reports (%d snapshots, %d deltas, %d heartbeats)\n",
			h.src.Hostname(), profile, c.reports, c.snapshots, c.deltas, c.heartbeats)
		if profile == simulate.FileServer && fileServer == "" {
			fileServer = h.src.Hostname()
		}
	}
	fmt.Fprintf(out, "demo: stored %d reports from %d hosts in %v\n\n", totals.reports, o.hosts, time.Since(start).Round(time.Millisecond))

	return printWhoWasOn(ctx, out, st, fileServer, busiest)
}

// truth is what an agent saw at one moment: the ground truth a query about
// that moment must give back.
type truth struct {
	at     time.Time
	logon  map[string]bool // LogonIds
	server map[string]bool // ComputerName + "\\" + UserName
}

func (t *truth) observe(snap *pb.Snapshot) {
	if len(snap.GetLogonSessions())+len(snap.GetServerSessions()) <= len(t.logon)+len(t.server) {
		return
	}
	t.at = snap.GetTakenAt().AsTime()
	t.logon, t.server = map[string]bool{}, map[string]bool{}
	for _, ls := range snap.GetLogonSessions() {
		t.logon[ls.GetLogonId()] = true
	}
	for _, ss := range snap.GetServerSessions() {
		t.server[ss.GetComputerName()+`\`+ss.GetUserName()] = true
	}
}

// demoProfiles is the fleet: one of each kind, then workstations.
var demoProfiles = []simulate.Profile{simulate.FileServer, simulate.DomainController, simulate.Server,
	simulate.Workstation, simulate.Workstation, simulate.Workstation}

type host struct {
	clk     *clock.Manual
	src     *simulate.Source
	tracker *change.Tracker
	agentID string
}

func newHost(o options, i int, profile simulate.Profile, from time.Time) (*host, error) {
	clk := clock.NewManual(from)
	src, err := simulate.New(simulate.Config{Seed: o.seed*1000 + uint64(i), Profile: profile, Clock: clk, AgentVersion: "demo"})
	if err != nil {
		return nil, err
	}
	tr, err := change.NewTracker(change.Options{FirstSequence: 1, Clock: clk})
	if err != nil {
		return nil, err
	}
	return &host{clk: clk, src: src, tracker: tr, agentID: fmt.Sprintf("demo-agent-%03d", i)}, nil
}

type counts struct{ reports, snapshots, deltas, heartbeats int }

func (c *counts) add(o counts) {
	c.reports += o.reports
	c.snapshots += o.snapshots
	c.deltas += o.deltas
	c.heartbeats += o.heartbeats
}

// report polls the simulated host until end, as an agent would, and ingests
// its reports in batches, as the collector would.
// When t is not nil, it keeps the busiest moment the host's agent saw.
func (h *host) report(ctx context.Context, st *store.Store, end time.Time, o options, t *truth) (counts, error) {
	var c counts
	var batch []store.Report
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := st.Ingest(ctx, h.agentID, h.src.MachineGUID(), batch)
		batch = batch[:0]
		if errors.Is(err, store.ErrResyncRequired) {
			h.tracker.RequestResync()
			return nil
		}
		return err
	}
	for ; !h.clk.Now().After(end); h.clk.Advance(o.poll) {
		snap, err := h.src.Snapshot(ctx)
		if err != nil {
			return c, err
		}
		if t != nil && len(snap.GetErrors()) == 0 {
			t.observe(snap)
		}
		rep, err := h.tracker.Next(snap)
		if err != nil {
			return c, err
		}
		c.reports++
		switch rep.GetContent().(type) {
		case *pb.Report_Snapshot:
			c.snapshots++
		case *pb.Report_Delta:
			c.deltas++
		case *pb.Report_Heartbeat:
			c.heartbeats++
		}
		r, err := server.ReportFromProto(rep)
		if err != nil {
			return c, err
		}
		batch = append(batch, r)
		if len(batch) >= o.batch {
			if err := flush(); err != nil {
				return c, err
			}
		}
	}
	return c, flush()
}

// printWhoWasOn asks the store who was on hostname at the moment of want,
// prints the answer, and checks it against what the agent saw then.
func printWhoWasOn(ctx context.Context, out io.Writer, st *store.Store, hostname string, want truth) error {
	at := want.at
	fmt.Fprintf(out, "Who was on %s at %s?\n\n", hostname, at.Format(time.RFC3339))
	var logon []store.LogonInterval
	var smb []store.ServerInterval
	cursor := ""
	for {
		p, err := st.WhoWasOn(ctx, store.WhoWasOnQuery{Host: hostname, At: at, PageSize: store.MaxPageSize, Cursor: cursor})
		if err != nil {
			return err
		}
		logon = append(logon, p.Logon...)
		smb = append(smb, p.Server...)
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LOGON SESSION\tACCOUNT\tTYPE\tPACKAGE\tSTART (UTC)\tEND")
	for _, l := range logon {
		s := l.Session
		acct := "-"
		if s.Account != nil {
			acct = s.Account.Domain + `\` + s.Account.Name
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.LogonID, acct, logonType(s.LogonType), s.AuthenticationPackage,
			s.StartTime.Format("2006-01-02 15:04"), endText(l.End))
	}
	fmt.Fprintln(tw, "\t\t\t\t\t")
	fmt.Fprintln(tw, "SMB SESSION FROM\tUSER\t\t\tSTART (UTC)\tEND")
	for _, s := range smb {
		fmt.Fprintf(tw, "%s\t%s\t\t\t%s\t%s\n", s.Session.ComputerName, s.Session.UserName,
			s.StartTime.Format("2006-01-02 15:04"), endText(s.End))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%d logon sessions and %d SMB sessions on %s at that moment.\n", len(logon), len(smb), hostname)
	var missing, extra []string
	got := map[string]bool{}
	for _, l := range logon {
		got["logon "+l.Session.LogonID] = true
	}
	for _, s := range smb {
		got["smb "+s.Session.ComputerName+`\`+s.Session.UserName] = true
	}
	for id := range want.logon {
		if !got["logon "+id] {
			missing = append(missing, "logon "+id)
		}
		delete(got, "logon "+id)
	}
	for k := range want.server {
		if !got["smb "+k] {
			missing = append(missing, "smb "+k)
		}
		delete(got, "smb "+k)
	}
	for k := range got {
		extra = append(extra, k)
	}
	if len(missing)+len(extra) > 0 || len(logon) == 0 {
		return fmt.Errorf("the answer differs from what the agent saw at %s: missing %v, extra %v", at.Format(time.RFC3339), missing, extra)
	}
	fmt.Fprintln(out, "The answer matches what the host's agent saw at that moment.")
	return nil
}

// logonType names a raw WMI LogonType the way analysts say it.
func logonType(raw *uint32) string {
	if raw == nil {
		return "?"
	}
	name := pb.LogonTypeFromWMI(*raw).String()
	if name == pb.LogonType_LOGON_TYPE_UNSPECIFIED.String() {
		return fmt.Sprintf("%d", *raw)
	}
	return strings.ToLower(strings.TrimPrefix(name, "LOGON_TYPE_"))
}

func endText(e store.End) string {
	if e.Open {
		return "open"
	}
	return fmt.Sprintf("between %s and %s", e.LastSeen.Format("15:04"), e.EndBefore.Format("15:04"))
}
