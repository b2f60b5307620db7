package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// collector runs one command line and returns its exit status and output.
func collector(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := collector(t, args...)
	if code != exitOK {
		t.Fatalf("%v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
	}
	return out
}

func field(t *testing.T, out, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + name + `:\s+(\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q line in:\n%s", name, out)
	}
	return m[1]
}

func TestAdministration(t *testing.T) {
	url := storetest.NewDatabase(t, store.Migrate)
	db := "--database-url=" + url
	if out := mustRun(t, "migrate", db); !strings.Contains(out, "schema at version") {
		t.Fatalf("migrate said %q", out)
	}

	out := mustRun(t, "secret", "create", db, "--label", "GPO Servers OU", "--max-uses", "3", "--expires-in", "72h")
	id, secret := field(t, out, "id"), field(t, out, "secret")
	if !strings.HasPrefix(secret, store.EnrollmentSecretPrefix) {
		t.Errorf("secret %q lacks the prefix %q", secret, store.EnrollmentSecretPrefix)
	}
	list := mustRun(t, "secret", "list", db)
	if !strings.Contains(list, id) || !strings.Contains(list, "GPO Servers OU") || !strings.Contains(list, "0/3") {
		t.Errorf("secret list lacks the new secret:\n%s", list)
	}
	if strings.Contains(list, secret) {
		t.Errorf("secret list shows the secret's value")
	}
	st, err := store.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mustRun(t, "secret", "revoke", db, id)
	secrets, err := st.ListEnrollmentSecrets(context.Background())
	if err != nil || len(secrets) != 1 || secrets[0].ID != id || secrets[0].RevokedAt.IsZero() {
		t.Errorf("after secret revoke: %+v, %v; want the secret revoked", secrets, err)
	}
	if list := mustRun(t, "secret", "list", db); !strings.Contains(list, secrets[0].RevokedAt.UTC().Format(time.RFC3339)) {
		t.Errorf("secret list does not show the revocation time:\n%s", list)
	}

	out = mustRun(t, "token", "create", db, "--name", "alice", "--role", "admin")
	tokID, token := field(t, out, "id"), field(t, out, "token")
	if tok, err := st.VerifyAPIToken(context.Background(), token); err != nil || tok.Role != store.RoleAdmin || tok.Name != "alice" {
		t.Fatalf("created token does not verify: %+v, %v", tok, err)
	}
	if list := mustRun(t, "token", "list", db); !strings.Contains(list, tokID) || strings.Contains(list, token) {
		t.Errorf("token list wrong (or shows the value):\n%s", list)
	}
	mustRun(t, "token", "revoke", db, tokID)
	if _, err := st.VerifyAPIToken(context.Background(), token); err == nil {
		t.Error("revoked token still verifies")
	}

	if out := mustRun(t, "agent", "list", db); !strings.HasPrefix(out, "AGENT") {
		t.Errorf("agent list: %q", out)
	}
	code, _, errOut := collector(t, "agent", "disable", db, "no-such-agent")
	if code != exitFailure || !strings.Contains(errOut, "no-such-agent") {
		t.Errorf("disabling an unknown agent: exit %d, %q", code, errOut)
	}
}

func TestEnvironmentAndFlags(t *testing.T) {
	url := storetest.NewDatabase(t, store.Migrate)
	t.Setenv("SESSIONAUDIT_DATABASE_URL", url)
	mustRun(t, "secret", "list") // from the environment
	// A flag wins over the environment.
	code, _, errOut := collector(t, "secret", "list", "--database-url", "postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
	if code != exitFailure || !strings.Contains(errOut, "127.0.0.1") {
		t.Errorf("flag did not override the environment: exit %d, %q", code, errOut)
	}
	t.Setenv("SESSIONAUDIT_DATABASE_URL", "")
	os.Unsetenv("SESSIONAUDIT_DATABASE_URL")
	code, _, errOut = collector(t, "secret", "list")
	if code != exitUsage || !strings.Contains(errOut, "--database-url") {
		t.Errorf("missing database: exit %d, %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "Commands:"},
		{[]string{"help"}, exitOK, "Commands:"},
		{[]string{"secret", "create", "--help"}, exitOK, "--max-uses"},
		{[]string{"help", "token", "create"}, exitOK, "--role"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"secret", "create", "--database-url=x"}, exitUsage, "--label is required"},
		{[]string{"secret", "create", "--database-url=x", "--label=l", "--max-uses=-1"}, exitUsage, "--max-uses -1"},
		{[]string{"secret", "create", "--database-url=x", "--label=l", "--expires-in=soon"}, exitUsage, "invalid value"},
		{[]string{"token", "create", "--database-url=x", "--name=n", "--role=root"}, exitUsage, `--role "root"`},
		{[]string{"token", "revoke", "--database-url=x"}, exitUsage, "want exactly one token ID"},
		{[]string{"agent", "allow-reenroll", "--database-url=x", "--expires-in=0", "g"}, exitUsage, "must be positive"},
		{[]string{"init-pki", "--pki-dir", "/nonexistent", "--ip", "not-an-ip"}, exitUsage, `"not-an-ip" is not an IP address`},
		{[]string{"init-pki", "--ca-cert", "x.pem"}, exitUsage, "--ca-cert and --ca-key go together"},
	}
	for _, tt := range tests {
		code, out, errOut := collector(t, tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("%q: exit %d, want %d with %q\nstdout: %s\nstderr: %s", tt.args, code, tt.code, tt.want, out, errOut)
		}
	}
}

func TestInitPKI(t *testing.T) {
	dir := t.TempDir()
	out := mustRun(t, "init-pki", "--pki-dir", dir, "--dns", "collector.corp.example", "--ip", "127.0.0.1")
	if !strings.Contains(out, "collector.corp.example") {
		t.Errorf("init-pki output: %s", out)
	}
	for name, mode := range map[string]os.FileMode{
		agentCACertFile: 0o644, agentCAKeyFile: 0o600, analystCACertFile: 0o644,
		analystCAKeyFile: 0o600, serverCertFile: 0o644, serverKeyFile: 0o600,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	before, _ := os.ReadFile(filepath.Join(dir, serverKeyFile))
	code, _, errOut := collector(t, "init-pki", "--pki-dir", dir)
	if code != exitFailure || !strings.Contains(errOut, "already exists") {
		t.Errorf("second init-pki: exit %d, %q", code, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, serverKeyFile)); !bytes.Equal(before, after) {
		t.Error("second init-pki changed the server key")
	}

	// An enterprise CA: the agent CA is the one given, not a new one.
	dir2 := t.TempDir()
	code, _, errOut = collector(t, "init-pki", "--pki-dir", dir2, "--ca-cert", filepath.Join(dir, agentCACertFile), "--ca-key", filepath.Join(dir, agentCAKeyFile))
	if code != exitOK {
		t.Fatalf("init-pki with an existing CA: exit %d, %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir2, agentCAKeyFile)); err == nil {
		t.Error("init-pki with an existing CA wrote a new agent CA key")
	}
}
