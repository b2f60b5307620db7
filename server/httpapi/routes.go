package httpapi

import (
	"fmt"
	"slices"
	"strings"

	"github.com/sessionaudit/sessionaudit/proto/limits"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// Param is one query parameter of a route.
type Param struct {
	// Name is the parameter's name in the query string.
	Name string
	// Field is the QueryService request field it fills, when its name
	// differs, so that the service's errors are reported under Name.
	Field string
	// Type is the OpenAPI type of the value: "string" or "integer".
	Type string
	// Format is "time" (rows.ParseTime), "duration" (rows.ParseDuration),
	// "account" (DOMAIN\name) or "".
	Format string
	// Enum lists the allowed values, when they are fixed.
	Enum []string
	// Required says the parameter must be given.
	Required bool
	// Repeated says the parameter may be given more than once.
	Repeated bool
	// MaxLength bounds the value's length in bytes.
	MaxLength int
	// Minimum and Maximum bound an integer.
	Minimum, Maximum int
	// Doc describes the parameter.
	Doc string
}

// Route is one GET route of the API.
type Route struct {
	// Path is the route's path, e.g. /api/v1/who.
	Path string
	// Summary says what the route answers.
	Summary string
	// Params are the query parameters the route accepts; any other is
	// refused.
	Params []Param
	// Formats are the values of its format parameter; the first is the
	// default.
	Formats []string
	// Row names the row types of its answer: "logon", "server", "host".
	Rows []string

	serve func(*call) error
}

// Limits on parameter values, in bytes.
const (
	maxName      = 256
	maxAccount   = 2*maxName + 1
	maxTimeExpr  = 64
	maxPageToken = 2048
	// maxQuery bounds the whole query string.
	maxQuery = 8192
	// maxTypes bounds the repeated type parameter.
	maxTypes = 16
)

// Shared parameter definitions.
var (
	pageSizeParam = Param{Name: "page_size", Type: "integer", Minimum: 1, Maximum: limits.MaxPageSize, MaxLength: 8,
		Doc: fmt.Sprintf("Rows per page, 1..%d; default %d.", limits.MaxPageSize, limits.DefaultPageSize)}
	pageTokenParam = Param{Name: "page_token", Type: "string", MaxLength: maxPageToken,
		Doc: "next_page_token of the previous page, with the other parameters unchanged."}
	sinceParam = Param{Name: "since", Field: "start_time", Type: "string", Format: "time", Required: true, MaxLength: maxTimeExpr,
		Doc: "Start of the range: RFC 3339, a date (midnight UTC), now, or a duration ago (-2h, 30d, 2w)."}
	untilParam = Param{Name: "until", Field: "end_time", Type: "string", Format: "time", MaxLength: maxTimeExpr,
		Doc: fmt.Sprintf("End of the range, at most %d days after since; default now. Same forms as since.", limits.MaxQuerySpanDays)}
	hostParam = Param{Name: "host", Type: "string", MaxLength: maxName,
		Doc: "Host name (case-insensitive, with or without domain) or machine GUID."}
	accountParam = Param{Name: "account", Type: "string", Format: "account", MaxLength: maxAccount,
		Doc: `Account as DOMAIN\name (case-insensitive).`}
	typeParam = Param{Name: "type", Field: "logon_types", Type: "string", Repeated: true, MaxLength: maxTimeExpr,
		Doc: "Logon type, repeatable (any of them): " + strings.Join(pb.LogonTypeList(), ", ") +
			"; or a proto name (REMOTE_INTERACTIVE) or a WMI number (10)."}
	packageParam = Param{Name: "package", Field: "authentication_package", Type: "string", MaxLength: maxName,
		Doc: "Authentication package (Kerberos, NTLM, Negotiate, ...; case-insensitive)."}
	fromParam = Param{Name: "from", Field: "from_computer", Type: "string", MaxLength: maxName,
		Doc: "Remote computer holding the SMB session (Win32_ServerSession.ComputerName)."}
	userParam = Param{Name: "user", Field: "user_name", Type: "string", MaxLength: maxName,
		Doc: "Remote user of the SMB session (Win32_ServerSession.UserName)."}
	toParam = Param{Name: "to", Field: "to_host", Type: "string", MaxLength: maxName,
		Doc: "Host the SMB session was held to (name or machine GUID)."}
)

func formatParam(formats ...string) Param {
	return Param{Name: "format", Type: "string", Enum: formats, MaxLength: 8,
		Doc: "Response format; default " + formats[0] + ". With csv or jsonl, next_page_token is in the Next-Page-Token header."}
}

var routes = []Route{
	{
		Path:    "/api/v1/who",
		Summary: "Who was on a host at a moment: its logon and server sessions open then.",
		Params: []Param{
			{Name: "host", Type: "string", Required: true, MaxLength: maxName, Doc: hostParam.Doc},
			{Name: "at", Type: "string", Format: "time", Required: true, MaxLength: maxTimeExpr,
				Doc: "The moment: RFC 3339, a date, now, or a duration ago."},
			{Name: "kind", Type: "string", Enum: []string{"logon", "server"}, MaxLength: 8,
				Doc: "With format=csv or jsonl: which sessions to write (default logon)."},
			formatParam("json", "csv", "jsonl"), pageSizeParam, pageTokenParam,
		},
		Formats: []string{"json", "csv", "jsonl"},
		Rows:    []string{"logon", "server"},
		serve:   (*call).who,
	},
	{
		Path: "/api/v1/logon-sessions",
		Summary: "Logon sessions that overlap a range, fleet-wide or on one host, by account, type or package: " +
			"a host's timeline, an account's timeline.",
		Params: []Param{sinceParam, untilParam, hostParam, accountParam, typeParam, packageParam,
			formatParam("json", "csv", "jsonl"), pageSizeParam, pageTokenParam},
		Formats: []string{"json", "csv", "jsonl"},
		Rows:    []string{"logon"},
		serve:   (*call).logonSessions,
	},
	{
		Path:    "/api/v1/server-sessions",
		Summary: "Server (SMB) sessions that overlap a range, by remote computer, remote user or target host.",
		Params: []Param{sinceParam, untilParam, fromParam, userParam, toParam,
			formatParam("json", "csv", "jsonl"), pageSizeParam, pageTokenParam},
		Formats: []string{"json", "csv", "jsonl"},
		Rows:    []string{"server"},
		serve:   (*call).serverSessions,
	},
	{
		Path:    "/api/v1/open-sessions",
		Summary: "Logon sessions open now, fleet-wide, ordered by start.",
		Params: []Param{typeParam, hostParam, accountParam, packageParam,
			formatParam("json", "csv", "jsonl"), pageSizeParam, pageTokenParam},
		Formats: []string{"json", "csv", "jsonl"},
		Rows:    []string{"logon"},
		serve:   (*call).openSessions,
	},
	{
		Path:    "/api/v1/hosts",
		Summary: "Hosts with their last report and open session counts, ordered by machine GUID.",
		Params: []Param{
			{Name: "stale", Field: "stale_after", Type: "string", Format: "duration", MaxLength: maxTimeExpr,
				Doc: "Only hosts whose stored history ends longer ago than this (90m, 1h, 2d): the taken_at of the newest report stored."},
			formatParam("json", "csv", "jsonl"), pageSizeParam, pageTokenParam,
		},
		Formats: []string{"json", "csv", "jsonl"},
		Rows:    []string{"host"},
		serve:   (*call).hosts,
	},
	{
		Path:    "/api/v1/whoami",
		Summary: "The name and role of the API token: for a client to check a token.",
		Formats: []string{"json"},
		serve:   (*call).whoami,
	},
	{
		Path: "/api/v1/export",
		Summary: "Every logon or server session of a range, all pages streamed, up to the collector's row limit " +
			"(a larger export is cut off, never silently short).",
		Params: []Param{
			{Name: "kind", Type: "string", Enum: []string{"logon", "server"}, Required: true, MaxLength: 8,
				Doc: "logon or server sessions."},
			sinceParam, untilParam,
			hostParam, accountParam, typeParam, packageParam,
			fromParam, userParam, toParam,
			formatParam("jsonl", "csv"),
		},
		Formats: []string{"jsonl", "csv"},
		Rows:    []string{"logon", "server"},
		serve:   (*call).export,
	},
}

// Routes returns the API's routes and their parameters: the table the
// handler serves from.
func Routes() []Route {
	out := slices.Clone(routes)
	for i := range out {
		out[i].Params = slices.Clone(out[i].Params)
	}
	return out
}

// param returns the route's parameter called name.
func (r *Route) param(name string) (Param, bool) {
	for _, p := range r.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// paramNames lists the route's parameters, for errors.
func (r *Route) paramNames() string {
	names := make([]string, len(r.Params))
	for i, p := range r.Params {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}
