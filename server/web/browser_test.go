package web_test

// The web UI in a real browser: Debian's chromium, headless, driven over
// the DevTools protocol (chromedp), against a real collector on loopback
// (servertest) over a real PostgreSQL (storetest) holding a simulated day
// of five hosts (agent/fleet, with its ground truth) and one host whose
// names are hostile. What the browser shows is compared with what the HTTP
// API answers for the same question, and with the ground truth.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sessionaudit/sessionaudit/agent/fleet"
	"github.com/sessionaudit/sessionaudit/agent/simulate"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/rows"
	"github.com/sessionaudit/sessionaudit/server/servertest"
	"github.com/sessionaudit/sessionaudit/server/web"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// Hostile names, stored as an agent could report them.
const (
	hostileHost     = `<img src=x onerror=alert(1)>`
	hostileDomain   = `=HYPERLINK("http://evil.example/","x")`
	hostileAccount  = hostileDomain + `\mallory`
	hostileAccount2 = `<script>alert(3)</script>`
	hostileComputer = `<svg onload=alert(2)>`
	hostileUser     = `@SUM(1+1)`
	hostilePackage  = `<b><img src=y onerror=alert(4)></b>`
	hostileGUID     = "00000000-0000-4000-8000-00000000e411"
)

// chromiumPath finds the browser: $SESSIONAUDIT_CHROMIUM, else chromium on
// the PATH. Without one the test is skipped, or fails under CI=true.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SESSIONAUDIT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on the PATH (apt-get install chromium, or set SESSIONAUDIT_CHROMIUM)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// screenshotDir is where the screenshots go: $SESSIONAUDIT_SCREENSHOTS, else
// sessionaudit-screenshots in the system's temporary directory. It outlives
// the test, on purpose.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SESSIONAUDIT_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "sessionaudit-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("screenshot directory: %v", err)
	}
	return dir
}

// history is the collector, its API and the ground truth the browser is
// checked against.
type history struct {
	base   string       // the UI's URL
	client *http.Client // trusts the collector's certificate
	spki   string       // the certificate's SPKI hash, for chromium
	token  string
	truths []*fleet.HostTruth
	now    time.Time
	// grpcAddr and caFile let the analysts' CLI ask the same collector.
	grpcAddr, caFile string
}

// newHistory stores a simulated day of five hosts (through a real collector)
// and a hostile host (through the store), and serves the API and the UI on
// loopback.
func newHistory(t *testing.T) *history {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, storetest.NewDatabase(t, store.Migrate))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	now := time.Now()
	ca, err := pki.NewCA("web test CA", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := pki.NewTrust([]*x509.Certificate{ca.Certificate()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := st.CreateEnrollmentSecret(ctx, "web test", 5, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	end := now.UTC().Truncate(time.Minute).Add(-time.Minute)
	start := end.Add(-24 * time.Hour)
	if err := st.EnsurePartitionsBetween(ctx, start.AddDate(0, -1, 0), end.AddDate(0, 3, 0)); err != nil {
		t.Fatal(err)
	}
	// The collector serves the API and this UI on a second loopback
	// listener, over HTTPS with its certificate from the test CA.
	col := servertest.Start(t, st, ca, trust, "127.0.0.1:0", servertest.Options{Web: true, UI: web.Handler()})

	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	f, err := fleet.New(fleet.Config{
		Address: col.Addr, ServerName: "localhost", CAPool: pool, EnrollmentSecret: secret, StateDir: t.TempDir(),
		Profiles: []simulate.Profile{simulate.FileServer, simulate.DomainController, simulate.Server,
			simulate.Workstation, simulate.Workstation},
		Seed: 11, Start: start, MaxReports: 200, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Enroll(ctx); err != nil {
		t.Fatal(err)
	}
	f.Start(ctx)
	defer f.Stop()
	if err := f.Advance(ctx, end); err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := f.Delivered(wait); err != nil {
		t.Fatal(err)
	}

	// The hostile host: a snapshot with two sessions, then a delta ending
	// one of them (an uncertain end).
	rdp := uint32(10)
	active := uint32(600)
	hostStart := now.Add(-2 * time.Hour).UTC()
	reports := []store.Report{
		{Sequence: 1, Kind: store.KindSnapshot, TakenAt: now.Add(-40 * time.Minute),
			Host: &store.Host{MachineGUID: hostileGUID, Hostname: hostileHost, Domain: "EVIL", LastBootTime: hostStart.Add(-time.Hour)},
			LogonSessions: []store.LogonSession{
				{LogonID: "0x1e411", LogonType: &rdp, AuthenticationPackage: "=2+5", StartTime: hostStart,
					Account: &store.Account{Domain: hostileDomain, Name: "mallory"}},
				{LogonID: "0x2e411", LogonType: &rdp, AuthenticationPackage: hostilePackage, StartTime: hostStart.Add(10 * time.Minute),
					Account: &store.Account{Domain: "EVIL", Name: hostileAccount2}},
			},
			ServerSessions: []store.ServerSession{{ComputerName: hostileComputer, UserName: hostileUser, ClientType: hostilePackage, ActiveTime: &active}},
		},
		{Sequence: 2, Kind: store.KindDelta, BaseSequence: 1, TakenAt: now.Add(-20 * time.Minute), EndedLogonIDs: []string{"0x2e411"}},
	}
	res, err := st.Ingest(ctx, "web-test-hostile", hostileGUID, reports)
	if err != nil || len(res.Rejected) > 0 {
		t.Fatalf("ingest the hostile host: %v, rejected %v", err, res.Rejected)
	}

	_, token, err := st.CreateAPIToken(ctx, "web analyst", store.RoleReader, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, identity.EncodeCertificatesPEM(ca.Certificate().Raw), 0o644); err != nil {
		t.Fatal(err)
	}
	return &history{base: col.WebURL, client: col.WebClient, spki: serverSPKI(t, col.WebURL), token: token, truths: f.Truths(), now: now,
		grpcAddr: col.Addr, caFile: caFile}
}

// serverSPKI returns the base64 SHA-256 of the public key of the
// certificate the collector's HTTPS listener presents.
func serverSPKI(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true}) // only to read the certificate
	if err != nil {
		t.Fatalf("TLS to %s: %v", u.Host, err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// apiGet asks the HTTP API what the UI asks, and decodes the JSON answer.
func (h *history) apiGet(t *testing.T, path string, params url.Values, out any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, h.base+path+"?"+params.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s?%s: %s: %s", path, params.Encode(), resp.Status, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// cli runs the analysts' CLI (sessionaudit, built once per test run) with
// --json against the same collector, over gRPC, and decodes its answer,
// which has the HTTP API's shape.
func (h *history) cli(t *testing.T, args ...string) logonList {
	t.Helper()
	cliOnce.Do(func() {
		cliBin = filepath.Join(os.TempDir(), fmt.Sprintf("sessionaudit-webtest-%d", os.Getpid()))
		out, err := exec.Command("go", "build", "-o", cliBin, "github.com/sessionaudit/sessionaudit/server/cmd/sessionaudit").CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("go build the CLI: %v\n%s", err, out)
		}
		t.Cleanup(func() { os.Remove(cliBin) })
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	cmd := exec.Command(cliBin, append(args, "--json", "--limit", "0")...)
	cmd.Env = append(os.Environ(), "SESSIONAUDIT_COLLECTOR="+h.grpcAddr, "SESSIONAUDIT_CA_CERT="+h.caFile,
		"SESSIONAUDIT_TOKEN="+h.token, "XDG_CONFIG_HOME="+t.TempDir(), "SESSIONAUDIT_CONFIG=")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sessionaudit %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var l logonList
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatalf("sessionaudit %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return l
}

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// sameRows reports, as a test error, where the CLI's answer differs from
// the HTTP API's for the same question.
func sameRows(t *testing.T, question string, cli, api logonList) {
	t.Helper()
	if !reflect.DeepEqual(cli.LogonSessions, api.LogonSessions) || !reflect.DeepEqual(cli.ServerSessions, api.ServerSessions) {
		t.Errorf("%s: the CLI and the HTTP API differ:\nCLI logon %+v\nAPI logon %+v\nCLI SMB %+v\nAPI SMB %+v",
			question, cli.LogonSessions, api.LogonSessions, cli.ServerSessions, api.ServerSessions)
	}
}

// logonList is an API answer with logon sessions.
type logonList struct {
	LogonSessions  []rows.Logon  `json:"logon_sessions"`
	ServerSessions []rows.Server `json:"server_sessions"`
	NextPageToken  string        `json:"next_page_token"`
}

// pickAccount chooses a person's account with an ended session, preferring
// one with an open session too, then the most hosts; it returns the
// account and the number of its logon sessions in the ground truth.
func pickAccount(t *testing.T, truths []*fleet.HostTruth) (string, int) {
	t.Helper()
	type acc struct {
		hosts        map[string]bool
		n            int
		open, closed bool
	}
	by := map[string]*acc{}
	for _, h := range truths {
		for _, iv := range h.Intervals {
			// People, not the machine, its services or the system.
			domain, name, _ := strings.Cut(iv.Account, `\`)
			if iv.Kind != fleet.Logon || name == "" || strings.HasSuffix(name, "$") || strings.Contains(domain, " ") ||
				strings.EqualFold(domain, "NT AUTHORITY") {
				continue
			}
			a := by[iv.Account]
			if a == nil {
				a = &acc{hosts: map[string]bool{}}
				by[iv.Account] = a
			}
			a.hosts[h.Hostname] = true
			a.n++
			a.open = a.open || iv.Open()
			a.closed = a.closed || !iv.Open()
		}
	}
	best, score := "", 0
	for name, a := range by {
		if !a.closed || a.n > 400 {
			continue
		}
		s := len(a.hosts)*1000 + a.n
		if a.open { // an open session too, when the simulated hour has one
			s += 100000
		}
		if s > score || (s == score && name < best) {
			best, score = name, s
		}
	}
	if best == "" {
		t.Fatal("the simulated day has no person's account with an ended session")
	}
	return best, by[best].n
}

// view is what the browser shows of a view.
type view struct {
	Error     string       `json:"error"`
	Count     string       `json:"count"`
	Bars      int          `json:"bars"`
	Open      int          `json:"open"`
	Uncertain int          `json:"uncertain"`
	Lanes     []string     `json:"lanes"`
	Tables    [][][]string `json:"tables"`
	Times     []struct {
		DateTime string `json:"datetime"`
		Text     string `json:"text"`
	} `json:"times"`
	// Hostile counts elements that only injected markup would make.
	Injected int  `json:"injected"`
	Pwned    bool `json:"pwned"`
}

const readView = `(() => {
  const q = (s) => document.querySelectorAll(s);
  const e = document.getElementById('error');
  return {
    error: e.hidden ? '' : e.textContent,
    count: (document.querySelector('#view .pager .count') || {}).textContent || '',
    bars: q('#view svg.timeline .bar').length,
    open: q('#view svg.timeline .open-marker').length,
    uncertain: q('#view svg.timeline rect.uncertain').length,
    lanes: [...q('#view svg.timeline .lane-label')].map((x) => x.querySelector('title').textContent),
    tables: [...q('#view table')].map((t) => [...t.tBodies[0].rows].map((r) => [...r.cells].map((c) => c.textContent))),
    times: [...q('#view table time')].slice(0, 5).map((x) => ({ datetime: x.getAttribute('datetime'), text: x.textContent })),
    injected: q('img, script:not([src]), iframe, object, embed, #view svg:not(.timeline)').length +
      [...q('*')].filter((x) => [...x.attributes].some((a) => a.name.startsWith('on'))).length,
    pwned: !!window.__pwned,
  };
})()`

// loaded is true once the current view has all its rows, or shows an error.
const loaded = `(() => {
  const e = document.getElementById('error');
  if (!e.hidden && e.textContent) return 'error';
  const c = document.querySelector('#view .pager .count');
  const more = document.querySelector('#view .pager .more');
  if (more && !more.hidden && !more.disabled) { more.click(); return false; }
  return c && /\d+ rows?/.test(c.textContent) && !/more/.test(c.textContent) ? 'ok' : false;
})()`

// browserSession is one tab, with the checks every step makes.
type browserSession struct {
	t        *testing.T
	ctx      context.Context
	base     string
	shots    string
	mu       sync.Mutex
	problems []string // dialogs, exceptions, CSP violations
	console  []string // every console message, shown when the test fails
}

func (b *browserSession) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	b.checkProblems()
}

func (b *browserSession) checkProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Error(p)
	}
	b.problems = nil
}

// show opens a view by its URL, as a shared link would, and waits until
// its rows are loaded.
func (b *browserSession) show(route string) view {
	b.t.Helper()
	b.do("open "+route,
		chromedp.Evaluate[chromedp.Void](`document.getElementById('view').replaceChildren(); location.hash = `+jsString(route)+`; undefined`),
		chromedp.Poll[chromedp.Void](loaded, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
	return b.read(route)
}

func (b *browserSession) read(what string) view {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[view](readView))
	if err != nil {
		b.t.Fatalf("read %s: %v", what, err)
	}
	if v.Error != "" {
		b.t.Fatalf("%s: the UI shows the error %q", what, v.Error)
	}
	if v.Injected != 0 || v.Pwned {
		b.t.Errorf("%s: %d elements or handlers that only injected markup makes", what, v.Injected)
	}
	b.checkProblems()
	return v
}

// screenshot saves the window (or the whole page) as PNG.
func (b *browserSession) screenshot(name string, full bool) {
	b.t.Helper()
	shot := chromedp.CaptureScreenshot()
	if full {
		shot = chromedp.FullScreenshot(100)
	}
	png, err := chromedp.Run(b.ctx, shot)
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.shots, "web-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func hashRoute(view string, params url.Values) string {
	return "#/" + view + "?" + params.Encode()
}

// column returns the cells of a table's column.
func column(table [][]string, i int) []string {
	var out []string
	for _, r := range table {
		out = append(out, r[i])
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// TestBrowser signs in, searches an account, opens its timeline, who was on
// a host, open sessions, SMB sessions, a hostile host and its CSV, toggles
// local time and signs out, comparing each view with the API and the
// ground truth.
func TestBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	began := time.Now()
	h := newHistory(t)
	t.Logf("history stored in %v", time.Since(began).Round(time.Millisecond))

	alloc, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000),
		// Trust the collector's test certificate, and only it.
		chromedp.Flag("ignore-certificate-errors-spki-list", h.spki))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	b := &browserSession{t: t, ctx: ctx, base: h.base, shots: screenshotDir(t)}
	t.Cleanup(func() {
		if t.Failed() {
			b.mu.Lock()
			defer b.mu.Unlock()
			t.Logf("browser console:\n%s", strings.Join(b.console, "\n"))
		}
	})

	// Start the browser; watch for dialogs (an injected alert), exceptions
	// and CSP violations from here on.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.problems = append(b.problems, fmt.Sprintf("a %s dialog opened: %q (injected script ran)", ev.Type, ev.Message))
			b.mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m.String())
			b.mu.Unlock()
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") || strings.Contains(m.Text, "Refused to") {
				b.mu.Lock()
				b.problems = append(b.problems, "browser console: "+m.String())
				b.mu.Unlock()
			}
		}
	}()
	// Local time is Asia/Kolkata (UTC+05:30, no daylight saving), so that
	// the toggle has something to show.
	ist := time.FixedZone("IST", 5*3600+1800)
	b.do("set the time zone",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Kolkata"})
			return err
		}),
		chromedp.Navigate(h.base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#signin-form")))

	// A wrong token: an error, nothing kept.
	b.do("sign in with a wrong token",
		chromedp.SendKeys(chromedp.CSS("#token"), "sat_this-is-not-a-token"),
		chromedp.Click(chromedp.CSS("#signin-form button")),
		chromedp.Poll[chromedp.Void](`!document.getElementById('error').hidden`, chromedp.WithPollingTimeout(10*time.Second)))
	msg, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS("#error")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "refused") {
		t.Errorf("a wrong token shows %q, want a message saying the collector refused it", msg)
	}
	b.screenshot("signin-refused", false)
	if kept, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem('sessionaudit.token') || ''`)); kept != "" {
		t.Errorf("a refused token was kept in sessionStorage")
	}

	// The right token: signed in; the token is in sessionStorage only.
	b.do("sign in",
		chromedp.Evaluate[chromedp.Void](`document.getElementById('token').value = ''; undefined`),
		chromedp.SendKeys(chromedp.CSS("#token"), h.token),
		chromedp.Click(chromedp.CSS("#signin-form button")),
		chromedp.WaitVisible(chromedp.CSS("#nav")),
		chromedp.WaitVisible(chromedp.CSS("#q")))
	where, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[sessionStorage.getItem('sessionaudit.token'), location.href, document.cookie, localStorage.getItem('sessionaudit.token') || '']`))
	if err != nil {
		t.Fatal(err)
	}
	if where[0] != h.token || strings.Contains(where[1], h.token) || where[2] != "" || where[3] != "" {
		t.Errorf("after sign-in: sessionStorage %q, URL %q, cookie %q, localStorage %q: want the token in sessionStorage only",
			where[0], where[1], where[2], where[3])
	}

	// Search an account: the search box opens its timeline.
	account, truthCount := pickAccount(t, h.truths)
	t.Logf("account %s: %d logon sessions in the ground truth", account, truthCount)
	b.do("search "+account,
		chromedp.SendKeys(chromedp.CSS("#q"), account),
		chromedp.Click(chromedp.CSS("form.search button")),
		chromedp.Poll[chromedp.Void](loaded, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	wantRoute := hashRoute("timeline", url.Values{"account": {account}, "since": {"30d"}})
	if !strings.HasSuffix(loc, wantRoute) {
		t.Errorf("the search for %s went to %s, want %s", account, loc, wantRoute)
	}
	tl := b.read("account timeline")
	var api logonList
	h.apiGet(t, "/api/v1/logon-sessions", url.Values{"account": {account}, "since": {"30d"}, "page_size": {"1000"}}, &api)
	apiOpen, apiUncertain, hosts := 0, 0, map[string]bool{}
	for _, r := range api.LogonSessions {
		hosts[r.Host] = true
		if r.Open {
			apiOpen++
		} else if r.EndBefore > r.LastSeen {
			apiUncertain++
		}
	}
	if len(api.LogonSessions) != truthCount {
		t.Errorf("the API has %d sessions of %s, the ground truth %d", len(api.LogonSessions), account, truthCount)
	}
	if tl.Bars != len(api.LogonSessions) || len(tl.Tables) != 1 || len(tl.Tables[0]) != len(api.LogonSessions) {
		t.Errorf("timeline of %s: %d bars, %d tables, want %d bars and rows as the API", account, tl.Bars, len(tl.Tables), len(api.LogonSessions))
	}
	if tl.Open != apiOpen {
		t.Errorf("timeline of %s: %d open markers, the API has %d open sessions", account, tl.Open, apiOpen)
	}
	if tl.Uncertain != apiUncertain || tl.Uncertain == 0 {
		t.Errorf("timeline of %s: %d uncertain ends drawn, the API has %d ended sessions (want at least one)", account, tl.Uncertain, apiUncertain)
	}
	if got, want := sorted(tl.Lanes), sorted(mapKeys(hosts)); !slices.Equal(got, want) {
		t.Errorf("timeline of %s: lanes %v, want one per host %v", account, got, want)
	}
	if len(tl.Tables) == 1 && len(tl.Tables[0]) > 0 && tl.Tables[0][0][1] != account {
		t.Errorf("timeline table: account cell %q, want %q", tl.Tables[0][0][1], account)
	}
	b.screenshot("account-timeline", false)
	// The CLI, asked the same question of the same collector, gives the
	// same rows: CLI, API and UI agree on the same data.
	sameRows(t, "timeline of "+account, h.cli(t, "timeline", "--user", account, "--since", "30d"), api)

	// A workstation's timeline: one lane per account, bars as the API.
	ws := h.truths[3]
	hostView := b.show(hashRoute("host", url.Values{"host": {ws.Hostname}, "since": {"2d"}}))
	var hostAPI logonList
	h.apiGet(t, "/api/v1/logon-sessions", url.Values{"host": {ws.Hostname}, "since": {"2d"}, "page_size": {"1000"}}, &hostAPI)
	lanesWant := map[string]bool{}
	for _, r := range hostAPI.LogonSessions {
		lanesWant[r.Account] = true
	}
	if len(hostAPI.LogonSessions) == 0 || hostView.Bars != len(hostAPI.LogonSessions) || rowsOf(hostView) != len(hostAPI.LogonSessions) ||
		!slices.Equal(sorted(hostView.Lanes), sorted(mapKeys(lanesWant))) {
		t.Errorf("timeline of %s: %d bars, %d rows, lanes %q; the API has %d sessions of %q", ws.Hostname, hostView.Bars, rowsOf(hostView),
			hostView.Lanes, len(hostAPI.LogonSessions), mapKeys(lanesWant))
	}
	b.screenshot("host-timeline", false)

	// Who was on the file server at its busiest moment.
	fs := h.truths[0]
	at := fs.Busiest.UTC().Format(time.RFC3339)
	who := b.show(hashRoute("who", url.Values{"host": {fs.Hostname}, "at": {at}}))
	var whoAPI logonList
	h.apiGet(t, "/api/v1/who", url.Values{"host": {fs.Hostname}, "at": {at}, "page_size": {"1000"}}, &whoAPI)
	if len(who.Tables) != 2 {
		t.Fatalf("who was on %s: %d tables, want 2 (logon, SMB)", fs.Hostname, len(who.Tables))
	}
	var wantLogon, wantSMB []string
	for _, r := range whoAPI.LogonSessions {
		wantLogon = append(wantLogon, r.Account+" "+r.LogonID)
	}
	for _, r := range whoAPI.ServerSessions {
		wantSMB = append(wantSMB, r.FromComputer+" "+r.UserName)
	}
	var gotLogon, gotSMB []string
	for _, r := range who.Tables[0] {
		gotLogon = append(gotLogon, r[1]+" "+r[7])
	}
	for _, r := range who.Tables[1] {
		gotSMB = append(gotSMB, r[1]+" "+r[2])
	}
	if !slices.Equal(sorted(gotLogon), sorted(wantLogon)) || !slices.Equal(sorted(gotSMB), sorted(wantSMB)) {
		t.Errorf("who was on %s at %s:\nUI  logon %v\nAPI logon %v\nUI  SMB %v\nAPI SMB %v", fs.Hostname, at, gotLogon, wantLogon, gotSMB, wantSMB)
	}
	if len(wantLogon)+len(wantSMB) != fs.BusiestCount || fs.BusiestCount == 0 {
		t.Errorf("who was on %s at its busiest moment: the API has %d sessions, the ground truth %d", fs.Hostname, len(wantLogon)+len(wantSMB), fs.BusiestCount)
	}
	b.screenshot("who", true)
	sameRows(t, "who was on "+fs.Hostname, h.cli(t, "who", "--host", fs.Hostname, "--at", at), whoAPI)

	// Sessions open now.
	open := b.show("#/open")
	var openAPI logonList
	h.apiGet(t, "/api/v1/open-sessions", url.Values{"page_size": {"1000"}}, &openAPI)
	if len(openAPI.LogonSessions) == 0 || len(open.Tables) != 1 || len(open.Tables[0]) != len(openAPI.LogonSessions) ||
		open.Open != len(openAPI.LogonSessions) || open.Bars != len(openAPI.LogonSessions) {
		t.Errorf("open sessions: %d rows in %d tables, %d bars, %d open markers; the API has %d", rowsOf(open), len(open.Tables), open.Bars, open.Open, len(openAPI.LogonSessions))
	}

	sameRows(t, "sessions open now", h.cli(t, "sessions", "--open"), openAPI)

	// SMB sessions from the computer that opened most of them.
	from := busiestSource(h.truths)
	smb := b.show(hashRoute("smb", url.Values{"from": {from}, "since": {"30d"}}))
	var smbAPI logonList
	h.apiGet(t, "/api/v1/server-sessions", url.Values{"from": {from}, "since": {"30d"}, "page_size": {"1000"}}, &smbAPI)
	if len(smbAPI.ServerSessions) == 0 || smb.Bars != len(smbAPI.ServerSessions) || rowsOf(smb) != len(smbAPI.ServerSessions) {
		t.Errorf("SMB sessions from %s: %d bars, %d rows; the API has %d (want at least one)", from, smb.Bars, rowsOf(smb), len(smbAPI.ServerSessions))
	}
	b.screenshot("smb", false)
	sameRows(t, "SMB sessions from "+from, h.cli(t, "smb", "--from", from, "--since", "30d"), smbAPI)

	// The hostile host: every name shown as text, nothing run; the CSV
	// neutralized.
	hv := b.show(hashRoute("host", url.Values{"host": {hostileHost}, "since": {"1d"}}))
	if len(hv.Tables) != 1 || len(hv.Tables[0]) != 2 {
		t.Fatalf("hostile host: tables %v, want its 2 sessions", hv.Tables)
	}
	if got, want := sorted(column(hv.Tables[0], 1)), sorted([]string{hostileAccount, `EVIL\` + hostileAccount2}); !slices.Equal(got, want) {
		t.Errorf("hostile host: accounts shown %q, want the stored text %q", got, want)
	}
	if hv.Tables[0][0][0] != hostileHost || !slices.Contains(hv.Lanes, `EVIL\`+hostileAccount2) {
		t.Errorf("hostile host: host cell %q, lanes %q", hv.Tables[0][0][0], hv.Lanes)
	}
	if hv.Open != 1 || hv.Uncertain != 1 {
		t.Errorf("hostile host: %d open, %d uncertain ends drawn, want 1 and 1", hv.Open, hv.Uncertain)
	}
	b.screenshot("hostile-host", false)
	csvText := b.download("Export CSV")
	recs, err := csv.NewReader(strings.NewReader(csvText)).ReadAll()
	if err != nil || len(recs) != 3 {
		t.Fatalf("hostile host CSV: %d records, %v:\n%s", len(recs), err, csvText)
	}
	col := slices.Index(recs[0], "account")
	var accounts []string
	for _, r := range recs[1:] {
		accounts = append(accounts, r[col])
		for _, cell := range r {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Errorf("hostile host CSV: the cell %q would be taken for a formula", cell)
			}
		}
	}
	if want := `'` + hostileAccount; !slices.Contains(accounts, want) {
		t.Errorf("hostile host CSV: accounts %q, want %q (the stored text behind a quote)", accounts, want)
	}
	hs := b.show(hashRoute("smb", url.Values{"from": {hostileComputer}, "since": {"1d"}}))
	if rowsOf(hs) != 1 || hs.Tables[0][0][1] != hostileComputer || hs.Tables[0][0][2] != hostileUser {
		t.Errorf("SMB from the hostile computer: %q", hs.Tables)
	}
	hsCSV := b.download("Export CSV")
	if !strings.Contains(hsCSV, `'`+hostileUser) || strings.Contains(hsCSV, ","+hostileUser) {
		t.Errorf("SMB CSV does not neutralize %s:\n%s", hostileUser, hsCSV)
	}
	search := b.showSearch(hostileHost)
	if !strings.Contains(search, "Host "+hostileHost) {
		t.Errorf("search for the hostile host: %q, want a link to its timeline as text", search)
	}
	// A host name in the search box: its timeline and the SMB sessions to
	// it (the file server has both).
	if search := b.showSearch(fs.Hostname); !strings.Contains(search, "Host "+fs.Hostname+": logon sessions timeline") ||
		!strings.Contains(search, "Host "+fs.Hostname+": SMB sessions to it") {
		t.Errorf("search for %s: %q, want its timeline and the SMB sessions to it", fs.Hostname, search)
	}

	// Hosts: the five simulated and the hostile one, as the API lists them.
	hostsView := b.show("#/hosts")
	var hostsAPI struct {
		Hosts []rows.Host `json:"hosts"`
	}
	h.apiGet(t, "/api/v1/hosts", url.Values{"page_size": {"1000"}}, &hostsAPI)
	var wantHosts []string
	for _, x := range hostsAPI.Hosts {
		wantHosts = append(wantHosts, x.Host)
	}
	if len(hostsView.Tables) != 1 || !slices.Equal(sorted(column(hostsView.Tables[0], 0)), sorted(wantHosts)) || len(wantHosts) != len(h.truths)+1 {
		t.Errorf("hosts: the UI lists %q, the API %q, want the %d simulated hosts and the hostile one", hostsView.Tables, wantHosts, len(h.truths))
	}

	// Local time: the toggle shows the browser's zone, and is remembered
	// across a reload (the token too: same tab).
	tl = b.show(wantRoute)
	b.do("toggle local time", chromedp.Click(chromedp.CSS("#tz")))
	checkTimes := func(what string, zone *time.Location, layout string) {
		v := b.read(what)
		if len(v.Times) == 0 {
			t.Fatalf("%s: no times in the table", what)
		}
		for _, x := range v.Times {
			ts, err := time.Parse(time.RFC3339Nano, x.DateTime)
			if err != nil {
				t.Fatalf("%s: datetime %q: %v", what, x.DateTime, err)
			}
			if want := ts.In(zone).Format(layout); x.Text != want {
				t.Errorf("%s: %s shown as %q, want %q", what, x.DateTime, x.Text, want)
			}
		}
	}
	checkTimes("local time", ist, "2006-01-02 15:04:05 -07:00")
	b.screenshot("account-timeline-local", false)
	b.do("reload", chromedp.Reload(),
		chromedp.Poll[chromedp.Void](loaded, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
	checkTimes("local time after a reload", ist, "2006-01-02 15:04:05 -07:00")
	b.do("toggle UTC", chromedp.Click(chromedp.CSS("#tz")))
	checkTimes("UTC", time.UTC, "2006-01-02 15:04:05Z")

	// Sign out: the token is gone, the sign-in form is back.
	b.do("sign out", chromedp.Click(chromedp.CSS("#signout")), chromedp.WaitVisible(chromedp.CSS("#signin-form")))
	if kept, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem('sessionaudit.token') || ''`)); kept != "" {
		t.Errorf("signed out, but the token is still in sessionStorage")
	}
	t.Logf("browser test took %v", time.Since(began).Round(time.Millisecond))
}

// showSearch runs a search for a name without a backslash and returns the
// text of the matches.
func (b *browserSession) showSearch(q string) string {
	b.t.Helper()
	b.do("search "+q,
		chromedp.Evaluate[chromedp.Void](`document.getElementById('view').replaceChildren(); location.hash = `+jsString(hashRoute("search", url.Values{"q": {q}, "since": {"1d"}}))+`; undefined`),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll('#view .matches li').length > 0 || !document.getElementById('error').hidden`,
			chromedp.WithPollingTimeout(10*time.Second)))
	b.read("search " + q)
	text, err := chromedp.Run(b.ctx, chromedp.TextContent(chromedp.CSS("#view .matches")))
	if err != nil {
		b.t.Fatal(err)
	}
	return text
}

// download clicks the view's CSV button and returns the file the browser
// saved.
func (b *browserSession) download(button string) string {
	b.t.Helper()
	dir := b.t.TempDir()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	progress := chromedp.Events(ctx, browser.DownloadProgress)
	enabled := true
	b.do("download "+button,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
				Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, EventsEnabled: &enabled,
			})
			return err
		}),
		chromedp.Click(chromedp.CSS("#view button.csv")))
	for ev, err := range progress {
		if err != nil {
			b.t.Fatalf("download %s: %v", button, err)
		}
		switch ev.State {
		case browser.DownloadProgressStateCompleted:
			data, err := os.ReadFile(filepath.Join(dir, ev.GUID))
			if err != nil {
				b.t.Fatal(err)
			}
			return string(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
		case browser.DownloadProgressStateCanceled:
			b.t.Fatalf("download %s: canceled", button)
		}
	}
	b.t.Fatalf("download %s: no completed download", button)
	return ""
}

func rowsOf(v view) int {
	n := 0
	for _, t := range v.Tables {
		n += len(t)
	}
	return n
}

func mapKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// busiestSource is the computer that opened the most SMB sessions.
func busiestSource(truths []*fleet.HostTruth) string {
	n := map[string]int{}
	for _, h := range truths {
		for _, iv := range h.Intervals {
			if iv.Kind == fleet.Server {
				computer, _, _ := strings.Cut(iv.Key, `\`)
				n[computer]++
			}
		}
	}
	best := ""
	for c, k := range n {
		if k > n[best] || (k == n[best] && c < best) {
			best = c
		}
	}
	return best
}
