package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/proto/limits"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// FuzzQueryParams sends any query string to any route of the API (the
// handler of New, over a QueryService that records what it is asked) and
// checks the parser (params.go) and the routes' reading of their
// parameters: no panic, no 5xx; a refusal is a 400 whose message starts
// with the parameter it is about (or "query string" / "unknown parameter");
// and whatever reaches the QueryService is a well-formed question: page
// size in range, valid times, a range of at most limits.MaxQuerySpan that
// ends after it starts, strings of valid UTF-8 without control characters.
//
// Seeds: the f.Add queries below (each route, valid and refused, a real
// page token) and testdata/fuzz/FuzzQueryParams. .ci/fuzz runs it for 60 s
// in CI.
func FuzzQueryParams(f *testing.F) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	q := &recordingQueries{}
	h := New(q, Options{Now: func() time.Time { return now }})
	// serve answers one request; it returns the status, the body and the
	// requests the QueryService got.
	var mu sync.Mutex
	serve := func(route uint8, raw string) (int, []byte, []proto.Message) {
		mu.Lock()
		defer mu.Unlock()
		q.got = nil
		path := routes[int(route)%len(routes)].Path
		r := (&http.Request{Method: http.MethodGet, URL: &url.URL{Path: path, RawQuery: raw},
			Header: http.Header{"Authorization": {"Bearer sa_fuzz"}}, RemoteAddr: "127.0.0.1:1234"}).WithContext(context.Background())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.Bytes(), q.got
	}

	seeds := map[string][]string{
		"/api/v1/who": {"host=FS01&at=2026-11-20T10:00:00Z", "host=FS01&at=-2h&format=csv&kind=server&page_size=10",
			"host=0b7a6c1e-8d2f-4e55-9a61-3f2b1c0d9e8a&at=now", "host=&at=now", "host=FS01", "host=FS01&at=10000-01-01",
			"host=FS01&at=yesterday", "host=FS01&at=now&kind=server", "host=FS01&at=now&page_size=0", "host=%ff&at=now",
			"host=a%00b&at=now", "host=FS01&host=FS02&at=now", "host=FS01&at=now&page_token=p1.e30"},
		"/api/v1/logon-sessions": {"since=-30d&account=CORP%5Calice&type=rdp&type=10&package=Kerberos",
			"since=2026-01-01&until=2026-11-20T00:00:00Z&host=FS01&format=jsonl&page_size=1000",
			"since=2020-01-01&until=2026-01-01", "since=now&until=-1h", "since=-1h&account=alice", "since=-1h&type=bogus",
			"since=-1h&until=9999-12-31T23:59:59Z", "since=0001-01-01&until=0001-01-02", "since=-99999999h"},
		"/api/v1/server-sessions": {"since=-2w&from=WS0123&user=alice&to=FS01", "since=-1d&page_size=1001", "until=now"},
		"/api/v1/open-sessions":   {"type=interactive&host=FS01&account=CORP%5Cbob&package=NTLM&format=csv", "format=xml", "page_size=-1"},
		"/api/v1/hosts":           {"stale=90m", "stale=2d&page_size=5", "stale=-1h", "stale=1000000000d", "nope=1"},
		"/api/v1/whoami":          {"", "x=1"},
		"/api/v1/export": {"kind=logon&since=-1d&host=FS01&format=csv", "kind=server&since=-1d&from=WS1&user=bob",
			"kind=logon&since=-1d&from=WS1", "kind=server&since=-1d&account=CORP%5Ca", "since=-1d"},
	}
	for i, r := range routes {
		for _, raw := range seeds[r.Path] {
			f.Add(uint8(i), raw)
			// A real page token for the same question, as the first page
			// handed it out.
			if code, body, _ := serve(uint8(i), raw); code == http.StatusOK {
				var page struct {
					Next string `json:"next_page_token"`
				}
				if json.Unmarshal(body, &page) == nil && page.Next != "" {
					f.Add(uint8(i), raw+"&page_token="+url.QueryEscape(page.Next))
				}
			}
		}
	}

	f.Fuzz(func(t *testing.T, route uint8, raw string) {
		rt := routes[int(route)%len(routes)]
		code, body, got := serve(route, raw)
		switch code {
		case http.StatusOK:
		case http.StatusBadRequest:
			var e errorBody
			if err := json.Unmarshal(body, &e); err != nil || e.Code != "invalid_argument" {
				t.Fatalf("%s?%s: 400 with body %q", rt.Path, raw, body)
			}
			if !namesParameter(rt, e.Error) {
				t.Fatalf("%s?%s: the refusal names no parameter: %q", rt.Path, raw, e.Error)
			}
			if len(got) > 0 {
				t.Fatalf("%s?%s: refused (%q) after asking the QueryService %v", rt.Path, raw, e.Error, got)
			}
			return
		case http.StatusNotFound:
			if rt.Path == "/api/v1/whoami" {
				return // not served without Options.WhoAmI
			}
			fallthrough
		default:
			t.Fatalf("%s?%s: status %d: %s", rt.Path, raw, code, body)
		}
		if len(got) == 0 && rt.Path != "/api/v1/whoami" {
			t.Fatalf("%s?%s: 200 without asking the QueryService", rt.Path, raw)
		}
		for _, m := range got {
			if why := malformed(m); why != "" {
				t.Fatalf("%s?%s: the QueryService was asked %v: %s", rt.Path, raw, m, why)
			}
		}
	})
}

// namesParameter reports whether a refusal's message starts with what it
// is about: a parameter of the route, the query string, or an unknown
// parameter.
func namesParameter(r Route, msg string) bool {
	if strings.HasPrefix(msg, "query string: ") || strings.HasPrefix(msg, "unknown parameter ") {
		return true
	}
	name, _, ok := strings.Cut(msg, ": ")
	if !ok {
		return false
	}
	_, known := r.param(name)
	return known
}

// malformed says what is wrong with a request the API made of a query
// string, or "".
func malformed(m proto.Message) string {
	var why []string
	str := func(field, v string) {
		if !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 {
			why = append(why, field+": not clean UTF-8")
		}
	}
	page := func(n int32) {
		if n < 0 || n > limits.MaxPageSize {
			why = append(why, "page_size out of range")
		}
	}
	tm := func(field string, ts *timestamppb.Timestamp) time.Time {
		if err := ts.CheckValid(); err != nil {
			why = append(why, field+": "+err.Error())
			return time.Time{}
		}
		return ts.AsTime()
	}
	span := func(start, end *timestamppb.Timestamp) {
		s, e := tm("start_time", start), tm("end_time", end)
		if len(why) == 0 && (!e.After(s) || e.Sub(s) > limits.MaxQuerySpan) {
			why = append(why, "range "+s.String()+".."+e.String())
		}
	}
	types := func(ts []pb.LogonType) {
		for _, lt := range ts {
			if _, ok := pb.LogonType_name[int32(lt)]; !ok || lt == pb.LogonType_LOGON_TYPE_UNSPECIFIED {
				why = append(why, "logon type "+lt.String())
			}
		}
	}
	switch r := m.(type) {
	case *pb.WhoWasOnRequest:
		str("host", r.GetHost())
		tm("at", r.GetAt())
		page(r.GetPageSize())
		if strings.TrimSpace(r.GetHost()) == "" {
			why = append(why, "no host")
		}
	case *pb.ListLogonSessionsRequest:
		str("host", r.GetHost())
		str("account", r.GetAccount())
		str("authentication_package", r.GetAuthenticationPackage())
		types(r.GetLogonTypes())
		page(r.GetPageSize())
		span(r.GetStartTime(), r.GetEndTime())
	case *pb.ListServerSessionsRequest:
		str("from_computer", r.GetFromComputer())
		str("user_name", r.GetUserName())
		str("to_host", r.GetToHost())
		page(r.GetPageSize())
		span(r.GetStartTime(), r.GetEndTime())
	case *pb.ListOpenSessionsRequest:
		str("host", r.GetHost())
		str("account", r.GetAccount())
		str("authentication_package", r.GetAuthenticationPackage())
		types(r.GetLogonTypes())
		page(r.GetPageSize())
	case *pb.ListHostsRequest:
		page(r.GetPageSize())
		if d := r.GetStaleAfter(); d != nil && (d.CheckValid() != nil || d.AsDuration() <= 0) {
			why = append(why, "stale_after "+d.String())
		}
	default:
		why = append(why, "unexpected request type")
	}
	return strings.Join(why, "; ")
}

// recordingQueries is a QueryService that records each request and answers
// empty pages; the first page of a question carries a next page token.
type recordingQueries struct {
	pb.UnimplementedQueryServiceServer
	got []proto.Message
}

func (q *recordingQueries) next(token string) string {
	if token == "" {
		return "g1"
	}
	return ""
}

func (q *recordingQueries) WhoWasOn(_ context.Context, r *pb.WhoWasOnRequest) (*pb.WhoWasOnResponse, error) {
	q.got = append(q.got, r)
	return &pb.WhoWasOnResponse{NextPageToken: q.next(r.GetPageToken())}, nil
}

func (q *recordingQueries) ListLogonSessions(_ context.Context, r *pb.ListLogonSessionsRequest) (*pb.ListLogonSessionsResponse, error) {
	q.got = append(q.got, r)
	return &pb.ListLogonSessionsResponse{NextPageToken: q.next(r.GetPageToken())}, nil
}

func (q *recordingQueries) ListServerSessions(_ context.Context, r *pb.ListServerSessionsRequest) (*pb.ListServerSessionsResponse, error) {
	q.got = append(q.got, r)
	return &pb.ListServerSessionsResponse{NextPageToken: q.next(r.GetPageToken())}, nil
}

func (q *recordingQueries) ListOpenSessions(_ context.Context, r *pb.ListOpenSessionsRequest) (*pb.ListOpenSessionsResponse, error) {
	q.got = append(q.got, r)
	return &pb.ListOpenSessionsResponse{NextPageToken: q.next(r.GetPageToken())}, nil
}

func (q *recordingQueries) ListHosts(_ context.Context, r *pb.ListHostsRequest) (*pb.ListHostsResponse, error) {
	q.got = append(q.got, r)
	return &pb.ListHostsResponse{NextPageToken: q.next(r.GetPageToken())}, nil
}
