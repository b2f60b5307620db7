package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/sessionaudit/sessionaudit/agent/config"
)

// TestLayers: Group Policy beats the config file, which beats the
// installer's settings, which beat the flags, which beat the defaults; Describe says where each setting came from and
// never shows the secret.
func TestLayers(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "agent.conf")
	if err := os.WriteFile(conf, []byte("PollIntervalSeconds = 30\nLogLevel = debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newRunFlags("run", &bytes.Buffer{})
	err := f.parse([]string{"-config", conf, "-poll-interval-seconds", "20", "-log-level", "warn",
		"-collector-address", "collector.contoso.com:8443", "-enrollment-secret", "hunter2-secret", "-spool-max-mb", "8"})
	if err != nil {
		t.Fatal(err)
	}
	policy := config.MapLayer{LayerName: "Group Policy", Values: map[string]string{config.PollIntervalSeconds: "45"}}
	installer := config.InstallerLayerFromValues(map[string]config.RegistryValue{
		config.LogLevel:   {Type: config.RegSZ, String: "error"},
		config.SpoolMaxMB: {Type: config.RegDWORD, Number: 16},
	})
	s, ws := config.Load(f.layers(policy, installer)...)
	if len(ws) != 0 {
		t.Errorf("warnings %v", ws)
	}
	lines := s.Describe()
	for _, want := range []string{
		"PollIntervalSeconds=45 (from Group Policy)",
		"LogLevel=debug (from config file " + conf + ")",
		"CollectorAddress=collector.contoso.com:8443 (from flags)",
		"SpoolMaxMB=16 (from installer settings)",
		"ResyncIntervalMinutes=1440 (from default)",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("Describe lacks %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	if strings.Contains(strings.Join(lines, "\n"), "hunter2") {
		t.Error("Describe shows the enrollment secret")
	}
}

// TestCommands: usage errors, and the Windows-only commands on Linux.
func TestCommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{nil, exitUsage, "usage:"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"run", "-source", "nope"}, exitUsage, `-source "nope"`},
		{[]string{"run", "-source", "fixture"}, exitUsage, "needs -fixture FILE"},
		{[]string{"run", "-simulate-profile", "mainframe"}, exitUsage, "unknown profile"},
		{[]string{"version"}, exitOK, "sessionaudit-agent dev"},
		{[]string{"settings", "-poll-interval-seconds", "15"}, exitOK, "PollIntervalSeconds=15 (from flags)"},
	} {
		var stdout, stderr bytes.Buffer
		code := realMain(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.out) {
			t.Errorf("%q: exit %d, output %q; want exit %d and %q", tc.args, code, stdout.String()+stderr.String(), tc.code, tc.out)
		}
	}
	if runtime.GOOS != "windows" {
		for _, cmd := range []string{"install", "uninstall"} {
			var stdout, stderr bytes.Buffer
			code := realMain([]string{cmd}, &stdout, &stderr)
			if code != exitError || !strings.Contains(stderr.String(), "only on Windows") {
				t.Errorf("%s: exit %d, %q; want exit %d saying it exists only on Windows", cmd, code, stderr.String(), exitError)
			}
		}
	}
}

// TestServiceArgs: install registers the flags given, paths made absolute.
func TestServiceArgs(t *testing.T) {
	f := newRunFlags("install", &bytes.Buffer{})
	if err := f.parse([]string{"-config", "agent.conf", "-collector-address", "c.contoso.com:8443",
		"-source", "fixture", "-fixture", "host.jsonl", "--service"}); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	want := []string{"-collector-address=c.contoso.com:8443", "-config=" + filepath.Join(wd, "agent.conf"),
		"-fixture=" + filepath.Join(wd, "host.jsonl"), "-source=fixture"}
	if got := f.serviceArgs(); !slices.Equal(got, want) {
		t.Errorf("serviceArgs = %q; want %q", got, want)
	}
}
