//go:build !windows

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestDefaultConfigHome: without XDG_CONFIG_HOME (or with a relative one,
// which the XDG specification says to ignore) the file is
// ~/.config/sessionaudit/cli.conf.
func TestDefaultConfigHome(t *testing.T) {
	home := t.TempDir()
	writeConfig(t, filepath.Join(home, ".config"), "collector = home.example\n", 0o644)
	for _, env := range []map[string]string{{"HOME": home}, {"HOME": home, "XDG_CONFIG_HOME": "relative/dir"}} {
		if col, _, _, err := settingsOf(t, env); err != nil || col != "home.example" {
			t.Errorf("%v: collector %q, %v; want home.example from ~/.config", env, col, err)
		}
	}
}

// TestConfigPermissions: a config file holding a token must be readable by
// its owner only, as ssh wants of a private key; one without a token may be
// readable by anyone.
func TestConfigPermissions(t *testing.T) {
	for _, tc := range []struct {
		text string
		perm uint32
		ok   bool
	}{
		{"token = sat_x\n", 0o600, true},
		{"token = sat_x\n", 0o400, true},
		{"token = sat_x\n", 0o640, false},
		{"token = sat_x\n", 0o604, false},
		{"token = sat_x\n", 0o620, false},
		{"collector = c.example\n", 0o644, true},
	} {
		path := writeConfig(t, t.TempDir(), tc.text, fileMode(tc.perm))
		_, _, _, err := settingsOf(t, nil, "--config", path)
		if tc.ok != (err == nil) {
			t.Errorf("%q with mode %04o: %v", tc.text, tc.perm, err)
		}
		if err != nil && (exitCode(err) != exitUsage || !strings.Contains(err.Error(), "chmod 600 "+path)) {
			t.Errorf("mode %04o: %v; want a usage error that says chmod 600 %s", tc.perm, err, path)
		}
	}
	// Through the command line: exit 2 and the message, before any
	// connection.
	path := writeConfig(t, t.TempDir(), "collector = 127.0.0.1:1\ntoken = sat_x\n", 0o644)
	r := offline(t, map[string]string{"SESSIONAUDIT_CONFIG": path}, "hosts")
	if r.code != exitUsage || !strings.Contains(r.stderr, "lets group or others read") {
		t.Errorf("hosts with a readable token file: exit %d, %q", r.code, r.stderr)
	}
}
