package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// offline runs a command line that must fail before it connects anywhere.
func offline(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	if env == nil {
		env = map[string]string{"HOME": t.TempDir()}
	}
	var out, errOut bytes.Buffer
	c := newCLI(&out, &errOut, mapEnv(env))
	c.now = func() time.Time { return t0 }
	code := c.main(context.Background(), args)
	return result{code, out.String(), errOut.String()}
}

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestUsageErrors(t *testing.T) {
	conn := map[string]string{"HOME": t.TempDir(), "SESSIONAUDIT_COLLECTOR": "127.0.0.1:1", "SESSIONAUDIT_TOKEN": "sat_x"}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string // stderr must contain it
	}{
		{[]string{"frobnicate"}, nil, `unknown command "frobnicate"`},
		{[]string{"help", "frobnicate"}, nil, `no command "frobnicate"`},
		{[]string{"who"}, conn, "--host is required"},
		{[]string{"who", "--host", "fs01", "--at", "yesterday"}, conn, `--at: time "yesterday"`},
		{[]string{"who", "--host", "fs01", "--kind", "both", "--csv"}, conn, `--kind "both"`},
		{[]string{"who", "--host", "fs01", "--json", "--csv"}, conn, "--json and --csv"},
		{[]string{"who", "--host", "fs01", "--limit", "-1"}, conn, "--limit -1"},
		{[]string{"who", "--host", "fs01", "extra"}, conn, `unexpected arguments ["extra"]`},
		{[]string{"who", "--hots", "fs01"}, conn, "flag provided but not defined: -hots"},
		{[]string{"timeline", "--since", "30d"}, conn, "give --user"},
		{[]string{"timeline", "--user", "alice"}, conn, `--user "alice": want DOMAIN\name`},
		{[]string{"timeline", "--user", `CONTOSO\`}, conn, `want DOMAIN\name`},
		{[]string{"timeline", "--host", "fs01", "--since", "2026-03-09", "--until", "2026-03-01"}, conn, "--since 2026-03-09T00:00:00Z is not before --until 2026-03-01T00:00:00Z"},
		{[]string{"timeline", "--host", "fs01", "--since", "-"}, conn, `--since: time "-"`},
		{[]string{"smb", "--since", "1.5d"}, conn, `--since: time "1.5d"`},
		{[]string{"smb", "--until", "tomorrow"}, conn, `--until: time "tomorrow"`},
		{[]string{"sessions"}, conn, "give --open"},
		{[]string{"sessions", "--open", "--since", "1d"}, conn, "takes no --since"},
		{[]string{"sessions", "--open", "--type", "rdp,telnet"}, conn, `logon type "telnet"`},
		{[]string{"sessions", "--open", "--user", "bob"}, conn, `--user "bob"`},
		{[]string{"hosts", "--stale", "soon"}, conn, `--stale: duration "soon"`},
		{[]string{"hosts", "--timeout", "0s"}, conn, "--timeout 0s"},
		{[]string{"export"}, conn, "--since is required"},
		{[]string{"export", "--since", "1d", "--kind", "all", "--csv"}, conn, "--kind all is for JSON lines"},
		{[]string{"export", "--since", "1d", "--kind", "hosts"}, conn, `--kind "hosts"`},
		{[]string{"hosts"}, map[string]string{"HOME": t.TempDir(), "SESSIONAUDIT_TOKEN": "sat_x"}, "no collector"},
		{[]string{"hosts"}, map[string]string{"HOME": t.TempDir(), "SESSIONAUDIT_TOKEN": "sat_x", "SESSIONAUDIT_COLLECTOR": "http://x/"}, `collector "http://x/"`},
		{[]string{"hosts"}, map[string]string{"HOME": t.TempDir(), "SESSIONAUDIT_TOKEN": "sat_x y", "SESSIONAUDIT_COLLECTOR": "c"}, "token contains spaces"},
		{[]string{"hosts", "--insecure-plaintext-dev"}, map[string]string{"HOME": t.TempDir(), "SESSIONAUDIT_TOKEN": "sat_x", "SESSIONAUDIT_COLLECTOR": "collector.contoso.com"}, "loopback address only"},
		{[]string{"hosts", "--ca-cert", "/nonexistent/ca.pem"}, conn, "--ca-cert: "},
		{[]string{"hosts"}, map[string]string{"HOME": t.TempDir(), "SESSIONAUDIT_COLLECTOR": "c", "SESSIONAUDIT_TOKEN": "t", "SESSIONAUDIT_TIMEOUT": "soon"}, "SESSIONAUDIT_TIMEOUT"},
		{[]string{"hosts", "--config", "/nonexistent/cli.conf"}, conn, "config file: "},
	} {
		r := offline(t, tc.env, tc.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d naming %q", tc.args, r.code, r.stderr, exitUsage, tc.want)
		}
		if r.stdout != "" {
			t.Errorf("%q: wrote %q to stdout on a usage error", tc.args, r.stdout)
		}
	}
}

func TestHelp(t *testing.T) {
	if r := offline(t, nil); r.code != exitUsage || !strings.Contains(r.stdout, "Commands:") {
		t.Errorf("no arguments: exit %d, %q", r.code, r.stdout)
	}
	if r := offline(t, nil, "help"); r.code != exitOK || !strings.Contains(r.stdout, "Exit status:") {
		t.Errorf("help: exit %d, %q", r.code, r.stdout)
	}
	c := newCLI(nil, nil, mapEnv(nil))
	for _, cmd := range c.commands() {
		for _, args := range [][]string{{cmd.name, "--help"}, {"help", cmd.name}, {cmd.name, "-h"}} {
			r := offline(t, nil, args...)
			if r.code != exitOK || !strings.HasPrefix(r.stdout, "Usage: sessionaudit "+cmd.name) {
				t.Errorf("%q: exit %d, %q", args, r.code, r.stdout)
				continue
			}
			cmd.VisitAll(func(f *flag.Flag) {
				if !strings.Contains(r.stdout, "--"+f.Name+" ") {
					t.Errorf("%q does not explain --%s", args, f.Name)
				}
			})
			if cmd.name != "version" && (!strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "4  authentication")) {
				t.Errorf("%q lacks examples or exit codes:\n%s", args, r.stdout)
			}
		}
	}
	if r := offline(t, nil, "version"); r.code != exitOK || !strings.HasPrefix(r.stdout, "sessionaudit ") {
		t.Errorf("version: exit %d, %q", r.code, r.stdout)
	}
}

func TestExitCodes(t *testing.T) {
	for err, want := range map[error]int{
		nil:                                   exitOK,
		usagef("bad"):                         exitUsage,
		errEmpty:                              exitEmpty,
		&queryError{exit: exitAuth}:           exitAuth,
		&queryError{exit: exitFailure}:        exitFailure,
		os.ErrNotExist:                        exitFailure,
		writeError{os.ErrPermission}:          exitFailure,
		&queryError{exit: exitUsage, msg: ""}: exitUsage,
	} {
		if got := exitCode(err); got != want {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, want)
		}
	}
}

// writeConfig writes a config file with mode perm and returns its path.
func writeConfig(t *testing.T, dir, text string, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, "sessionaudit", "cli.conf")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

// settingsOf parses a hosts command line with env and returns the settings
// it resolves to.
func settingsOf(t *testing.T, env map[string]string, args ...string) (collector, token, caCert string, err error) {
	t.Helper()
	c := newCLI(&bytes.Buffer{}, &bytes.Buffer{}, mapEnv(env))
	cmd := find(c.commands(), "hosts")
	if _, err := cmd.parse(args, c.env); err != nil {
		return "", "", "", err
	}
	return c.settings()
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	writeConfig(t, dir, "# analyst settings\ncollector = conf.example:8443\n\ntoken = sat_fromconfig\nca-cert = ca.pem\n", 0o600)
	env := map[string]string{"XDG_CONFIG_HOME": dir}
	confCA := filepath.Join(dir, "sessionaudit", "ca.pem")
	for _, tc := range []struct {
		name                     string
		env                      map[string]string
		args                     []string
		collector, token, caCert string
	}{
		{"config only", nil, nil, "conf.example:8443", "sat_fromconfig", confCA},
		{"env over config", map[string]string{"SESSIONAUDIT_TOKEN": "sat_fromenv", "SESSIONAUDIT_COLLECTOR": "env.example"}, nil,
			"env.example", "sat_fromenv", confCA},
		{"flag over env", map[string]string{"SESSIONAUDIT_TOKEN": "sat_fromenv", "SESSIONAUDIT_CA_CERT": "/env/ca.pem"},
			[]string{"--token", "sat_fromflag", "--collector", "flag.example:9"}, "flag.example:9", "sat_fromflag", "/env/ca.pem"},
		{"flag ca over config", nil, []string{"--ca-cert", "/flag/ca.pem"}, "conf.example:8443", "sat_fromconfig", "/flag/ca.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			for k, v := range tc.env {
				e[k] = v
			}
			col, tok, ca, err := settingsOf(t, e, tc.args...)
			if err != nil || col != tc.collector || tok != tc.token || ca != tc.caCert {
				t.Errorf("got %q %q %q, %v; want %q %q %q", col, tok, ca, err, tc.collector, tc.token, tc.caCert)
			}
		})
	}

	// --config and SESSIONAUDIT_CONFIG name another file.
	other := writeConfig(t, t.TempDir(), "collector = other.example\n", 0o644)
	if col, _, _, err := settingsOf(t, map[string]string{"XDG_CONFIG_HOME": dir, "SESSIONAUDIT_CONFIG": other}); err != nil || col != "other.example" {
		t.Errorf("SESSIONAUDIT_CONFIG: %q, %v", col, err)
	}
	if col, _, _, err := settingsOf(t, map[string]string{"XDG_CONFIG_HOME": dir}, "--config", other); err != nil || col != "other.example" {
		t.Errorf("--config: %q, %v", col, err)
	}
	// No config file at the default place is no error.
	if col, _, _, err := settingsOf(t, map[string]string{"HOME": t.TempDir()}); err != nil || col != "" {
		t.Errorf("no config file: %q, %v", col, err)
	}
}

func TestConfigErrors(t *testing.T) {
	for text, want := range map[string]string{
		"collector conf.example\n":       `line 1: want "key = value"`,
		"collector = a\ncollector = b\n": "line 2: collector is set twice",
		"# comment\nserver = x\n":        `line 2: unknown key "server"`,
		"= x\n":                          `line 1: want "key = value"`,
	} {
		path := writeConfig(t, t.TempDir(), text, 0o600)
		_, _, _, err := settingsOf(t, nil, "--config", path)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("config %q: %v; want a usage error naming %s and %q", text, err, path, want)
		}
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"fs01":             "fs01",
		`CONTOSO\alice`:    `CONTOSO\alice`,
		"Zoë Ωmega 東京":     "Zoë Ωmega 東京",
		"x\x1b[2Jy":        `x\x1b[2Jy`,
		"\x1b]0;owned\x07": `\x1b]0;owned\x07`,
		"a\tb\nc\rd":       `a\x09b\x0ac\x0dd`,
		"csi\u009b31m":     `csi\u009b31m`,
		"PC\u202etxt.exe":  `PC\u202etxt.exe`,
		"zero\u200bwidth":  `zero\u200bwidth`,
		"del\x7f":          `del\x7f`,
		"bad\xffutf8":      `bad\xffutf8`,
		"":                 "",
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTableCells(t *testing.T) {
	c := newCLI(nil, nil, mapEnv(nil))
	c.loc = time.FixedZone("X", -5*3600)
	for _, tc := range []struct {
		local               bool
		open                bool
		lastSeen, endBefore string
		want                string
	}{
		{false, true, "2026-03-10T09:00:00Z", "", "open"},
		{false, false, "2026-03-10T09:00:00Z", "2026-03-10T09:01:00.5Z", "≤ 09:01:00"},
		{false, false, "2026-03-10T23:59:30Z", "2026-03-11T00:00:30Z", "≤ 2026-03-11T00:00:30Z"},
		{true, false, "2026-03-10T09:00:00Z", "2026-03-10T09:01:00Z", "≤ 04:01:00"},
		{true, false, "2026-03-10T04:59:00Z", "2026-03-10T05:01:00Z", "≤ 2026-03-10T00:01:00-05:00"},
	} {
		c.out.local = tc.local
		if got := c.endCell(tc.open, tc.lastSeen, tc.endBefore); got != tc.want {
			t.Errorf("endCell(local=%v, %v, %s, %s) = %q, want %q", tc.local, tc.open, tc.lastSeen, tc.endBefore, got, tc.want)
		}
	}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		30 * time.Second: "<1m", 12 * time.Minute: "12m", 2*time.Hour + 5*time.Minute: "2h5m",
		3*day + 4*time.Hour + 59*time.Minute: "3d4h", -time.Minute: "-",
	} {
		if got := age(now.Add(-d), now); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestRelativeTimes(t *testing.T) {
	c := newCLI(nil, nil, mapEnv(nil))
	c.now = func() time.Time { return t0 }
	from, to, err := c.parseRange("30d", "-2h")
	if err != nil || !from.Equal(t0.Add(-30*day)) || !to.Equal(t0.Add(-2*time.Hour)) {
		t.Errorf("parseRange(30d, -2h) = %v, %v, %v", from, to, err)
	}
	from, to, err = c.parseRange("2026-03-01", "2026-03-02T10:00:00+01:00")
	if err != nil || !from.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) || !to.Equal(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("parseRange(dates) = %v, %v, %v", from, to, err)
	}
	if _, _, err := c.parseRange("2h", "3h"); exitCode(err) != exitUsage {
		t.Errorf("parseRange(2h, 3h) = %v; want a usage error (since after until)", err)
	}
}

func fileMode(p uint32) os.FileMode { return os.FileMode(p) }
