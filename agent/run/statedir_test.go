package run

import (
	"errors"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/filetrust"
)

// Facts of the state directory as Windows shows them, for the decision
// table.
var (
	sdAbsent = filetrust.Facts{}
	// sdLocked is what the agent creates: owner Administrators, protected
	// DACL for SYSTEM and Administrators.
	sdLocked = filetrust.Facts{Exists: true, Dir: true, Owner: filetrust.SIDAdministrators, OwnerTrusted: true,
		Protected: true, Links: 1}
	// sdInherited is a directory SYSTEM or an administrator made under
	// %ProgramData% without a descriptor: it inherits Users' read and
	// create rights (what the agent did before PrepareStateDir).
	sdInherited = filetrust.Facts{Exists: true, Dir: true, Owner: filetrust.SIDSystem, OwnerTrusted: true,
		Others: []string{filetrust.SIDUsers}, OthersWrite: []string{filetrust.SIDUsers}, Links: 1}
	// sdPlanted is a directory a local user made.
	sdPlanted = filetrust.Facts{Exists: true, Dir: true, Owner: "S-1-5-21-1-2-3-1001",
		Others: []string{"S-1-5-21-1-2-3-1001", filetrust.SIDUsers}, Links: 1}
	// sdJunction is a junction a local user made (to C:\Windows\System32,
	// say); sdAdminJunction one an administrator made.
	sdJunction      = filetrust.Facts{Exists: true, Dir: true, Link: true, Owner: "S-1-5-21-1-2-3-1001", Links: 1}
	sdAdminJunction = filetrust.Facts{Exists: true, Dir: true, Link: true, Owner: filetrust.SIDAdministrators, OwnerTrusted: true, Protected: true, Links: 1}
	sdUserFile      = filetrust.Facts{Exists: true, Owner: "S-1-5-21-1-2-3-1001", Links: 1}
	sdAdminFile     = filetrust.Facts{Exists: true, Owner: filetrust.SIDAdministrators, OwnerTrusted: true, Protected: true, Links: 1}
	// sdNoProtect is a directory on a file system that keeps no protected
	// DACL.
	sdNoProtect = filetrust.Facts{Exists: true, Dir: true, Owner: filetrust.SIDAdministrators, OwnerTrusted: true, Links: 1}
	// sdWine is what Wine shows of a directory the agent created: its own
	// user's, an ACL made up from the Unix mode.
	sdWine = filetrust.Facts{Exists: true, Dir: true, Owner: "S-1-5-21-0-0-0-1000", OwnerTrusted: true, Links: 1,
		Others: []string{filetrust.SIDEveryone}, Emulated: true}
)

// TestDecideStateDir: the decision for every kind of state directory the
// agent can find at its start.
func TestDecideStateDir(t *testing.T) {
	planted := []UntrustedEntry{{Path: filepath.Join("spool", "00000001.seg"), Why: "owned by S-1-5-21-1-2-3-1001"}}
	for _, tc := range []struct {
		name   string
		facts  StateDirFacts
		want   StateDirAction
		reason string
	}{
		{"nothing there", StateDirFacts{Facts: sdAbsent}, StateDirCreate, "does not exist"},
		{"made by a local user", StateDirFacts{Facts: sdPlanted}, StateDirMoveAside, "a directory owned by S-1-5-21-1-2-3-1001"},
		{"a user's junction is moved aside, never followed", StateDirFacts{Facts: sdJunction}, StateDirMoveAside, "a link (junction or symbolic link) owned by S-1-5-21"},
		{"a user's file at its place", StateDirFacts{Facts: sdUserFile}, StateDirMoveAside, "a file owned by"},
		{"an owner that cannot be read", StateDirFacts{Facts: filetrust.Facts{Exists: true, Owner: "unknown (access denied to SYSTEM)"}}, StateDirMoveAside, "unknown (access denied"},
		{"an administrator's junction is refused", StateDirFacts{Facts: sdAdminJunction}, StateDirRefuse, "never follows a link"},
		{"an administrator's file is refused", StateDirFacts{Facts: sdAdminFile}, StateDirRefuse, "a file owned by S-1-5-32-544"},
		{"open to Users", StateDirFacts{Facts: sdInherited}, StateDirRestrict, "gives S-1-5-32-545 access (write: S-1-5-32-545)"},
		{"still open after restricting", StateDirFacts{Facts: sdInherited, Restricted: true}, StateDirRefuse, "still gives S-1-5-32-545 access"},
		{"inherits, closed to others", StateDirFacts{Facts: sdNoProtect, Scanned: true}, StateDirRestrict, "inherits from the parent"},
		{"inherits after restricting", StateDirFacts{Facts: sdNoProtect, Restricted: true, Scanned: true}, StateDirUse, "keeps no protected DACL"},
		{"Wine: access not judged", StateDirFacts{Facts: sdWine, Scanned: true}, StateDirUse, "Wine: its ACL is emulated"},
		{"Wine: entries still are", StateDirFacts{Facts: sdWine, Scanned: true, UntrustedCount: 1, Untrusted: planted}, StateDirMoveAside, "1 entry"},
		{"Wine: owner still is", StateDirFacts{Facts: filetrust.Facts{Exists: true, Dir: true, Owner: "S-1-5-21-0-0-0-1001", Emulated: true}}, StateDirMoveAside, "owned by S-1-5-21-0-0-0-1001"},
		{"locked, entries not checked", StateDirFacts{Facts: sdLocked}, StateDirRefuse, "not checked"},
		{"locked, clean", StateDirFacts{Facts: sdLocked, Scanned: true}, StateDirUse, "closed to others"},
		{"locked, a planted spool segment", StateDirFacts{Facts: sdLocked, Scanned: true, Untrusted: planted, UntrustedCount: 1},
			StateDirMoveAside, "1 entry that someone else made or that are links: spool"},
		{"locked, many planted entries", StateDirFacts{Facts: sdLocked, Scanned: true, Untrusted: planted, UntrustedCount: 30},
			StateDirMoveAside, "30 entries that someone else made or that are links: spool"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideStateDir(tc.facts)
			if d.Action != tc.want || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("DecideStateDir(%v) = %v %q; want %v, a reason containing %q", tc.facts.Facts, d.Action, d.Reason, tc.want, tc.reason)
			}
		})
	}
}

// TestEntryProblem: an entry is the agent's only if a trusted owner made
// it, it is not a link, and a file has one name.
func TestEntryProblem(t *testing.T) {
	for _, tc := range []struct {
		f    filetrust.Facts
		want string
	}{
		{filetrust.Facts{Exists: true, Owner: filetrust.SIDSystem, OwnerTrusted: true, Links: 1}, ""},
		{filetrust.Facts{Exists: true, Dir: true, Owner: filetrust.SIDSystem, OwnerTrusted: true, Links: 3}, ""},
		{filetrust.Facts{Exists: true, Owner: "S-1-5-21-1-2-3-1001", Links: 1}, "owned by S-1-5-21-1-2-3-1001"},
		{filetrust.Facts{Exists: true, Link: true, Owner: filetrust.SIDSystem, OwnerTrusted: true, Links: 1}, "a link (reparse point)"},
		{filetrust.Facts{Exists: true, Owner: filetrust.SIDAdministrators, OwnerTrusted: true, Links: 2}, "2 hard links"},
	} {
		if got := entryProblem(tc.f); got != tc.want {
			t.Errorf("entryProblem(%v) = %q; want %q", tc.f, got, tc.want)
		}
	}
}

// fakeFS is a state directory and its parent as PrepareStateDir sees them
// through stateDirOps, with the Windows semantics of the agent's calls.
type fakeFS struct {
	objects map[string]filetrust.Facts // by path
	calls   []string
	// noProtect: a restricted directory keeps no protected DACL.
	noProtect bool
	// wine: a directory is made with an emulated ACL open to Everyone.
	wine bool
	// raceCreate: the first mkdir finds that a user made the directory.
	raceCreate bool
	// renameErr fails every rename.
	renameErr error
	// sticky: restricting does not close the directory.
	sticky bool
}

func (f *fakeFS) ops() stateDirOps {
	return stateDirOps{
		lstat: func(p string) (filetrust.Facts, error) { return f.objects[p], nil },
		readDir: func(p string) ([]string, error) {
			var names []string
			for q := range f.objects {
				if filepath.Dir(q) == p {
					names = append(names, filepath.Base(q))
				}
			}
			return names, nil
		},
		mkdirRestricted: func(p string) error {
			f.calls = append(f.calls, "mkdir")
			if _, ok := f.objects[p]; ok {
				return fs.ErrExist
			}
			if f.raceCreate {
				f.raceCreate = false
				f.objects[p] = sdPlanted
				return fs.ErrExist
			}
			f.objects[p] = sdLocked
			if f.noProtect {
				f.objects[p] = sdNoProtect
			}
			if f.wine {
				f.objects[p] = sdWine
			}
			return nil
		},
		restrict: func(p string) error {
			f.calls = append(f.calls, "restrict")
			if f.sticky {
				return nil
			}
			o := f.objects[p]
			o.Others, o.OthersWrite, o.Owner, o.Protected = nil, nil, filetrust.SIDAdministrators, !f.noProtect
			f.objects[p] = o
			return nil
		},
		rename: func(from, to string) error {
			f.calls = append(f.calls, "rename")
			if f.renameErr != nil {
				return f.renameErr
			}
			for p, o := range f.objects {
				if p == from || strings.HasPrefix(p, from+string(filepath.Separator)) {
					delete(f.objects, p)
					f.objects[to+strings.TrimPrefix(p, from)] = o
				}
			}
			return nil
		},
		now: func() time.Time { return time.Date(2026, 12, 5, 10, 11, 12, 0, time.UTC) },
	}
}

// TestPrepareStateDirSteps: the rounds PrepareStateDir goes through from
// each starting point, and that it never uses a directory it has not
// seen closed and clean.
func TestPrepareStateDirSteps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sessionaudit") // its parent exists
	sub := func(name string) string { return filepath.Join(dir, name) }
	userFile := filetrust.Facts{Exists: true, Owner: "S-1-5-21-1-2-3-1001", Links: 1}
	sysFile := filetrust.Facts{Exists: true, Owner: filetrust.SIDSystem, OwnerTrusted: true, Links: 1}
	sysDir := filetrust.Facts{Exists: true, Dir: true, Owner: filetrust.SIDSystem, OwnerTrusted: true, Protected: true, Links: 1}
	for _, tc := range []struct {
		name    string
		fs      fakeFS
		steps   string // the decisions, in order
		calls   string
		err     string
		movedTo bool
		// untrusted, when set, is the first look's count of untrusted
		// entries.
		untrusted int
	}{
		{name: "first start", fs: fakeFS{objects: map[string]filetrust.Facts{}},
			steps: "create use", calls: "mkdir"},
		{name: "first start on a file system that keeps no protected DACL", fs: fakeFS{objects: map[string]filetrust.Facts{}, noProtect: true},
			steps: "create restrict use", calls: "mkdir restrict"},
		{name: "first start under Wine: never restricted", fs: fakeFS{objects: map[string]filetrust.Facts{}, wine: true},
			steps: "create use", calls: "mkdir"},
		{name: "Wine: entries checked although the emulated ACL is open",
			fs:    fakeFS{objects: map[string]filetrust.Facts{dir: sdWine, sub("spool"): userFile}, wine: true},
			steps: "move-aside create use", calls: "rename mkdir", movedTo: true, untrusted: 1},
		{name: "an agent's directory, restricted and clean",
			fs:    fakeFS{objects: map[string]filetrust.Facts{dir: sdLocked, sub("agent.key"): sysFile, sub("spool"): sysDir, sub("spool/1.seg"): sysFile}},
			steps: "use"},
		{name: "planted by a user: moved aside, made anew",
			fs:    fakeFS{objects: map[string]filetrust.Facts{dir: sdPlanted, sub("agent.conf"): userFile}},
			steps: "move-aside create use", calls: "rename mkdir", movedTo: true},
		{name: "a user's junction", fs: fakeFS{objects: map[string]filetrust.Facts{dir: sdJunction}},
			steps: "move-aside create use", calls: "rename mkdir", movedTo: true},
		{name: "made by an older agent, open to Users, a segment planted meanwhile",
			fs: fakeFS{objects: map[string]filetrust.Facts{dir: sdInherited, sub("agent.log"): sysFile,
				sub("spool"): sysDir, sub("spool/7.seg"): userFile}},
			steps: "restrict move-aside create use", calls: "restrict rename mkdir", movedTo: true, untrusted: 0},
		{name: "made by an administrator for agent.conf, open to Users, nothing planted",
			fs:    fakeFS{objects: map[string]filetrust.Facts{dir: sdInherited, sub("agent.conf"): sysFile}},
			steps: "restrict use", calls: "restrict"},
		{name: "a user's agent.conf is left to the config layer",
			fs:    fakeFS{objects: map[string]filetrust.Facts{dir: sdLocked, sub("agent.conf"): userFile}},
			steps: "use"},
		{name: "a planted subdirectory is not entered",
			fs: fakeFS{objects: map[string]filetrust.Facts{dir: sdLocked,
				sub("spool"): {Exists: true, Dir: true, Owner: "S-1-5-21-1-2-3-1001", Links: 1}, sub("spool/1.seg"): userFile}},
			steps: "move-aside create use", calls: "rename mkdir", movedTo: true, untrusted: 1},
		{name: "a user makes the directory between the look and the creation",
			fs:    fakeFS{objects: map[string]filetrust.Facts{}, raceCreate: true},
			steps: "create move-aside create use", calls: "mkdir rename mkdir", movedTo: true},
		{name: "an administrator's junction", fs: fakeFS{objects: map[string]filetrust.Facts{dir: sdAdminJunction}},
			steps: "refuse", err: "never follows a link"},
		{name: "restricting does not take", fs: fakeFS{objects: map[string]filetrust.Facts{dir: sdInherited}, sticky: true},
			steps: "restrict refuse", calls: "restrict", err: "still gives S-1-5-32-545 access"},
		{name: "the move aside fails (a file held open)",
			fs:    fakeFS{objects: map[string]filetrust.Facts{dir: sdPlanted}, renameErr: errors.New("sharing violation")},
			calls: "rename", err: "moving it aside to sessionaudit.untrusted-20261205T101112Z-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := tc.fs
			r, err := prepareStateDir(dir, fake.ops())
			var steps []string
			moved := ""
			for _, s := range r.Steps {
				steps = append(steps, s.Decision.Action.String())
				if s.MovedTo != "" {
					moved = s.MovedTo
				}
			}
			if got := strings.Join(steps, " "); got != tc.steps {
				t.Errorf("steps %q; want %q", got, tc.steps)
			}
			if got := strings.Join(fake.calls, " "); got != tc.calls {
				t.Errorf("calls %q; want %q", got, tc.calls)
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("error %v; want one containing %q", err, tc.err)
			}
			if tc.untrusted > 0 && r.Steps[0].Facts.UntrustedCount != tc.untrusted {
				t.Errorf("first look: %d untrusted entries %v; want %d", r.Steps[0].Facts.UntrustedCount, r.Steps[0].Facts.Untrusted, tc.untrusted)
			}
			if tc.movedTo != (moved != "") {
				t.Errorf("moved to %q; want a move: %v", moved, tc.movedTo)
			}
			if moved != "" {
				if !strings.HasPrefix(filepath.Base(moved), "sessionaudit.untrusted-20261205T101112Z-") {
					t.Errorf("moved to %s; want sessionaudit.untrusted-<time>-<random>", moved)
				}
				if _, ok := fake.objects[moved]; !ok {
					t.Errorf("nothing at %s after the move", moved)
				}
			}
			if err == nil {
				if f := fake.objects[dir]; !f.OwnerTrusted || len(f.Others) > 0 && !f.Emulated {
					t.Errorf("used a directory that is not closed and the agent's: %v", f)
				}
			}
		})
	}
}

// TestPrepareStateDirGivesUp: a directory that changes at every look is
// not used.
func TestPrepareStateDirGivesUp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sessionaudit")
	n := 0
	ops := stateDirOps{
		lstat: func(string) (filetrust.Facts, error) { n++; return sdPlanted, nil },
		rename: func(string, string) error {
			return nil // and the user makes it again at once
		},
		now: time.Now,
	}
	_, err := prepareStateDir(dir, ops)
	if err == nil || !strings.Contains(err.Error(), "changed at each of") || n != maxStateDirSteps {
		t.Errorf("err %v after %d looks; want a refusal after %d", err, n, maxStateDirSteps)
	}
}

// TestStateDirLog: a directory moved aside is a warning naming where it
// went and why.
func TestStateDirLog(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	r := &StateDirReport{Dir: "/x/sessionaudit", Steps: []StateDirStep{
		{Decision: StateDirDecision{StateDirMoveAside, "a directory owned by uid 1000"}, MovedTo: "/x/sessionaudit.untrusted-1"},
		{Decision: StateDirDecision{StateDirCreate, "it does not exist"}},
		{Decision: StateDirDecision{StateDirUse, "fine"}},
	}}
	r.Log(log)
	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="state directory not trusted: moved aside`, `moved_to=/x/sessionaudit.untrusted-1`,
		`why="a directory owned by uid 1000"`, `level=INFO msg="state directory created, restricted to`,
		`msg="state directory checked: using it"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestJoinEntries: the listed entries, then how many more were counted.
func TestJoinEntries(t *testing.T) {
	es := []UntrustedEntry{{Path: "a", Why: "owned by x"}, {Path: "b", Why: "2 hard links"}}
	if got, want := joinEntries(es, 30), "a (owned by x); b (2 hard links); and 28 more"; got != want {
		t.Errorf("joinEntries = %q; want %q", got, want)
	}
	if got, want := joinEntries(es, 2), "a (owned by x); b (2 hard links)"; got != want {
		t.Errorf("joinEntries = %q; want %q", got, want)
	}
}
