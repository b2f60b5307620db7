package config

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sessionaudit/sessionaudit/agent/filetrust"
)

// TestCheckFileOwner: a config file is read only if a trusted owner owns
// it and nobody else may change it; others may read it.
func TestCheckFileOwner(t *testing.T) {
	for _, tc := range []struct {
		name  string
		facts filetrust.Facts
		want  string // "" to read it
	}{
		{"Administrators' file, Users read", filetrust.Facts{Exists: true, Owner: filetrust.SIDAdministrators, OwnerTrusted: true,
			Others: []string{filetrust.SIDUsers}}, ""},
		{"SYSTEM's file, closed", filetrust.Facts{Exists: true, Owner: filetrust.SIDSystem, OwnerTrusted: true}, ""},
		{"a user's file", filetrust.Facts{Exists: true, Owner: "S-1-5-21-1-2-3-1001"},
			"owned by S-1-5-21-1-2-3-1001, not by " + filetrust.TrustedOwnersText + ": not read"},
		{"Administrators' file that Users may write", filetrust.Facts{Exists: true, Owner: filetrust.SIDAdministrators, OwnerTrusted: true,
			Others: []string{filetrust.SIDUsers}, OthersWrite: []string{filetrust.SIDUsers}}, "S-1-5-32-545 may change it: not read"},
		{"Wine: an emulated ACL is not judged", filetrust.Facts{Exists: true, Owner: "S-1-5-21-0-0-0-1000", OwnerTrusted: true,
			OthersWrite: []string{filetrust.SIDEveryone}, Emulated: true}, ""},
		{"Wine: the owner still is", filetrust.Facts{Exists: true, Owner: "S-1-5-21-0-0-0-1001", Emulated: true}, "owned by S-1-5-21-0-0-0-1001"},
		{"root's file, group-writable", filetrust.Facts{Exists: true, Owner: "uid 0", OwnerTrusted: true,
			Others: []string{"group"}, OthersWrite: []string{"group"}}, "group may change it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckFileOwner(tc.facts)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("CheckFileOwner = %v; want %q", err, tc.want)
			}
		})
	}
}

// TestFileLayerOwner: FileLayer ignores, with a warning that says why, a
// config file that others may change or that another user owns, and reads
// one of its own.
func TestFileLayerOwner(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("mode bits and chown: Linux")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.conf")
	if err := os.WriteFile(path, []byte("CollectorAddress = collector.contoso.com:8443\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func() (map[string]Value, []Warning) { return FileLayer{Path: path}.Read() }
	if values, ws := read(); len(ws) != 0 || values[CollectorAddress].Raw != "collector.contoso.com:8443" {
		t.Fatalf("own file: values %v, warnings %v; want the address read", values, ws)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	values, ws := read()
	if len(values) != 0 || len(ws) != 1 || !strings.Contains(ws[0].String(), "config file "+path+": group, others may change it: not read") {
		t.Errorf("world-writable file: values %v, warnings %v; want nothing read and a warning saying why", values, ws)
	}
	if os.Geteuid() != 0 {
		t.Log("not root: the case of a file another user owns is not tested")
		return
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	values, ws = read()
	if len(values) != 0 || len(ws) != 1 || !strings.Contains(ws[0].String(), "owned by uid 65534") {
		t.Errorf("another user's file: values %v, warnings %v; want nothing read and a warning naming the owner", values, ws)
	}
	s, lws := Load(FileLayer{Path: path})
	if s.CollectorAddress != "" || len(lws) != 1 {
		t.Errorf("Load: address %q, warnings %v; want none from the file", s.CollectorAddress, lws)
	}
}
