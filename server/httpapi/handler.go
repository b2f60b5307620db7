package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// DefaultMaxExportRows is the default bound of one export.
const DefaultMaxExportRows = 1_000_000

// exportPageWrite is how long writing one page of an export may take; each
// page extends the connection's write deadline by this much.
const exportPageWrite = time.Minute

// maxTokenBytes bounds the bearer token.
const maxTokenBytes = 512

// Options adjust the API.
type Options struct {
	// Now is the clock relative times ("-2h", "now") are resolved against;
	// default time.Now.
	Now func() time.Time
	// MaxExportRows bounds the rows of one export; default
	// DefaultMaxExportRows. An export that would exceed it is cut off.
	MaxExportRows int
	// Logger receives what the QueryService's own log line does not say
	// (an export cut off); default slog.Default().
	Logger *slog.Logger
	// WhoAmI, when not nil, answers /api/v1/whoami: the name and role of
	// the credentials in ctx (as Queries authenticates them); nil answers
	// 404 there.
	WhoAmI func(ctx context.Context) (name, role string, err error)
}

// handler serves the routes of the table over a QueryService.
type handler struct {
	q      pb.QueryServiceServer
	opts   Options
	byPath map[string]*Route
}

// New returns the API's handler: the routes of Routes under /api/v1/,
// answered by q (the collector's (*server.Server).Queries(), which
// authenticates each call from the incoming metadata). Only GET and HEAD
// are served; any other path under the handler answers 404 in JSON.
func New(q pb.QueryServiceServer, opts Options) http.Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxExportRows <= 0 {
		opts.MaxExportRows = DefaultMaxExportRows
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	h := &handler{q: q, opts: opts, byPath: map[string]*Route{}}
	for i := range routes {
		h.byPath[routes[i].Path] = &routes[i]
	}
	return h
}

// apiError is an error answer: an HTTP status, a code and a message.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func invalidArgument(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_argument", msg: fmt.Sprintf(format, args...)}
}

// errorBody is the JSON body of every error answer.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	h.Del("Content-Disposition")
	h.Del("Next-Page-Token")
	h.Set("Content-Type", "application/json; charset=utf-8")
	if e.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="sessionaudit"`)
	}
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: e.msg, Code: e.code})
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, ok := h.byPath[r.URL.Path]
	if !ok {
		paths := make([]string, 0, len(h.byPath))
		for p := range h.byPath {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		writeError(w, &apiError{status: http.StatusNotFound, code: "not_found",
			msg: fmt.Sprintf("no route %q; the routes are %s", r.URL.Path, strings.Join(paths, ", "))})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, &apiError{status: http.StatusMethodNotAllowed, code: "invalid_argument",
			msg: fmt.Sprintf("method %s: %s takes GET or HEAD", r.Method, route.Path)})
		return
	}
	if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
		writeError(w, invalidArgument("request body: a GET request takes none"))
		return
	}
	token, aerr := bearerToken(r)
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	ctx := metadata.NewIncomingContext(r.Context(), metadata.Pairs("authorization", "Bearer "+token))
	ctx = peer.NewContext(ctx, &peer.Peer{Addr: remoteAddr(r.RemoteAddr)})
	c := &call{h: h, route: route, w: w, r: r, ctx: ctx, now: h.opts.Now().UTC(), times: map[string]int64{}}
	if err := c.parse(); err != nil {
		writeError(w, err)
		return
	}
	if err := route.serve(c); err != nil {
		writeError(w, c.apiError(err))
	}
}

// bearerToken returns the request's API token, or a 401 saying what is
// wrong with its Authorization header.
func bearerToken(r *http.Request) (string, *apiError) {
	unauth := func(msg string) (string, *apiError) {
		return "", &apiError{status: http.StatusUnauthorized, code: "unauthenticated", msg: msg}
	}
	vals := r.Header.Values("Authorization")
	switch {
	case len(vals) == 0:
		return unauth(`Authorization header missing: want "Bearer <API token>"`)
	case len(vals) > 1:
		return unauth("Authorization header given more than once")
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return unauth(`Authorization header: want "Bearer <API token>"`)
	}
	if len(token) > maxTokenBytes {
		return unauth(fmt.Sprintf("Authorization header: token of %d bytes, more than %d", len(token), maxTokenBytes))
	}
	for _, b := range []byte(token) {
		if b <= ' ' || b >= 0x7f {
			return unauth("Authorization header: the token has a character no API token has")
		}
	}
	return token, nil
}

// remoteAddr is the client's address as net/http gives it, for the
// collector's log.
type remoteAddr string

func (a remoteAddr) Network() string { return "tcp" }
func (a remoteAddr) String() string  { return string(a) }

// apiError turns a QueryService error (a gRPC status) or a parameter
// error into an answer; a parameter the service names by its request field
// is reported under the route's parameter name.
func (c *call) apiError(err error) *apiError {
	if e, ok := err.(*apiError); ok {
		return e
	}
	st := status.Convert(err)
	msg := st.Message()
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
		return invalidArgument("%s", c.rename(msg))
	case codes.Unauthenticated:
		return &apiError{status: http.StatusUnauthorized, code: "unauthenticated", msg: msg}
	case codes.PermissionDenied:
		return &apiError{status: http.StatusForbidden, code: "permission_denied", msg: msg}
	case codes.NotFound:
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: msg}
	case codes.Unavailable, codes.ResourceExhausted, codes.Canceled, codes.Aborted:
		return &apiError{status: http.StatusServiceUnavailable, code: "unavailable", msg: msg}
	case codes.DeadlineExceeded:
		return &apiError{status: http.StatusGatewayTimeout, code: "deadline_exceeded", msg: msg}
	}
	return &apiError{status: http.StatusInternalServerError, code: "internal", msg: "internal error"}
}

// rename replaces a request field name at the start of a QueryService
// message ("start_time: ...", "logon_types[1]: ...") with the route's
// parameter name.
func (c *call) rename(msg string) string {
	field, rest, ok := strings.Cut(msg, ":")
	if !ok {
		return msg
	}
	base, _, _ := strings.Cut(field, "[")
	for _, p := range c.route.Params {
		if p.Field == base && p.Field != "" {
			return p.Name + ":" + rest
		}
	}
	return msg
}

// call is one request being served.
type call struct {
	h     *handler
	route *Route
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context
	now   time.Time

	q        url.Values
	err      *apiError
	format   string
	pageSize int32
	// token is the QueryService page token from page_token.
	token string
	// digest identifies the question, for page tokens.
	digest string
	// fixed are the moments a page token carries; times those resolved
	// now, for the next page's token.
	fixed, times map[string]int64
}

// fail records the first parameter error, naming the parameter.
func (c *call) fail(name, format string, args ...any) {
	if c.err == nil {
		c.err = invalidArgument("%s: %s", name, fmt.Sprintf(format, args...))
	}
}

// result returns the first parameter error, or nil.
func (c *call) result() error {
	if c.err != nil {
		return c.err
	}
	return nil
}
