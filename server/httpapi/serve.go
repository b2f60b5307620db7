package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/rows"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// exportPageSize is the page size an export asks the QueryService for.
const exportPageSize = 1000

func (c *call) who() error {
	host := c.str("host")
	at := c.time("at", false)
	kind := c.get("kind")
	if kind != "" && c.format == "json" {
		c.fail("kind", "only with format=csv or format=jsonl (JSON has both kinds)")
	}
	if err := c.result(); err != nil {
		return err
	}
	res, err := c.h.q.WhoWasOn(c.ctx, &pb.WhoWasOnRequest{Host: host, At: timestamppb.New(at),
		PageSize: c.pageSize, PageToken: c.token})
	if err != nil {
		return err
	}
	next := c.nextToken(res.GetNextPageToken())
	c.warnAmbiguous("host", host, res.GetAmbiguousHosts())
	logon, server := logonRows(res.GetLogonSessions()), serverRows(res.GetServerSessions())
	switch {
	case c.format == "json":
		return c.writeJSON(map[string]any{"logon_sessions": logon, "server_sessions": server, "next_page_token": next})
	case kind == "server":
		return writePage(c, "who-server", server, next)
	default:
		return writePage(c, "who-logon", logon, next)
	}
}

func (c *call) logonRequest() *pb.ListLogonSessionsRequest {
	since, until := c.timeRange()
	return &pb.ListLogonSessionsRequest{Host: c.str("host"), Account: c.account(), LogonTypes: c.types(),
		AuthenticationPackage: c.str("package"), StartTime: timestamppb.New(since), EndTime: timestamppb.New(until),
		PageSize: c.pageSize, PageToken: c.token}
}

func (c *call) logonSessions() error {
	req := c.logonRequest()
	if err := c.result(); err != nil {
		return err
	}
	res, err := c.h.q.ListLogonSessions(c.ctx, req)
	if err != nil {
		return err
	}
	c.warnAmbiguous("host", req.GetHost(), res.GetAmbiguousHosts())
	return writeList(c, "logon-sessions", "logon_sessions", logonRows(res.GetLogonSessions()), c.nextToken(res.GetNextPageToken()))
}

func (c *call) serverRequest() *pb.ListServerSessionsRequest {
	since, until := c.timeRange()
	return &pb.ListServerSessionsRequest{FromComputer: c.str("from"), UserName: c.str("user"), ToHost: c.str("to"),
		StartTime: timestamppb.New(since), EndTime: timestamppb.New(until), PageSize: c.pageSize, PageToken: c.token}
}

func (c *call) serverSessions() error {
	req := c.serverRequest()
	if err := c.result(); err != nil {
		return err
	}
	res, err := c.h.q.ListServerSessions(c.ctx, req)
	if err != nil {
		return err
	}
	c.warnAmbiguous("to", req.GetToHost(), res.GetAmbiguousHosts())
	return writeList(c, "server-sessions", "server_sessions", serverRows(res.GetServerSessions()), c.nextToken(res.GetNextPageToken()))
}

func (c *call) openSessions() error {
	req := &pb.ListOpenSessionsRequest{LogonTypes: c.types(), AuthenticationPackage: c.str("package"),
		Host: c.str("host"), Account: c.account(), PageSize: c.pageSize, PageToken: c.token}
	if err := c.result(); err != nil {
		return err
	}
	res, err := c.h.q.ListOpenSessions(c.ctx, req)
	if err != nil {
		return err
	}
	c.warnAmbiguous("host", req.GetHost(), res.GetAmbiguousHosts())
	return writeList(c, "open-sessions", "logon_sessions", logonRows(res.GetLogonSessions()), c.nextToken(res.GetNextPageToken()))
}

func (c *call) hosts() error {
	req := &pb.ListHostsRequest{PageSize: c.pageSize, PageToken: c.token}
	if d := c.duration("stale"); d > 0 {
		req.StaleAfter = durationpb.New(d)
	}
	if err := c.result(); err != nil {
		return err
	}
	res, err := c.h.q.ListHosts(c.ctx, req)
	if err != nil {
		return err
	}
	out := make([]rows.Host, 0, len(res.GetHosts()))
	for _, h := range res.GetHosts() {
		out = append(out, rows.FromHost(h))
	}
	return writeList(c, "hosts", "hosts", out, c.nextToken(res.GetNextPageToken()))
}

// whoAmI is the answer of /api/v1/whoami.
type whoAmI struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

func (c *call) whoami() error {
	if c.h.opts.WhoAmI == nil {
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: "/api/v1/whoami: not served here; check a token with /api/v1/hosts?page_size=1"}
	}
	name, role, err := c.h.opts.WhoAmI(c.ctx)
	if err != nil {
		return err
	}
	return c.writeJSON(whoAmI{Name: name, Role: role})
}

func (c *call) export() error {
	switch c.get("kind") {
	case "logon":
		c.absent("only with kind=server", "from", "user", "to")
		req := c.logonRequest()
		if err := c.result(); err != nil {
			return err
		}
		return export(c, "logon-sessions", func(token string) ([]rows.Logon, string, error) {
			req.PageSize, req.PageToken = exportPageSize, token
			res, err := c.h.q.ListLogonSessions(c.ctx, req)
			return logonRows(res.GetLogonSessions()), res.GetNextPageToken(), err
		})
	default: // "server": parse checked the enumeration
		c.absent("only with kind=logon", "host", "account", "type", "package")
		req := c.serverRequest()
		if err := c.result(); err != nil {
			return err
		}
		return export(c, "server-sessions", func(token string) ([]rows.Server, string, error) {
			req.PageSize, req.PageToken = exportPageSize, token
			res, err := c.h.q.ListServerSessions(c.ctx, req)
			return serverRows(res.GetServerSessions()), res.GetNextPageToken(), err
		})
	}
}

func logonRows(in []*pb.LogonSessionInterval) []rows.Logon {
	out := make([]rows.Logon, 0, len(in))
	for _, l := range in {
		out = append(out, rows.FromLogon(l))
	}
	return out
}

func serverRows(in []*pb.ServerSessionInterval) []rows.Server {
	out := make([]rows.Server, 0, len(in))
	for _, s := range in {
		out = append(out, rows.FromServer(s))
	}
	return out
}

// writeJSON writes v as the JSON answer.
func (c *call) writeJSON(v any) error {
	c.w.Header().Set("Content-Type", "application/json; charset=utf-8")
	c.w.WriteHeader(http.StatusOK)
	return json.NewEncoder(c.w).Encode(v)
}

// writeList writes one page of a list: JSON {key: rows, next_page_token},
// or the rows as CSV or JSON lines with the token in a header.
func writeList[T any](c *call, name, key string, rs []T, next string) error {
	if c.format == "json" {
		return c.writeJSON(map[string]any{key: rs, "next_page_token": next})
	}
	return writePage(c, name, rs, next)
}

// writePage writes one page of rows as CSV or JSON lines, with the next
// page token in the Next-Page-Token header.
func writePage[T any](c *call, name string, rs []T, next string) error {
	if next != "" {
		c.w.Header().Set("Next-Page-Token", next)
	}
	w := startRowsOf[T](c, name)
	if err := w.write(rs); err != nil {
		return nil // the client has gone; the status is sent
	}
	_ = w.flush()
	return nil
}

// rowWriter writes rows of one type in the call's format.
type rowWriter[T any] struct {
	csv  *rows.CSVWriter[T]
	json *json.Encoder
}

func (w rowWriter[T]) write(rs []T) error {
	if w.csv != nil {
		return w.csv.Write(rs...)
	}
	for _, r := range rs {
		if err := w.json.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

func (w rowWriter[T]) flush() error {
	if w.csv != nil {
		return w.csv.Flush()
	}
	return nil
}

// startRowsOf sends the headers of a CSV or JSON lines answer of T rows.
func startRowsOf[T any](c *call, name string) rowWriter[T] {
	h := c.w.Header()
	if c.format == "csv" {
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="sessionaudit-%s-%s.csv"`, name, c.now.Format("20060102T150405Z")))
		c.w.WriteHeader(http.StatusOK)
		return rowWriter[T]{csv: rows.NewCSVWriter[T](c.w)}
	}
	h.Set("Content-Type", "application/x-ndjson")
	c.w.WriteHeader(http.StatusOK)
	return rowWriter[T]{json: json.NewEncoder(c.w)}
}

// export streams every page fetch returns, up to MaxExportRows rows. An
// error on the first page is answered as usual; after that the status is
// sent, and the connection is cut so the client sees a truncated transfer.
func export[T any](c *call, name string, fetch func(token string) ([]T, string, error)) error {
	page, next, err := fetch("")
	if err != nil {
		return err
	}
	w := startRowsOf[T](c, name)
	rc := http.NewResponseController(c.w)
	n := 0
	for {
		if n += len(page); n > c.h.opts.MaxExportRows {
			c.abort("export cut off: more rows than the limit; narrow the range or the filters", "limit", c.h.opts.MaxExportRows)
		}
		if err := w.write(page); err != nil {
			c.abort("export cut off: writing to the client failed", "err", err)
		}
		if next == "" || c.r.Method == http.MethodHead {
			if err := w.flush(); err != nil {
				c.abort("export cut off: writing to the client failed", "err", err)
			}
			return nil
		}
		if err := w.flush(); err != nil {
			c.abort("export cut off: writing to the client failed", "err", err)
		}
		_ = rc.Flush()
		_ = rc.SetWriteDeadline(time.Now().Add(exportPageWrite))
		if page, next, err = fetch(next); err != nil {
			c.abort("export cut off: a page failed", "err", err)
		}
	}
}

// abort logs why an export stops early and cuts the connection, so that
// the client cannot take the export for complete.
func (c *call) abort(msg string, attrs ...any) {
	c.h.opts.Logger.Warn(msg, append([]any{"path", c.route.Path, "query", c.r.URL.RawQuery, "peer", c.r.RemoteAddr}, attrs...)...)
	panic(http.ErrAbortHandler)
}
