package main

import (
	"context"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
	"github.com/sessionaudit/sessionaudit/server/httpapi"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/servertest"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
)

// A host name two machines report (one took the other's name): the CLI
// and the HTTP API answer with both hosts' sessions and say so in one
// warning line; by machine GUID, or with a name one host holds, the output
// is as before, without a warning.
func TestAmbiguousHostWarning(t *testing.T) {
	ctx := context.Background()
	const guidDC, guidFake = "0f5e0000-0000-4000-8000-0000000000dc", "0f5e0000-0000-4000-8000-0000000000ee"
	st, err := store.Open(ctx, storetest.NewDatabase(t, store.Migrate), store.WithClock(func() time.Time { return t0 }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.EnsurePartitionsBetween(ctx, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	for _, h := range []struct{ guid, name, user string }{{guidDC, "DC37", "alice"}, {guidFake, "dc37", "mallory"}, {guidFS01, "fs01", "bob"}} {
		_, err := st.Ingest(ctx, "agent-"+h.guid[len(h.guid)-2:], h.guid, []store.Report{{Sequence: 1, Kind: store.KindSnapshot, TakenAt: at(-time.Hour),
			Host: &store.Host{MachineGUID: h.guid, Hostname: h.name, Domain: "contoso.local", LastBootTime: at(-day)},
			LogonSessions: []store.LogonSession{{LogonID: "1", LogonType: u32(10), StartTime: at(-2 * time.Hour),
				Account: &store.Account{Domain: "CONTOSO", Name: h.user}}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	_, token, err := st.CreateAPIToken(ctx, "analyst", store.RoleReader, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA("test CA", 365*day, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	analystCA, err := pki.NewCA("test analyst CA", 365*day, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	trust, err := pki.NewTrust([]*x509.Certificate{ca.Certificate()}, []*x509.Certificate{analystCA.Certificate()})
	if err != nil {
		t.Fatal(err)
	}
	col := servertest.Start(t, st, ca, trust, "127.0.0.1:0", servertest.Options{Web: true})
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, identity.EncodeCertificatesPEM(ca.Certificate().Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &fleet{col: col, addr: col.Addr, token: token, dir: dir, env: map[string]string{
		"SESSIONAUDIT_COLLECTOR": col.Addr, "SESSIONAUDIT_TOKEN": token, "SESSIONAUDIT_CA_CERT": caFile, "HOME": dir}}

	warning := "warning: --host \"DC37\" names 2 hosts"
	for _, tc := range []struct {
		args []string
		warn string // "" for none
		rows int    // rows expected in --csv (with its header)
	}{
		{[]string{"who", "--host", "DC37", "--at", "-30m", "--csv"}, warning, 3},
		{[]string{"who", "--host", "DC37", "--at", "-30m"}, warning, -1},
		{[]string{"timeline", "--host", "DC37", "--since", "1d", "--json"}, warning, -1},
		{[]string{"sessions", "--open", "--host", "DC37", "--csv"}, warning, 3},
		{[]string{"smb", "--to", "dc37", "--since", "1d", "--csv"}, "warning: --to \"dc37\" names 2 hosts", 1},
		{[]string{"who", "--host", guidDC, "--at", "-30m", "--csv"}, "", 2},
		{[]string{"who", "--host", "fs01", "--at", "-30m", "--csv"}, "", 2},
	} {
		r := f.sa(t, tc.args...)
		if r.code != exitOK && r.code != exitEmpty {
			t.Fatalf("%q: exit %d: %s", tc.args, r.code, r.stderr)
		}
		switch {
		case tc.warn == "" && r.stderr != "":
			t.Errorf("%q: stderr %q, want nothing", tc.args, r.stderr)
		case tc.warn != "" && (strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.warn) ||
			!strings.Contains(r.stderr, guidDC) || !strings.Contains(r.stderr, guidFake)):
			t.Errorf("%q: stderr %q, want one line with %q and both machine GUIDs", tc.args, r.stderr, tc.warn)
		}
		if tc.rows >= 0 && strings.Count(r.stdout, "\n") != tc.rows {
			t.Errorf("%q: %d lines of CSV, want %d:\n%s", tc.args, strings.Count(r.stdout, "\n"), tc.rows, r.stdout)
		}
	}

	// The HTTP API: a Warning header, and the machine GUIDs in
	// Sessionaudit-Ambiguous-Hosts; neither without ambiguity.
	get := func(query string) http.Header {
		t.Helper()
		req, err := http.NewRequest("GET", col.WebURL+"/api/v1/who?"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := col.WebClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET who?%s: %s", query, resp.Status)
		}
		return resp.Header
	}
	at := at(-30 * time.Minute).Format(time.RFC3339)
	for _, format := range []string{"json", "csv"} {
		h := get("host=DC37&at=" + at + "&format=" + format)
		if got, want := h.Get(httpapi.AmbiguousHostsHeader), guidDC+", "+guidFake; got != want {
			t.Errorf("format %s: %s: %q, want %q", format, httpapi.AmbiguousHostsHeader, got, want)
		}
		if w := h.Get("Warning"); !strings.HasPrefix(w, `299 sessionaudit "host=DC37 names 2 hosts`) || !strings.Contains(w, guidFake) {
			t.Errorf("format %s: Warning %q", format, w)
		}
	}
	if h := get("host=fs01&at=" + at); h.Get("Warning") != "" || h.Get(httpapi.AmbiguousHostsHeader) != "" {
		t.Errorf("unambiguous host: Warning %q, %s %q", h.Get("Warning"), httpapi.AmbiguousHostsHeader, h.Get(httpapi.AmbiguousHostsHeader))
	}
}
