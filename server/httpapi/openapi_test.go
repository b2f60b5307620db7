package httpapi_test

// docs/openapi.json is the API's contract. TestOpenAPIMatchesHandler builds
// the document the handler's route table (httpapi.Routes) and the row types
// (server/rows) imply, and compares it with the file: every route and
// parameter, its constraints, the row schemas' properties (rows.Columns)
// and types. After changing the routes or the rows, regenerate the file:
//
//	go test ./server/httpapi -run TestOpenAPIMatchesHandler -update
//
// and review the diff. The end-to-end tests check real answers against
// the document (checkAgainstSchema).

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sessionaudit/sessionaudit/server/httpapi"
	"github.com/sessionaudit/sessionaudit/server/rows"
)

var update = flag.Bool("update", false, "rewrite docs/openapi.json from the route table")

const openAPIPath = "../../docs/openapi.json"

// rowDocs describes each row property; a property without one fails the
// test.
var rowDocs = map[string]string{
	"host":                   "Host name, as last reported.",
	"host_domain":            "The host's domain, as last reported.",
	"machine_guid":           "The host's machine GUID, its identity.",
	"account":                `Account as DOMAIN\name; empty when the host reported none.`,
	"sid":                    "The account's SID, when reported.",
	"logon_type":             "Short name of the logon type (rdp, interactive, network, service, batch, ...), or unknown(N).",
	"logon_type_raw":         "Win32_LogonSession.LogonType as reported; null when absent.",
	"logon_id":               "Win32_LogonSession.LogonId.",
	"authentication_package": "Authentication package (Kerberos, NTLM, Negotiate, ...).",
	"start":                  "Start of the session, RFC 3339 UTC.",
	"last_seen":              "The last report that had the session (for a host: the latest report), RFC 3339 UTC.",
	"end_before":             "The first report without it: the session ended between last_seen and end_before. Empty while open.",
	"open":                   "True while the session is open.",
	"boot_time":              "Boot of the host the session belongs to, RFC 3339 UTC.",
	"lingering_since":        "When the agent first saw the session lingering, RFC 3339 UTC: an interactive, RDP or cached logon with no process left, kept by LSA because a token to it is still open; the user has most likely logged off. Empty while the session is live, for other logon types, and when the agent did not tell.",
	"from_computer":          "Remote computer holding the SMB session (Win32_ServerSession.ComputerName).",
	"user_name":              "Remote user (Win32_ServerSession.UserName).",
	"client_type":            "Win32_ServerSession.ClientType.",
	"transport_name":         "Win32_ServerSession.TransportName.",
	"session_type":           "guest, no-encryption, other, or unknown(N); empty when absent.",
	"resources_opened":       "Files, devices and pipes opened; null when absent.",
	"idle_seconds":           "Seconds since the last activity, as last reported; null when absent.",
	"os":                     "Operating system caption.",
	"os_version":             "Operating system version.",
	"agent_version":          "Version of the agent that reported last.",
	"agent_id":               "The agent that reported last.",
	"last_boot_time":         "The host's last boot, RFC 3339 UTC.",
	"first_seen":             "The first report ever received, RFC 3339 UTC.",
	"open_logon_sessions":    "Logon sessions open now.",
	"open_server_sessions":   "Server sessions open now.",
}

// schemaName is the component of a row type.
var schemaName = map[string]string{"logon": "LogonSession", "server": "ServerSession", "host": "Host"}

// listKey is the JSON key of a row type's list.
var listKey = map[string]string{"logon": "logon_sessions", "server": "server_sessions", "host": "hosts"}

type obj = map[string]any

func rowSchema[T any](t *testing.T, title string) obj {
	props := obj{}
	typ := reflect.TypeFor[T]()
	for i, name := range rows.Columns[T]() {
		doc, ok := rowDocs[name]
		if !ok {
			t.Errorf("row property %s.%s has no description in rowDocs", typ.Name(), name)
		}
		var s obj
		switch f := typ.Field(i).Type; {
		case f.Kind() == reflect.String:
			s = obj{"type": "string"}
		case f.Kind() == reflect.Bool:
			s = obj{"type": "boolean"}
		case f.Kind() == reflect.Int64:
			s = obj{"type": "integer", "format": "int64"}
		case f.Kind() == reflect.Pointer && f.Elem().Kind() == reflect.Int64:
			s = obj{"type": []any{"integer", "null"}, "format": "int64"}
		default:
			t.Fatalf("row property %s.%s: no schema for %v", typ.Name(), name, f)
		}
		s["description"] = doc
		props[name] = s
	}
	required := make([]any, 0, len(props))
	for _, c := range rows.Columns[T]() {
		required = append(required, c)
	}
	return obj{"type": "object", "title": title, "properties": props, "required": required, "additionalProperties": false}
}

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func errorResponse(desc string) obj {
	return obj{"description": desc, "content": obj{"application/json": obj{"schema": ref("Error")}}}
}

// expectedOpenAPI is the document the route table implies.
func expectedOpenAPI(t *testing.T) obj {
	schemas := obj{
		"LogonSession":  rowSchema[rows.Logon](t, "rows.Logon: one logon session interval"),
		"ServerSession": rowSchema[rows.Server](t, "rows.Server: one server (SMB) session interval"),
		"Host":          rowSchema[rows.Host](t, "rows.Host: one host and its reporting state"),
		"Error": obj{"type": "object", "required": []any{"error", "code"}, "additionalProperties": false,
			"properties": obj{
				"error": obj{"type": "string", "description": "What is wrong, naming the parameter."},
				"code": obj{"type": "string", "enum": []any{"invalid_argument", "unauthenticated", "permission_denied",
					"not_found", "unavailable", "deadline_exceeded", "internal"}},
			}},
	}
	paths := obj{}
	for _, r := range httpapi.Routes() {
		params := []any{}
		for _, p := range r.Params {
			s := obj{"type": p.Type, "maxLength": p.MaxLength}
			if p.Type == "integer" {
				s = obj{"type": "integer", "minimum": p.Minimum, "maximum": p.Maximum}
			}
			if p.Format != "" {
				s["format"] = p.Format
			}
			if len(p.Enum) > 0 {
				enum := make([]any, len(p.Enum))
				for i, e := range p.Enum {
					enum[i] = e
				}
				s["enum"] = enum
			}
			if p.Name == "format" {
				s["default"] = r.Formats[0]
			}
			if p.Name == "page_size" {
				s["default"] = 100
			}
			if p.Repeated {
				s = obj{"type": "array", "items": s, "maxItems": 16}
			}
			param := obj{"name": p.Name, "in": "query", "required": p.Required, "description": p.Doc, "schema": s}
			if p.Repeated {
				param["style"], param["explode"] = "form", true
			}
			params = append(params, param)
		}
		name := strings.TrimPrefix(r.Path, "/api/v1/")
		content := obj{}
		switch {
		case len(r.Rows) == 0: // whoami
			resp := camel(name) + "Response"
			schemas[resp] = obj{"type": "object", "required": []any{"name", "role"}, "additionalProperties": false,
				"properties": obj{
					"name": obj{"type": "string", "description": "The token's name."},
					"role": obj{"type": "string", "enum": []any{"reader", "admin"}},
				}}
			content["application/json"] = obj{"schema": ref(resp)}
		case slices.Contains(r.Formats, "json"):
			props := obj{}
			var required []any
			for _, kind := range r.Rows {
				props[listKey[kind]] = obj{"type": "array", "items": ref(schemaName[kind])}
				required = append(required, listKey[kind])
			}
			props["next_page_token"] = obj{"type": "string", "description": "Pass as page_token for the next page; empty on the last."}
			required = append(required, "next_page_token")
			resp := camel(name) + "Response"
			schemas[resp] = obj{"type": "object", "properties": props, "required": required, "additionalProperties": false}
			content["application/json"] = obj{"schema": ref(resp)}
		}
		var oneOf []any
		for _, kind := range r.Rows {
			oneOf = append(oneOf, ref(schemaName[kind]))
		}
		var rowsSchema any
		if len(oneOf) == 1 {
			rowsSchema = oneOf[0]
		} else {
			rowsSchema = obj{"oneOf": oneOf}
		}
		if slices.Contains(r.Formats, "jsonl") {
			content["application/x-ndjson"] = obj{"schema": rowsSchema,
				"description": "One row per line."}
		}
		if slices.Contains(r.Formats, "csv") {
			content["text/csv"] = obj{"schema": obj{"type": "string"},
				"description": "A header line with the row's property names, then one line per row; cells beginning with = + - @ tab or CR are prefixed with '."}
		}
		headers := obj{}
		if slices.Contains(r.Formats, "csv") && r.Path != "/api/v1/export" {
			headers["Next-Page-Token"] = obj{"description": "With format=csv or jsonl: the next page's token, absent on the last page.",
				"schema": obj{"type": "string"}}
		}
		ok := obj{"description": r.Summary, "content": content}
		if len(headers) > 0 {
			ok["headers"] = headers
		}
		paths[r.Path] = obj{"get": obj{
			"operationId": camel(name),
			"summary":     r.Summary,
			"parameters":  params,
			"responses": obj{
				"200": ok,
				"400": errorResponse("A parameter is missing, unknown, repeated, too long or invalid; the message names it."),
				"401": errorResponse("No valid bearer token."),
				"403": errorResponse("The credentials may not query."),
				"405": errorResponse("Only GET and HEAD."),
				"500": errorResponse("Internal error."),
				"503": errorResponse("The store is unavailable; retry later."),
				"504": errorResponse("The query took too long; narrow it."),
			},
		}}
	}
	return obj{
		"openapi": "3.1.0",
		"info": obj{
			"title":   "sessionaudit collector HTTP API",
			"version": "1",
			"description": "Who was logged on where, and when: the collector's QueryService over HTTPS, for SIEMs, notebooks, " +
				"Grafana and scripts. Every request needs an API token (role reader or admin) as a bearer token. See docs/http-api.md.",
		},
		"servers":    []any{obj{"url": "https://collector.example:8444", "description": "The collector's --http-listen address."}},
		"security":   []any{obj{"bearerToken": []any{}}},
		"paths":      paths,
		"components": obj{"schemas": schemas, "securitySchemes": obj{"bearerToken": obj{"type": "http", "scheme": "bearer", "bearerFormat": "sat_ API token"}}},
	}
}

// camel turns "logon-sessions" into "LogonSessions".
func camel(s string) string {
	var b strings.Builder
	for _, part := range strings.Split(s, "-") {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// loadOpenAPI reads docs/openapi.json.
func loadOpenAPI(t *testing.T) obj {
	t.Helper()
	b, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatalf("the API's contract: %v", err)
	}
	var doc obj
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", openAPIPath, err)
	}
	return doc
}

func TestOpenAPIMatchesHandler(t *testing.T) {
	want := expectedOpenAPI(t)
	b, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(openAPIPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var canon obj // want as the file would read it
	if err := json.Unmarshal(b, &canon); err != nil {
		t.Fatal(err)
	}
	got := loadOpenAPI(t)
	// The routes and their parameters first, for a readable failure.
	gotPaths, _ := got["paths"].(obj)
	wantPaths := canon["paths"].(obj)
	if g, w := slices.Sorted(maps.Keys(gotPaths)), slices.Sorted(maps.Keys(wantPaths)); !slices.Equal(g, w) {
		t.Errorf("%s paths %v; the handler serves %v", openAPIPath, g, w)
	}
	for path, w := range wantPaths {
		if g, ok := gotPaths[path]; ok && !reflect.DeepEqual(paramNames(g), paramNames(w)) {
			t.Errorf("%s %s parameters %v; the handler takes %v", openAPIPath, path, paramNames(g), paramNames(w))
		}
	}
	for _, name := range []string{"LogonSession", "ServerSession", "Host"} {
		g := propertyNames(got, name)
		w := propertyNames(canon, name)
		if !slices.Equal(g, w) {
			t.Errorf("%s schema %s properties %v; the rows have %v", openAPIPath, name, g, w)
		}
	}
	if !reflect.DeepEqual(got, canon) {
		t.Errorf("%s differs from the route table and rows; run go test ./server/httpapi -run TestOpenAPIMatchesHandler -update and review the diff%s",
			openAPIPath, firstDifference("", got, canon))
	}
	// The row schemas are exactly rows.Columns.
	for name, cols := range map[string][]string{"LogonSession": rows.Columns[rows.Logon](), "ServerSession": rows.Columns[rows.Server](),
		"Host": rows.Columns[rows.Host]()} {
		if g := propertyNames(got, name); !slices.Equal(g, slices.Sorted(slices.Values(cols))) {
			t.Errorf("schema %s: %v, rows.Columns %v", name, g, cols)
		}
	}
}

func paramNames(op any) []string {
	var out []string
	get, _ := op.(obj)["get"].(obj)
	params, _ := get["parameters"].([]any)
	for _, p := range params {
		m, _ := p.(obj)
		out = append(out, fmt.Sprint(m["name"]))
	}
	slices.Sort(out)
	return out
}

func propertyNames(doc obj, schema string) []string {
	comps, _ := doc["components"].(obj)
	schemas, _ := comps["schemas"].(obj)
	s, _ := schemas[schema].(obj)
	props, _ := s["properties"].(obj)
	return slices.Sorted(maps.Keys(props))
}

// firstDifference names where two decoded JSON values first differ.
func firstDifference(at string, got, want any) string {
	switch w := want.(type) {
	case obj:
		g, ok := got.(obj)
		if !ok {
			return fmt.Sprintf("\nat %s: %v, want an object", at, got)
		}
		for _, k := range slices.Sorted(maps.Keys(w)) {
			if _, ok := g[k]; !ok {
				return fmt.Sprintf("\nat %s: %q missing", at, k)
			}
			if d := firstDifference(at+"/"+k, g[k], w[k]); d != "" {
				return d
			}
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				return fmt.Sprintf("\nat %s: %q not expected", at, k)
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("\nat %s: %v, want %v", at, got, want)
		}
		for i := range w {
			if d := firstDifference(fmt.Sprintf("%s[%d]", at, i), g[i], w[i]); d != "" {
				return d
			}
		}
	default:
		if !reflect.DeepEqual(got, want) {
			return fmt.Sprintf("\nat %s: %v, want %v", at, got, want)
		}
	}
	return ""
}

// checkAgainstSchema checks a JSON answer of path against the document:
// its keys are the response schema's properties, and each row's keys are
// its row schema's properties, with values of the documented types.
func checkAgainstSchema(t *testing.T, doc obj, path string, body []byte) {
	t.Helper()
	paths, _ := doc["paths"].(obj)
	op, _ := paths[path].(obj)
	get, _ := op["get"].(obj)
	responses, _ := get["responses"].(obj)
	ok, _ := responses["200"].(obj)
	content, _ := ok["content"].(obj)
	js, _ := content["application/json"].(obj)
	schema := resolve(doc, js["schema"])
	if schema == nil {
		t.Fatalf("%s: no application/json schema for 200 in the document", path)
	}
	var answer obj
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&answer); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	checkObject(t, doc, path, schema, answer)
}

func resolve(doc obj, s any) obj {
	m, _ := s.(obj)
	if r, ok := m["$ref"].(string); ok {
		comps, _ := doc["components"].(obj)
		schemas, _ := comps["schemas"].(obj)
		m, _ = schemas[strings.TrimPrefix(r, "#/components/schemas/")].(obj)
	}
	return m
}

func checkObject(t *testing.T, doc obj, at string, schema obj, v obj) {
	t.Helper()
	props, _ := schema["properties"].(obj)
	if g, w := slices.Sorted(maps.Keys(v)), slices.Sorted(maps.Keys(props)); !slices.Equal(g, w) {
		t.Errorf("%s: keys %v, the document says %v", at, g, w)
		return
	}
	for k, val := range v {
		ps := resolve(doc, props[k])
		types := fmt.Sprint(ps["type"])
		switch x := val.(type) {
		case []any:
			if !strings.Contains(types, "array") {
				t.Errorf("%s.%s: an array, documented as %s", at, k, types)
				continue
			}
			items := resolve(doc, ps["items"])
			for i, e := range x {
				m, ok := e.(obj)
				if !ok {
					t.Errorf("%s.%s[%d]: not an object", at, k, i)
					continue
				}
				checkObject(t, doc, fmt.Sprintf("%s.%s[%d]", at, k, i), items, m)
				if t.Failed() {
					return
				}
			}
		case string:
			if !strings.Contains(types, "string") {
				t.Errorf("%s.%s: a string, documented as %s", at, k, types)
			}
		case bool:
			if !strings.Contains(types, "boolean") {
				t.Errorf("%s.%s: a boolean, documented as %s", at, k, types)
			}
		case json.Number:
			if _, err := x.Int64(); err != nil || !strings.Contains(types, "integer") {
				t.Errorf("%s.%s: %v, documented as %s", at, k, x, types)
			}
		case nil:
			if !strings.Contains(types, "null") {
				t.Errorf("%s.%s: null, documented as %s", at, k, types)
			}
		default:
			t.Errorf("%s.%s: %T not expected", at, k, val)
		}
	}
}
