package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

// TestCLIMatchesHTTPAPI asks the same questions of the CLI (over gRPC) and
// of the collector's HTTP API, on the same data, and checks that the rows
// are the same, field by field. (server/web's browser test checks the web
// UI against the HTTP API the same way, and server/httpapi's tests the
// HTTP API against the gRPC QueryService.)
func TestCLIMatchesHTTPAPI(t *testing.T) {
	f := newFleet(t)
	api := func(path string, q url.Values) map[string]any {
		t.Helper()
		req, err := http.NewRequest("GET", f.col.WebURL+path+"?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+f.token)
		resp, err := f.col.WebClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s?%s: %s %s", path, q.Encode(), resp.Status, body)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		delete(m, "next_page_token")
		return m
	}
	cli := func(args ...string) map[string]any {
		t.Helper()
		r := f.sa(t, append(args, "--json", "--limit", "0")...)
		if r.code != 0 {
			t.Fatalf("sessionaudit %v: exit %d: %s", args, r.code, r.stderr)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
			t.Fatalf("sessionaudit %v: %v\n%s", args, err, r.stdout)
		}
		delete(m, "next_page_token")
		return m
	}
	// Absolute times: the CLI's clock is fixed at t0, the API's is not.
	since, until, moment := at(-30*day).Format("2006-01-02T15:04:05Z"), at(0).Format("2006-01-02T15:04:05Z"), at(-150*60e9).Format("2006-01-02T15:04:05Z")
	for _, tc := range []struct {
		question string
		cli      []string
		path     string
		q        url.Values
		lists    []string
	}{
		{"who was on fs01 at T", []string{"who", "--host", "fs01", "--at", moment},
			"/api/v1/who", url.Values{"host": {"fs01"}, "at": {moment}}, []string{"logon_sessions", "server_sessions"}},
		{"where has CONTOSO\\alice had sessions", []string{"timeline", "--user", `CONTOSO\alice`, "--since", since, "--until", until},
			"/api/v1/logon-sessions", url.Values{"account": {`CONTOSO\alice`}, "since": {since}, "until": {until}}, []string{"logon_sessions"}},
		{"a host's timeline", []string{"timeline", "--host", "fs01", "--since", since, "--until", until},
			"/api/v1/logon-sessions", url.Values{"host": {"fs01"}, "since": {since}, "until": {until}}, []string{"logon_sessions"}},
		{"SMB sessions from WS01", []string{"smb", "--from", "WS01", "--since", since, "--until", until},
			"/api/v1/server-sessions", url.Values{"from": {"WS01"}, "since": {since}, "until": {until}}, []string{"server_sessions"}},
		{"SMB sessions to fs01", []string{"smb", "--to", "fs01", "--since", since, "--until", until},
			"/api/v1/server-sessions", url.Values{"to": {"fs01"}, "since": {since}, "until": {until}}, []string{"server_sessions"}},
		{"RDP sessions open now", []string{"sessions", "--type", "rdp", "--open"},
			"/api/v1/open-sessions", url.Values{"type": {"rdp"}}, []string{"logon_sessions"}},
		{"interactive or RDP sessions over a range", []string{"sessions", "--type", "interactive,rdp", "--since", since, "--until", until},
			"/api/v1/logon-sessions", url.Values{"type": {"interactive", "rdp"}, "since": {since}, "until": {until}}, []string{"logon_sessions"}},
		{"hosts", []string{"hosts"}, "/api/v1/hosts", url.Values{}, []string{"hosts"}},
	} {
		got, want := cli(tc.cli...), api(tc.path, tc.q)
		rows := 0
		for _, list := range tc.lists {
			items, ok := want[list].([]any)
			if !ok {
				t.Fatalf("%s: the API's answer has no %s list: %v", tc.question, list, want)
			}
			rows += len(items)
		}
		if rows == 0 {
			t.Errorf("%s: no rows: the comparison would prove nothing", tc.question)
		}
		if !reflect.DeepEqual(got, want) {
			g, _ := json.MarshalIndent(got, "", " ")
			w, _ := json.MarshalIndent(want, "", " ")
			t.Errorf("%s: the CLI and the HTTP API differ\nCLI: %s\nAPI: %s", tc.question, g, w)
		}
	}
}
