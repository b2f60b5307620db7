package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/limits"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// serveQuery authenticates an analyst, runs the query under QueryTimeout,
// and logs it with the analyst's name, the parameters and the result count
// (C10).
func (s *Server) serveQuery(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := path.Base(info.FullMethod)
	start := time.Now()
	a, err := s.authenticateAnalyst(ctx)
	if err != nil {
		s.metrics.queries.WithLabelValues(method, status.Code(err).String()).Inc()
		return nil, err
	}
	qctx, cancel := context.WithTimeout(context.WithValue(ctx, analystKey{}, a), s.cfg.QueryTimeout)
	defer cancel()
	resp, err := handler(qctx, req)
	code := status.Code(err)
	s.metrics.queries.WithLabelValues(method, code.String()).Inc()
	s.metrics.queryTime.WithLabelValues(method).Observe(time.Since(start).Seconds())
	attrs := []any{"method", method, "analyst", a.Name, "via", a.Via, "role", string(a.Role),
		"peer", peerAddr(ctx), "code", code.String(), "seconds", time.Since(start).Seconds()}
	if m, ok := req.(proto.Message); ok {
		attrs = append(attrs, "request", fmt.Sprint(m))
	}
	if err != nil {
		s.log.Info("query", append(attrs, "err", err)...)
		return nil, err
	}
	attrs = append(attrs, "results", resultCount(resp))
	if a, ok := resp.(interface{ GetAmbiguousHosts() []*pb.HostRef }); ok && len(a.GetAmbiguousHosts()) > 0 {
		// The host selector named several hosts, whose sessions the answer
		// mixes (each row names its host).
		attrs = append(attrs, "ambiguous_hosts", len(a.GetAmbiguousHosts()))
	}
	s.log.Info("query", attrs...)
	return resp, nil
}

func resultCount(resp any) int {
	switch r := resp.(type) {
	case *pb.WhoWasOnResponse:
		return len(r.GetLogonSessions()) + len(r.GetServerSessions())
	case *pb.AccountTimelineResponse:
		return len(r.GetLogonSessions())
	case *pb.ListLogonSessionsResponse:
		return len(r.GetLogonSessions())
	case *pb.ListServerSessionsResponse:
		return len(r.GetServerSessions())
	case *pb.ListOpenSessionsResponse:
		return len(r.GetLogonSessions())
	case *pb.ListHostsResponse:
		return len(r.GetHosts())
	}
	return 0
}

// queryService implements pb.QueryServiceServer over the store's queries.
type queryService struct {
	pb.UnimplementedQueryServiceServer
	s *Server
}

// WhoWasOn implements QueryService.WhoWasOn.
func (q *queryService) WhoWasOn(ctx context.Context, req *pb.WhoWasOnRequest) (*pb.WhoWasOnResponse, error) {
	var p params
	p.str("host", req.GetHost(), true)
	at := p.time("at", req.GetAt(), true)
	p.notFuture("at", at, q.s.cfg.Now())
	cur := p.cursor("WhoWasOn", req, req.GetPageToken())
	if p.err != nil {
		return nil, p.err
	}
	res, err := q.s.store.WhoWasOn(ctx, store.WhoWasOnQuery{Host: req.GetHost(), At: at, PageSize: int(req.GetPageSize()), Cursor: cur})
	if err != nil {
		return nil, q.s.queryError(err)
	}
	out := &pb.WhoWasOnResponse{NextPageToken: pageToken("WhoWasOn", req, res.NextCursor), AmbiguousHosts: hostRefsToProto(res.AmbiguousHosts)}
	for _, l := range res.Logon {
		out.LogonSessions = append(out.LogonSessions, logonIntervalToProto(l))
	}
	for _, si := range res.Server {
		out.ServerSessions = append(out.ServerSessions, serverIntervalToProto(si))
	}
	return out, nil
}

// AccountTimeline implements QueryService.AccountTimeline.
func (q *queryService) AccountTimeline(ctx context.Context, req *pb.AccountTimelineRequest) (*pb.AccountTimelineResponse, error) {
	var p params
	p.str("account", req.GetAccount(), true)
	from := p.time("start_time", req.GetStartTime(), true)
	p.notFuture("start_time", from, q.s.cfg.Now())
	to := p.time("end_time", req.GetEndTime(), true)
	cur := p.cursor("AccountTimeline", req, req.GetPageToken())
	if p.err != nil {
		return nil, p.err
	}
	res, err := q.s.store.AccountTimeline(ctx, store.TimelineQuery{Account: req.GetAccount(), StartTime: from, EndTime: to,
		PageSize: int(req.GetPageSize()), Cursor: cur})
	if err != nil {
		return nil, q.s.queryError(err)
	}
	out := &pb.AccountTimelineResponse{NextPageToken: pageToken("AccountTimeline", req, res.NextCursor)}
	for _, l := range res.Items {
		out.LogonSessions = append(out.LogonSessions, logonIntervalToProto(l))
	}
	return out, nil
}

// ListLogonSessions implements QueryService.ListLogonSessions.
func (q *queryService) ListLogonSessions(ctx context.Context, req *pb.ListLogonSessionsRequest) (*pb.ListLogonSessionsResponse, error) {
	var p params
	p.str("host", req.GetHost(), false)
	p.str("account", req.GetAccount(), false)
	p.str("authentication_package", req.GetAuthenticationPackage(), false)
	types := p.logonTypes(req.GetLogonTypes())
	from := p.time("start_time", req.GetStartTime(), true)
	p.notFuture("start_time", from, q.s.cfg.Now())
	to := p.time("end_time", req.GetEndTime(), true)
	cur := p.cursor("ListLogonSessions", req, req.GetPageToken())
	if p.err != nil {
		return nil, p.err
	}
	res, err := q.s.store.LogonSessions(ctx, store.LogonSessionsQuery{Host: req.GetHost(), Account: req.GetAccount(),
		LogonTypes: types, AuthenticationPackage: req.GetAuthenticationPackage(), StartTime: from, EndTime: to,
		PageSize: int(req.GetPageSize()), Cursor: cur})
	if err != nil {
		return nil, q.s.queryError(err)
	}
	out := &pb.ListLogonSessionsResponse{NextPageToken: pageToken("ListLogonSessions", req, res.NextCursor), AmbiguousHosts: hostRefsToProto(res.AmbiguousHosts)}
	for _, l := range res.Items {
		out.LogonSessions = append(out.LogonSessions, logonIntervalToProto(l))
	}
	return out, nil
}

// ListServerSessions implements QueryService.ListServerSessions.
func (q *queryService) ListServerSessions(ctx context.Context, req *pb.ListServerSessionsRequest) (*pb.ListServerSessionsResponse, error) {
	var p params
	p.str("from_computer", req.GetFromComputer(), false)
	p.str("user_name", req.GetUserName(), false)
	p.str("to_host", req.GetToHost(), false)
	from := p.time("start_time", req.GetStartTime(), true)
	p.notFuture("start_time", from, q.s.cfg.Now())
	to := p.time("end_time", req.GetEndTime(), true)
	cur := p.cursor("ListServerSessions", req, req.GetPageToken())
	if p.err != nil {
		return nil, p.err
	}
	res, err := q.s.store.ServerSessions(ctx, store.ServerSessionQuery{FromComputer: req.GetFromComputer(),
		UserName: req.GetUserName(), ToHost: req.GetToHost(), StartTime: from, EndTime: to,
		PageSize: int(req.GetPageSize()), Cursor: cur})
	if err != nil {
		return nil, q.s.queryError(err)
	}
	out := &pb.ListServerSessionsResponse{NextPageToken: pageToken("ListServerSessions", req, res.NextCursor), AmbiguousHosts: hostRefsToProto(res.AmbiguousHosts)}
	for _, si := range res.Items {
		out.ServerSessions = append(out.ServerSessions, serverIntervalToProto(si))
	}
	return out, nil
}

// ListOpenSessions implements QueryService.ListOpenSessions.
func (q *queryService) ListOpenSessions(ctx context.Context, req *pb.ListOpenSessionsRequest) (*pb.ListOpenSessionsResponse, error) {
	var p params
	p.str("authentication_package", req.GetAuthenticationPackage(), false)
	p.str("host", req.GetHost(), false)
	p.str("account", req.GetAccount(), false)
	types := p.logonTypes(req.GetLogonTypes())
	cur := p.cursor("ListOpenSessions", req, req.GetPageToken())
	if p.err != nil {
		return nil, p.err
	}
	res, err := q.s.store.OpenSessions(ctx, store.OpenSessionsQuery{LogonTypes: types,
		AuthenticationPackage: req.GetAuthenticationPackage(), Host: req.GetHost(), Account: req.GetAccount(),
		PageSize: int(req.GetPageSize()), Cursor: cur})
	if err != nil {
		return nil, q.s.queryError(err)
	}
	out := &pb.ListOpenSessionsResponse{NextPageToken: pageToken("ListOpenSessions", req, res.NextCursor), AmbiguousHosts: hostRefsToProto(res.AmbiguousHosts)}
	for _, l := range res.Items {
		out.LogonSessions = append(out.LogonSessions, logonIntervalToProto(l))
	}
	return out, nil
}

// ListHosts implements QueryService.ListHosts.
func (q *queryService) ListHosts(ctx context.Context, req *pb.ListHostsRequest) (*pb.ListHostsResponse, error) {
	var p params
	var stale time.Duration
	if d := req.GetStaleAfter(); d != nil {
		if err := d.CheckValid(); err != nil {
			p.fail("stale_after", "%v", err)
		} else if stale = d.AsDuration(); stale <= 0 {
			p.fail("stale_after", "%v is not positive", stale)
		}
	}
	cur := p.cursor("ListHosts", req, req.GetPageToken())
	if p.err != nil {
		return nil, p.err
	}
	res, err := q.s.store.Hosts(ctx, store.HostsQuery{StaleAfter: stale, PageSize: int(req.GetPageSize()), Cursor: cur})
	if err != nil {
		return nil, q.s.queryError(err)
	}
	out := &pb.ListHostsResponse{NextPageToken: pageToken("ListHosts", req, res.NextCursor)}
	for _, h := range res.Items {
		hs := &pb.HostStatus{
			Host:               hostToProto(h.Host),
			FirstSeen:          ts(h.FirstReceived),
			LastSeen:           ts(h.StoredUpTo),
			AgentId:            h.AgentID,
			OpenLogonSessions:  uint32(h.OpenLogonSessions),
			OpenServerSessions: uint32(h.OpenServerSessions),
			AgentKeyReuseAt:    ts(h.AgentKeyReuseAt),
		}
		if !h.ClockSkewAt.IsZero() {
			hs.ClockSkew, hs.ClockSkewMeasuredAt = durationpb.New(h.ClockSkew), ts(h.ClockSkewAt)
		}
		out.Hosts = append(out.Hosts, hs)
	}
	return out, nil
}

// params checks a request's parameters, keeping the first error, which
// names the parameter as the .proto does.
type params struct{ err error }

func (p *params) fail(field, format string, args ...any) {
	if p.err == nil {
		p.err = status.Errorf(codes.InvalidArgument, "%s: %s", field, fmt.Sprintf(format, args...))
	}
}

func (p *params) str(field, v string, required bool) {
	switch {
	case required && strings.TrimSpace(v) == "":
		p.fail(field, "is required")
	case len(v) > limits.MaxStringBytes:
		p.fail(field, "%d bytes, more than %d", len(v), limits.MaxStringBytes)
	case strings.ContainsRune(v, 0):
		p.fail(field, "contains a NUL byte")
	}
}

// logonTypes returns the raw WMI values of types.
func (p *params) logonTypes(types []pb.LogonType) []uint32 {
	var out []uint32
	for i, t := range types {
		v, ok := t.WMIValue()
		if !ok {
			p.fail(fmt.Sprintf("logon_types[%d]", i), "%v is not a logon type", t)
			return nil
		}
		out = append(out, v)
	}
	return out
}

func (p *params) time(field string, v *timestamppb.Timestamp, required bool) time.Time {
	if v == nil {
		if required {
			p.fail(field, "is required")
		}
		return time.Time{}
	}
	if err := v.CheckValid(); err != nil {
		p.fail(field, "%v", err)
		return time.Time{}
	}
	return v.AsTime()
}

// notFuture refuses a moment after the collector's clock (beyond the
// clock skew reports may have): history is known up to now, and a session
// open now is not known to be open then, so a question about the future
// would be answered with today's open sessions as if they were known.
func (p *params) notFuture(field string, t, now time.Time) {
	if t.After(now.Add(store.MaxClockSkew)) {
		p.fail(field, "%s is in the future (the collector's clock says %s): history is known only up to now",
			t.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
}

// Page tokens wrap the store's cursor with a digest of the query they
// belong to, so that a token passed to another query, or with other
// parameters, is refused instead of silently paging something else.
const tokenPrefix = "q1."

func queryDigest(method string, req proto.Message) string {
	c := proto.Clone(req)
	m := c.ProtoReflect()
	fields := m.Descriptor().Fields()
	for _, name := range []string{"page_token", "page_size"} {
		if f := fields.ByName(protoreflect.Name(name)); f != nil {
			m.Clear(f)
		}
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	sum := sha256.Sum256(append([]byte(method+"\x00"), b...))
	return hex.EncodeToString(sum[:8])
}

func pageToken(method string, req proto.Message, cursor string) string {
	if cursor == "" {
		return ""
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(queryDigest(method, req)+"."+cursor))
}

func (p *params) cursor(method string, req proto.Message, token string) string {
	if token == "" {
		return ""
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, tokenPrefix))
	digest, cur, ok := strings.Cut(string(raw), ".")
	if !strings.HasPrefix(token, tokenPrefix) || err != nil || !ok || cur == "" {
		p.fail("page_token", "not a page token of this collector")
		return ""
	}
	if digest != queryDigest(method, req) {
		p.fail("page_token", "from another query or other parameters; pass it back with the other fields unchanged")
		return ""
	}
	return cur
}

// storeParams names the store's query fields as the .proto does.
var storeParams = map[string]string{
	"PageSize": "page_size", "Cursor": "page_token", "Host": "host", "At": "at",
	"StartTime": "start_time", "EndTime": "end_time", "Account": "account", "FromComputer": "from_computer",
	"UserName": "user_name", "ToHost": "to_host", "StaleAfter": "stale_after",
	"AuthenticationPackage": "authentication_package", "LogonTypes": "logon_types",
}

// queryError maps a store error: a parameter error to INVALID_ARGUMENT
// naming the parameter, anything else to UNAVAILABLE (or DEADLINE_EXCEEDED
// after QueryTimeout).
func (s *Server) queryError(err error) error {
	var fe *store.FieldError
	switch {
	case errors.As(err, &fe):
		name := fe.Field
		if n, ok := storeParams[fe.Field]; ok {
			name = n
		}
		return status.Errorf(codes.InvalidArgument, "%s: %s", name, fe.Reason)
	case errors.Is(err, store.ErrInvalidInput):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "the query took too long; narrow it")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "query cancelled")
	}
	s.metrics.storeErrors.Inc()
	s.log.Error("query failed in the store", "err", err)
	return s.unavailable("the store is unavailable")
}
