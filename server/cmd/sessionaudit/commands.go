package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/limits"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/rows"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// parseTime reads the time flag name's value s.
func (c *cli) parseTime(name, s string) (time.Time, error) {
	t, err := rows.ParseTime(s, c.now())
	if err != nil {
		return time.Time{}, usagef("%s: %v", name, err)
	}
	return t, nil
}

// parseRange reads --since and --until (until defaults to now).
func (c *cli) parseRange(since, until string) (from, to time.Time, err error) {
	if since == "" {
		return from, to, usagef("--since is required, e.g. --since 30d or --since 2026-03-01")
	}
	if from, err = c.parseTime("--since", since); err != nil {
		return
	}
	if to, err = c.parseTime("--until", until); err != nil {
		return
	}
	if !from.Before(to) {
		return from, to, usagef("--since %s is not before --until %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	return from, to, nil
}

// checkAccount wants "DOMAIN\name".
func checkAccount(flagName, s string) error {
	domain, name, ok := strings.Cut(s, `\`)
	if !ok || strings.TrimSpace(domain) == "" || strings.TrimSpace(name) == "" {
		return usagef(`%s %q: want DOMAIN\name, e.g. 'CONTOSO\alice' (quote it for the shell)`, flagName, s)
	}
	return nil
}

// query connects and runs do with the client, closing it afterwards.
func (c *cli) query(ctx context.Context, do func(cl *client) error) error {
	cl, err := c.connect()
	if err != nil {
		return err
	}
	defer cl.Close()
	return do(cl)
}

func logonDocOf(list []rows.Logon, next string) any { return logonDoc{list, next} }

func serverDocOf(list []rows.Server, next string) any { return serverDoc{list, next} }

func hostDocOf(list []rows.Host, next string) any { return hostDoc{list, next} }

func (c *cli) whoCommand() *command {
	var host, at, kind string
	cmd := newCommand("who", "who was on a host at a moment: logon and SMB sessions",
		"List the logon sessions and the SMB sessions open on a host at a moment.\n\n"+
			"Sessions whose end is uncertain around the moment (they ended between their\n"+
			"last report and the next) are included: END shows \"≤ T\" for them.",
		`sessionaudit who --host FS01 --at 2026-03-03T03:12:00Z`,
		`sessionaudit who --host fs01.contoso.local --at -2h --json`,
		`sessionaudit who --host FS01 --at 2026-03-03 --csv --kind server`)
	cmd.String(&host, "host", "", "", "host name (with or without its domain) or machine GUID (required)")
	cmd.String(&at, "at", "", "now", "the moment")
	cmd.String(&kind, "kind", "", "logon", "with --csv, which sessions: logon or server (their columns differ)")
	c.outputFlags(cmd)
	c.connectionFlags(cmd)
	cmd.run = func(ctx context.Context, c *cli) error {
		if strings.TrimSpace(host) == "" {
			return usagef("--host is required")
		}
		t, err := c.parseTime("--at", at)
		if err != nil {
			return err
		}
		if err := c.checkOutput(); err != nil {
			return err
		}
		if kind != "logon" && kind != "server" {
			return usagef("--kind %q: want logon or server", kind)
		}
		var logon []rows.Logon
		var srv []rows.Server
		var next string
		var ambiguous []*pb.HostRef
		err = c.query(ctx, func(cl *client) (err error) {
			next, err = cl.fetch(ctx, c.out.limit, func(ctx context.Context, size int32, token string) (int, string, error) {
				resp, err := cl.q.WhoWasOn(ctx, &pb.WhoWasOnRequest{Host: host, At: timestamppb.New(t), PageSize: size, PageToken: token})
				if a := resp.GetAmbiguousHosts(); len(a) > 0 {
					ambiguous = a
				}
				for _, l := range resp.GetLogonSessions() {
					logon = append(logon, rows.FromLogon(l))
				}
				for _, s := range resp.GetServerSessions() {
					srv = append(srv, rows.FromServer(s))
				}
				return len(resp.GetLogonSessions()) + len(resp.GetServerSessions()), resp.GetNextPageToken(), err
			})
			return err
		})
		if err != nil {
			return err
		}
		c.warnAmbiguous("--host", host, ambiguous)
		switch {
		case c.out.json:
			err = writeJSON(c.stdout, whoDoc{nonNil(logon), nonNil(srv), next})
		case c.out.csv && kind == "server":
			err = writeCSV(c.stdout, srv)
		case c.out.csv:
			err = writeCSV(c.stdout, logon)
		default:
			err = c.whoTable(c.stdout, host, t, logon, srv)
		}
		if err != nil {
			return fmt.Errorf("write the output: %w", err)
		}
		return c.finish(len(logon)+len(srv), next)
	}
	return cmd
}

// whoTable writes who's two sections.
func (c *cli) whoTable(w io.Writer, host string, at time.Time, logon []rows.Logon, srv []rows.Server) error {
	when := at.In(c.zone()).Format(time.RFC3339)
	if len(logon) == 0 {
		fmt.Fprintf(w, "Logon sessions on %s at %s: none\n", sanitize(host), when)
	} else {
		fmt.Fprintf(w, "Logon sessions on %s at %s:\n", sanitize(host), when)
		if err := c.logonTable(w, logon); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	if len(srv) == 0 {
		_, err := fmt.Fprintf(w, "SMB sessions to %s at %s: none\n", sanitize(host), when)
		return err
	}
	fmt.Fprintf(w, "SMB sessions to %s at %s:\n", sanitize(host), when)
	return c.serverTable(w, srv)
}

func (c *cli) timelineCommand() *command {
	var user, host, since, until string
	cmd := newCommand("timeline", "an account's sessions fleet-wide, or a host's, over a range",
		"List the logon sessions of an account, fleet-wide, or of a host, over a time range,\n"+
			"ordered by start.",
		`sessionaudit timeline --user 'CONTOSO\alice' --since 30d`,
		`sessionaudit timeline --host FS01 --since 7d --until 2026-03-08`,
		`sessionaudit timeline --user 'CONTOSO\svc-backup' --since 400d --csv > svc-backup.csv`)
	cmd.String(&user, "user", "", "", `the account, DOMAIN\name (case-insensitive)`)
	cmd.String(&host, "host", "", "", "the host: name (with or without its domain) or machine GUID")
	cmd.String(&since, "since", "", "30d", "start of the range")
	cmd.String(&until, "until", "", "now", untilHelp)
	c.outputFlags(cmd)
	c.connectionFlags(cmd)
	cmd.run = func(ctx context.Context, c *cli) error {
		if user == "" && host == "" {
			return usagef(`give --user DOMAIN\name or --host HOST (or both)`)
		}
		if user != "" {
			if err := checkAccount("--user", user); err != nil {
				return err
			}
		}
		from, to, err := c.parseRange(since, until)
		if err != nil {
			return err
		}
		if err := c.checkOutput(); err != nil {
			return err
		}
		list, next, ambiguous, err := c.fetchLogon(ctx, func(ctx context.Context, cl *client, size int32, token string) (logonPage, error) {
			return cl.q.ListLogonSessions(ctx, &pb.ListLogonSessionsRequest{Host: host, Account: user,
				StartTime: timestamppb.New(from), EndTime: timestamppb.New(to), PageSize: size, PageToken: token})
		})
		if err != nil {
			return err
		}
		c.warnAmbiguous("--host", host, ambiguous)
		return listing(c, list, next, logonDocOf, c.logonTable, "No logon sessions in the range.")
	}
	return cmd
}

func (c *cli) smbCommand() *command {
	var from, user, to, since, until string
	cmd := newCommand("smb", "SMB sessions from a computer, by a user, or to a host, over a range",
		"List server (SMB) sessions over a time range: from a remote computer, by a remote\n"+
			"user, and/or to a host, ordered by start. With no filter, every SMB session of\n"+
			"the range. FROM is what the server saw: often an IP address, sometimes a\n"+
			"NetBIOS name.",
		`sessionaudit smb --from WS0123 --since 30d`,
		`sessionaudit smb --from 10.1.2.3 --since 30d`,
		`sessionaudit smb --to FS01 --user alice --since 7d --json`)
	cmd.String(&from, "from", "", "", "the remote computer (Win32_ServerSession.ComputerName, case-insensitive)")
	cmd.String(&user, "user", "", "", "the remote user name (Win32_ServerSession.UserName, case-insensitive)")
	cmd.String(&to, "to", "", "", "the host the sessions were held to: name or machine GUID")
	cmd.String(&since, "since", "", "30d", "start of the range")
	cmd.String(&until, "until", "", "now", untilHelp)
	c.outputFlags(cmd)
	c.connectionFlags(cmd)
	cmd.run = func(ctx context.Context, c *cli) error {
		start, end, err := c.parseRange(since, until)
		if err != nil {
			return err
		}
		if err := c.checkOutput(); err != nil {
			return err
		}
		var list []rows.Server
		var next string
		var ambiguous []*pb.HostRef
		err = c.query(ctx, func(cl *client) (err error) {
			next, err = cl.fetch(ctx, c.out.limit, func(ctx context.Context, size int32, token string) (int, string, error) {
				resp, err := cl.q.ListServerSessions(ctx, &pb.ListServerSessionsRequest{FromComputer: from, UserName: user, ToHost: to,
					StartTime: timestamppb.New(start), EndTime: timestamppb.New(end), PageSize: size, PageToken: token})
				if a := resp.GetAmbiguousHosts(); len(a) > 0 {
					ambiguous = a
				}
				for _, s := range resp.GetServerSessions() {
					list = append(list, rows.FromServer(s))
				}
				return len(resp.GetServerSessions()), resp.GetNextPageToken(), err
			})
			return err
		})
		if err != nil {
			return err
		}
		c.warnAmbiguous("--to", to, ambiguous)
		return listing(c, list, next, serverDocOf, c.serverTable, "No SMB sessions in the range.")
	}
	return cmd
}

func (c *cli) sessionsCommand() *command {
	var types typesFlag
	var host, user, pkg, since, until string
	var open bool
	cmd := newCommand("sessions", "logon sessions open now, or over a range, by type, host, account",
		"List logon sessions open now (--open), or over a time range (--since), fleet-wide\n"+
			"or on one host, filtered by logon type, account and authentication package.",
		`sessionaudit sessions --type rdp --open`,
		`sessionaudit sessions --open --host FS01 --type interactive,rdp`,
		`sessionaudit sessions --type rdp --type cached-rdp --since 7d`,
		`sessionaudit sessions --user 'CONTOSO\svc-backup' --type interactive,rdp --since 30d`)
	cmd.Value(&types, "type", "", "logon type, repeatable or a comma list: "+strings.Join(pb.LogonTypeList(), ", ")+
		",\nor a WMI number (10)")
	cmd.String(&host, "host", "", "", "only this host: name (with or without its domain) or machine GUID")
	cmd.String(&user, "user", "", "", `only this account, DOMAIN\name`)
	cmd.String(&pkg, "package", "", "", "only this authentication package: Kerberos, NTLM, Negotiate, …")
	cmd.Bool(&open, "open", "", false, "the sessions open now (no --since or --until)")
	cmd.String(&since, "since", "", "", "start of the range (required without --open)")
	cmd.String(&until, "until", "", "", "end of the range (default now; "+untilSpan+")")
	c.outputFlags(cmd)
	c.connectionFlags(cmd)
	cmd.run = func(ctx context.Context, c *cli) error {
		if user != "" {
			if err := checkAccount("--user", user); err != nil {
				return err
			}
		}
		var from, to time.Time
		var err error
		if open {
			if since != "" || until != "" {
				return usagef("--open lists the sessions open now: it takes no --since or --until")
			}
		} else {
			if since == "" {
				return usagef("give --open (open now) or --since (over a range)")
			}
			if until == "" {
				until = "now"
			}
			if from, to, err = c.parseRange(since, until); err != nil {
				return err
			}
		}
		if err := c.checkOutput(); err != nil {
			return err
		}
		list, next, ambiguous, err := c.fetchLogon(ctx, func(ctx context.Context, cl *client, size int32, token string) (logonPage, error) {
			if open {
				return cl.q.ListOpenSessions(ctx, &pb.ListOpenSessionsRequest{LogonTypes: types, AuthenticationPackage: pkg,
					Host: host, Account: user, PageSize: size, PageToken: token})
			}
			return cl.q.ListLogonSessions(ctx, &pb.ListLogonSessionsRequest{Host: host, Account: user, LogonTypes: types,
				AuthenticationPackage: pkg, StartTime: timestamppb.New(from), EndTime: timestamppb.New(to), PageSize: size, PageToken: token})
		})
		if err != nil {
			return err
		}
		c.warnAmbiguous("--host", host, ambiguous)
		none := "No logon sessions in the range."
		if open {
			none = "No open logon sessions."
		}
		return listing(c, list, next, logonDocOf, c.logonTable, none)
	}
	return cmd
}

func (c *cli) hostsCommand() *command {
	var stale string
	cmd := newCommand("hosts", "hosts and their last report; --stale: the silent ones",
		"List hosts with their last report and open sessions, ordered by machine GUID;\n"+
			"with --stale, only those silent for longer than that (switched off, isolated,\n"+
			"or their agent stopped). LAST SEEN is how far the host's stored history\n"+
			"reaches: the newest report stored (by the host's clock); a host whose reports\n"+
			"arrive but are not stored goes silent too. SILENT is the time since. A host\n"+
			"whose clock was last measured more than a minute off the collector's gets a\n"+
			"warning on stderr: its times are off by as much.",
		`sessionaudit hosts`,
		`sessionaudit hosts --stale 1h`,
		`sessionaudit hosts --stale 2d --csv`)
	cmd.String(&stale, "stale", "", "", "only hosts whose newest stored report is older than this: 90m, 1h, 2d, 1w")
	c.outputFlags(cmd)
	c.connectionFlags(cmd)
	cmd.run = func(ctx context.Context, c *cli) error {
		req := &pb.ListHostsRequest{}
		if stale != "" {
			d, err := rows.ParseDuration(stale)
			if err != nil {
				return usagef("--stale: %v", err)
			}
			req.StaleAfter = durationpb.New(d)
		}
		if err := c.checkOutput(); err != nil {
			return err
		}
		var list []rows.Host
		var next string
		var flagged, skewed []*pb.HostStatus
		err := c.query(ctx, func(cl *client) (err error) {
			next, err = cl.fetch(ctx, c.out.limit, func(ctx context.Context, size int32, token string) (int, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := cl.q.ListHosts(ctx, req)
				for _, h := range resp.GetHosts() {
					if h.GetAgentKeyReuseAt() != nil {
						flagged = append(flagged, h)
					}
					if h.GetClockSkew() != nil {
						skewed = append(skewed, h)
					}
					list = append(list, rows.FromHost(h))
				}
				return len(resp.GetHosts()), resp.GetNextPageToken(), err
			})
			return err
		})
		if err != nil {
			return err
		}
		c.warnKeyReuse(flagged)
		c.warnClockSkew(skewed)
		none := "No hosts."
		if stale != "" {
			none = "No host silent for longer than " + stale + "."
		}
		return listing(c, list, next, hostDocOf, c.hostTable, none)
	}
	return cmd
}

func (c *cli) versionCommand() *command {
	cmd := newCommand("version", "print the version", "Print the version of this sessionaudit build.")
	cmd.run = func(ctx context.Context, c *cli) error {
		_, err := fmt.Fprintf(c.stdout, "sessionaudit %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return err
	}
	return cmd
}

// logonPage is a page of logon sessions: the answer of ListLogonSessions or
// ListOpenSessions.
type logonPage interface {
	GetLogonSessions() []*pb.LogonSessionInterval
	GetNextPageToken() string
	GetAmbiguousHosts() []*pb.HostRef
}

// fetchLogon asks page for every page of logon sessions, up to --limit,
// and returns their rows, the token of the page after the last one
// fetched ("" when there is none), and the hosts the host selector named
// when it named several (warnAmbiguous).
func (c *cli) fetchLogon(ctx context.Context, page func(ctx context.Context, cl *client, size int32, token string) (logonPage, error)) ([]rows.Logon, string, []*pb.HostRef, error) {
	var list []rows.Logon
	var next string
	var ambiguous []*pb.HostRef
	err := c.query(ctx, func(cl *client) (err error) {
		next, err = cl.fetch(ctx, c.out.limit, func(ctx context.Context, size int32, token string) (int, string, error) {
			resp, err := page(ctx, cl, size, token)
			if err != nil {
				return 0, "", err
			}
			if a := resp.GetAmbiguousHosts(); len(a) > 0 {
				ambiguous = a
			}
			for _, l := range resp.GetLogonSessions() {
				list = append(list, rows.FromLogon(l))
			}
			return len(resp.GetLogonSessions()), resp.GetNextPageToken(), nil
		})
		return err
	})
	return list, next, ambiguous, err
}

// untilSpan and untilHelp quote the longest range a query may cover, from
// proto/limits.
var (
	untilSpan = fmt.Sprintf("at most %d days after --since", limits.MaxQuerySpanDays)
	untilHelp = "end of the range (" + untilSpan + ")"
)
