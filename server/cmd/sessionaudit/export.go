package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/rows"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The rows of an export with --kind all carry their kind.
type (
	kindLogon struct {
		Kind string `json:"kind"`
		rows.Logon
	}
	kindServer struct {
		Kind string `json:"kind"`
		rows.Server
	}
)

func (c *cli) exportCommand() *command {
	var kind, since, until, host, output string
	var asJSON, asCSV, failEmpty bool
	cmd := newCommand("export", "every session of a range as JSON lines or CSV, all pages",
		"Write every session interval that overlaps a time range, all pages, as JSON\n"+
			"lines (one row per line; the default) or CSV, to stdout or to --output.\n\n"+
			"--kind all writes logon and server sessions as JSON lines with a \"kind\" field\n"+
			"(logon or server); CSV takes one kind, as the two have different columns.\n"+
			"With --output the file appears only once the export is complete.",
		`sessionaudit export --since 2026-03-01 --until 2026-03-08 > logon.jsonl`,
		`sessionaudit export --since 2026-03-01 --until 2026-03-08 --kind server --csv --output smb.csv`,
		`sessionaudit export --since 1d --kind all | jq 'select(.kind == "server")'`)
	cmd.String(&kind, "kind", "", "logon", "logon, server, or all (JSON lines only)")
	cmd.String(&since, "since", "", "", "start of the range (required)")
	cmd.String(&until, "until", "", "now", untilHelp)
	cmd.String(&host, "host", "", "", "only this host (for server sessions: the host they were held to)")
	cmd.section("Output")
	cmd.Bool(&asJSON, "json", "", false, "JSON lines (the default)")
	cmd.Bool(&asCSV, "csv", "", false, "CSV with a header line (cells that a spreadsheet could take for a formula start with ')")
	cmd.String(&output, "output", "", "", "write to this file (mode 0600) instead of stdout")
	cmd.Bool(&failEmpty, "fail-empty", "", false, "exit with status 3 when nothing matched")
	c.connectionFlags(cmd)
	cmd.run = func(ctx context.Context, c *cli) error {
		from, to, err := c.parseRange(since, until)
		if err != nil {
			return err
		}
		switch {
		case asJSON && asCSV:
			return usagef("--json and --csv: choose one")
		case kind != "logon" && kind != "server" && kind != "all":
			return usagef("--kind %q: want logon, server or all", kind)
		case kind == "all" && asCSV:
			return usagef("--kind all is for JSON lines: CSV takes --kind logon or --kind server, as their columns differ")
		}
		c.out.failEmpty = failEmpty
		cl, err := c.connect()
		if err != nil {
			return err
		}
		defer cl.Close()

		var w io.Writer = c.stdout
		var tmp *os.File
		if output != "" {
			tmp, err = os.CreateTemp(filepath.Dir(output), "."+filepath.Base(output)+".partial-*")
			if err != nil {
				return fmt.Errorf("--output %s: %w", output, err)
			}
			defer func() {
				if tmp != nil {
					tmp.Close()
					os.Remove(tmp.Name())
				}
			}()
			w = tmp
		}
		bw := bufio.NewWriterSize(w, 64<<10)
		ex := &exporter{cl: cl, w: bw, csv: asCSV, all: kind == "all", host: host,
			start: timestamppb.New(from), end: timestamppb.New(to)}
		var n int
		if kind != "server" {
			if n, err = ex.logon(ctx); err != nil {
				return err
			}
		}
		if kind != "logon" {
			m, err := ex.server(ctx)
			if err != nil {
				return err
			}
			n += m
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("write the export: %w", err)
		}
		if tmp != nil {
			if err := tmp.Close(); err != nil {
				return fmt.Errorf("--output %s: %w", output, err)
			}
			if err := os.Rename(tmp.Name(), output); err != nil {
				return fmt.Errorf("--output %s: %w", output, err)
			}
			tmp = nil
			fmt.Fprintf(c.stderr, "sessionaudit: exported %d rows to %s\n", n, sanitize(output))
		}
		return c.finish(n, "")
	}
	return cmd
}

// exporter writes the pages of an export as they arrive.
type exporter struct {
	cl         *client
	w          io.Writer
	csv, all   bool
	host       string
	start, end *timestamppb.Timestamp
}

// logon exports the logon sessions and returns how many it wrote.
func (ex *exporter) logon(ctx context.Context) (int, error) {
	total := 0
	cw := rows.NewCSVWriter[rows.Logon](ex.w)
	enc := json.NewEncoder(ex.w)
	enc.SetEscapeHTML(false)
	_, err := ex.cl.fetch(ctx, 0, func(ctx context.Context, size int32, token string) (int, string, error) {
		resp, err := ex.cl.q.ListLogonSessions(ctx, &pb.ListLogonSessionsRequest{Host: ex.host,
			StartTime: ex.start, EndTime: ex.end, PageSize: size, PageToken: token})
		if err != nil {
			return 0, "", err
		}
		for _, l := range resp.GetLogonSessions() {
			r := rows.FromLogon(l)
			switch {
			case ex.csv:
				err = cw.Write(r)
			case ex.all:
				err = enc.Encode(kindLogon{"logon", r})
			default:
				err = enc.Encode(r)
			}
			if err != nil {
				return 0, "", writeError{err}
			}
		}
		total += len(resp.GetLogonSessions())
		return len(resp.GetLogonSessions()), resp.GetNextPageToken(), nil
	})
	if err == nil && ex.csv {
		if err = cw.Flush(); err != nil {
			err = writeError{err}
		}
	}
	return total, err
}

// server exports the server sessions and returns how many it wrote.
func (ex *exporter) server(ctx context.Context) (int, error) {
	total := 0
	cw := rows.NewCSVWriter[rows.Server](ex.w)
	enc := json.NewEncoder(ex.w)
	enc.SetEscapeHTML(false)
	_, err := ex.cl.fetch(ctx, 0, func(ctx context.Context, size int32, token string) (int, string, error) {
		resp, err := ex.cl.q.ListServerSessions(ctx, &pb.ListServerSessionsRequest{ToHost: ex.host,
			StartTime: ex.start, EndTime: ex.end, PageSize: size, PageToken: token})
		if err != nil {
			return 0, "", err
		}
		for _, s := range resp.GetServerSessions() {
			r := rows.FromServer(s)
			switch {
			case ex.csv:
				err = cw.Write(r)
			case ex.all:
				err = enc.Encode(kindServer{"server", r})
			default:
				err = enc.Encode(r)
			}
			if err != nil {
				return 0, "", writeError{err}
			}
		}
		total += len(resp.GetServerSessions())
		return len(resp.GetServerSessions()), resp.GetNextPageToken(), nil
	})
	if err == nil && ex.csv {
		if err = cw.Flush(); err != nil {
			err = writeError{err}
		}
	}
	return total, err
}

// writeError is a failure to write the export, told apart from the
// collector's errors.
type writeError struct{ err error }

func (e writeError) Error() string { return "write the export: " + e.err.Error() }
