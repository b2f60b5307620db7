package run

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/config"
	"github.com/sessionaudit/sessionaudit/agent/filetrust"
)

// The state directory is checked before anything in it is opened: the log
// file, the config file (on Windows agent.conf is in it), the spool and
// the identity. A local user can create %ProgramData%\sessionaudit before
// the agent does, or plant files in it while it is open to them, and the
// agent, as SYSTEM, would then read their config, deliver their spool
// segments as the host's reports, use their identity, or write through
// their junction. PrepareStateDir makes sure that the directory, and
// everything in it, was made by the agent or an administrator, and that
// nobody else can add to it, before the agent uses it
// (docs/design/0003-security.md, "Local files").
//
// The decision is a plain function of what the file system says
// (DecideStateDir, tested on every platform); the calls that observe and
// act are thin (agent/filetrust; statedir_windows.go, statedir_other.go).

// StateDirAction is what PrepareStateDir does with the state directory.
type StateDirAction int

// The actions.
const (
	// StateDirUse: the directory is the agent's; use it as it is.
	StateDirUse StateDirAction = iota + 1
	// StateDirCreate: there is nothing at the path; create the directory,
	// restricted from the start.
	StateDirCreate
	// StateDirRestrict: the directory is the agent's or an administrator's
	// but others may use it; restrict it (Windows: owner Administrators,
	// protected DACL with full control for SYSTEM and Administrators,
	// inherited; elsewhere mode 0700), then look again.
	StateDirRestrict
	// StateDirMoveAside: someone else made the directory (or the link, or
	// the file at its place), or it holds entries that someone else made;
	// rename it to <dir>.untrusted-<time>-<random>, untouched, and create
	// a new one.
	StateDirMoveAside
	// StateDirRefuse: an administrator put something there that the agent
	// must not use (a junction, a file): the agent does not start.
	StateDirRefuse
)

// String returns the action's name as logged: use, create, restrict,
// move-aside, refuse.
func (a StateDirAction) String() string {
	switch a {
	case StateDirUse:
		return "use"
	case StateDirCreate:
		return "create"
	case StateDirRestrict:
		return "restrict"
	case StateDirMoveAside:
		return "move-aside"
	case StateDirRefuse:
		return "refuse"
	}
	return fmt.Sprintf("StateDirAction(%d)", int(a))
}

// StateDirFacts are what PrepareStateDir observed of the state directory.
type StateDirFacts struct {
	// Facts are the directory's own (never followed if it is a link).
	filetrust.Facts
	// Restricted is true once PrepareStateDir has restricted the directory
	// during this start: a directory still open to others afterwards, or
	// whose file system keeps no protected DACL (Wine), is then not
	// restricted again.
	Restricted bool
	// Scanned is true when the entries were looked at, which happens only
	// once the directory is the agent's and closed to others (before that
	// anyone could still add entries).
	Scanned bool
	// Untrusted are the entries, at any depth, that the agent cannot take
	// as its own (UntrustedEntry), at most maxUntrustedListed of them;
	// UntrustedCount counts them all. The config file (agent.conf) is left
	// out: the config layer checks it itself and ignores it if untrusted.
	Untrusted      []UntrustedEntry
	UntrustedCount int
}

// UntrustedEntry is an entry of the state directory that someone other
// than the agent or an administrator made, or that is a link.
type UntrustedEntry struct {
	// Path is relative to the state directory.
	Path string
	// Why says what is wrong: "owned by S-1-5-21-…", "a link (reparse
	// point)", "2 hard links", "unreadable: …".
	Why string
}

// String returns "spool\x.seg (owned by S-1-5-21-…)".
func (e UntrustedEntry) String() string { return e.Path + " (" + e.Why + ")" }

// StateDirDecision is DecideStateDir's answer.
type StateDirDecision struct {
	Action StateDirAction
	// Reason says why, for the log.
	Reason string
}

// DecideStateDir decides what to do with the state directory described by
// f:
//
//   - nothing there: create it, restricted;
//   - its owner is not trusted (not SYSTEM, Administrators or the agent's
//     account; elsewhere root or the agent's user), whatever it is — a
//     directory, a junction or symbolic link, a file: move it aside and
//     create a new one (a link is renamed itself, never followed);
//   - a link or a file that a trusted owner made: refuse (an administrator
//     relocated the directory; the agent never follows a link: give it a
//     real directory with -state-dir);
//   - others have access: restrict it (once; still open after that:
//     refuse);
//   - a DACL that inherits from the parent: restrict it (once), so that a
//     change to %ProgramData%'s ACL does not open it;
//   - entries that someone else made, or links, or files with several hard
//     links: move it aside and create a new one;
//   - under Wine (Facts.Emulated) access is not judged, the rest is;
//   - else use it.
func DecideStateDir(f StateDirFacts) StateDirDecision {
	what := "a directory"
	switch {
	case f.Link:
		what = "a link (junction or symbolic link)"
	case !f.Dir:
		what = "a file"
	}
	switch {
	case !f.Exists:
		return StateDirDecision{StateDirCreate, "it does not exist"}
	case !f.OwnerTrusted:
		return StateDirDecision{StateDirMoveAside, fmt.Sprintf("%s owned by %s, not by %s: someone else made it",
			what, f.Owner, filetrust.TrustedOwnersText)}
	case f.Link || !f.Dir:
		return StateDirDecision{StateDirRefuse, fmt.Sprintf("%s owned by %s: the agent never follows a link and "+
			"needs a real directory; remove it, or give the agent another directory with -state-dir", what, f.Owner)}
	case f.Emulated:
		// Wine: access is not judged (Facts.Emulated); owner, links and
		// entries are.
	case len(f.Others) > 0 && f.Restricted:
		return StateDirDecision{StateDirRefuse, fmt.Sprintf("it still gives %s access after the agent restricted it",
			strings.Join(f.Others, ", "))}
	case len(f.Others) > 0:
		return StateDirDecision{StateDirRestrict, fmt.Sprintf("it gives %s access (write: %s)",
			strings.Join(f.Others, ", "), orNone(f.OthersWrite))}
	case !f.Protected && !f.Restricted:
		return StateDirDecision{StateDirRestrict, "its DACL inherits from the parent directory"}
	}
	switch {
	case !f.Scanned:
		// Not reached from PrepareStateDir, which scans a directory closed
		// to others; a caller that did not scan gets no answer to use.
		return StateDirDecision{StateDirRefuse, "its entries were not checked"}
	case f.UntrustedCount > 0:
		entries := "entries"
		if f.UntrustedCount == 1 {
			entries = "entry"
		}
		return StateDirDecision{StateDirMoveAside, fmt.Sprintf("it holds %d %s that someone else made or that are links: %s",
			f.UntrustedCount, entries, joinEntries(f.Untrusted, f.UntrustedCount))}
	}
	reason := "owned by " + f.Owner + ", closed to others, every entry the agent's or an administrator's"
	switch {
	case f.Emulated:
		reason = "owned by " + f.Owner + ", every entry the agent's or an administrator's (Wine: its ACL is emulated, not judged)"
	case !f.Protected:
		reason += " (the file system keeps no protected DACL)"
	}
	return StateDirDecision{StateDirUse, reason}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func joinEntries(es []UntrustedEntry, total int) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.String()
	}
	s := strings.Join(parts, "; ")
	if total > len(es) {
		s += fmt.Sprintf("; and %d more", total-len(es))
	}
	return s
}

// entryProblem says why an entry of the state directory, described by f,
// cannot be taken as the agent's, or "" when it can.
func entryProblem(f filetrust.Facts) string {
	switch {
	case !f.OwnerTrusted:
		return "owned by " + f.Owner
	case f.Link:
		return "a link (reparse point)"
	case !f.Dir && f.Links > 1:
		return fmt.Sprintf("%d hard links", f.Links)
	}
	return ""
}

// maxUntrustedListed bounds the entries StateDirFacts lists (all are
// counted).
const maxUntrustedListed = 20

// maxStateDirSteps bounds PrepareStateDir's look-decide-act rounds: at
// most restrict, move aside, create, use.
const maxStateDirSteps = 6

// StateDirStep is one round of PrepareStateDir.
type StateDirStep struct {
	Facts    StateDirFacts
	Decision StateDirDecision
	// MovedTo is where StateDirMoveAside renamed the directory.
	MovedTo string
	// Raced is true when the directory appeared between the look and the
	// creation: PrepareStateDir looked again.
	Raced bool
}

// StateDirReport is what PrepareStateDir saw and did, for the log (which
// is opened only afterwards, since it lives in the directory).
type StateDirReport struct {
	Dir   string
	Steps []StateDirStep
}

// stateDirOps are the file system calls PrepareStateDir makes; tests
// replace them.
type stateDirOps struct {
	// lstat reads an object's facts without following a link.
	lstat func(path string) (filetrust.Facts, error)
	// readDir lists a directory's entry names.
	readDir func(path string) ([]string, error)
	// mkdirRestricted creates the directory restricted (its parent
	// exists); an error matching fs.ErrExist when something is there.
	mkdirRestricted func(path string) error
	// restrict gives the directory the agent's owner and protected DACL.
	restrict func(path string) error
	// rename renames a directory, link or file (never what a link points
	// to), failing if the target exists.
	rename func(from, to string) error
	now    func() time.Time
}

// platformStateDirOps are the real calls (package filetrust): on Windows a
// handle opened with FILE_FLAG_OPEN_REPARSE_POINT and GetSecurityInfo,
// CreateDirectory with a security descriptor, SetNamedSecurityInfo, and a
// rename of a handle opened the same way (NtSetInformationFile; MoveFileEx
// by path would leave open which object a path names by then); elsewhere
// lstat, mkdir and chmod 0700, rename(2), which never follows a link.
func platformStateDirOps() stateDirOps {
	return stateDirOps{
		lstat:           filetrust.Lstat,
		readDir:         readDirNames,
		mkdirRestricted: filetrust.MkdirRestricted,
		restrict:        filetrust.Restrict,
		rename:          filetrust.Rename,
		now:             time.Now,
	}
}

// PrepareStateDir makes dir fit to hold the agent's state, or says why it
// cannot: it looks at dir (never following a link), decides
// (DecideStateDir) and acts, until the directory can be used. Call it
// before opening anything in dir. The report says what it saw and did;
// log it once the log is open (StateDirReport.Log).
func PrepareStateDir(dir string) (*StateDirReport, error) {
	return prepareStateDir(dir, platformStateDirOps())
}

func prepareStateDir(dir string, ops stateDirOps) (*StateDirReport, error) {
	dir = filepath.Clean(dir)
	r := &StateDirReport{Dir: dir}
	restricted := false
	for range maxStateDirSteps {
		f, err := observeStateDir(dir, ops)
		if err != nil {
			return r, fmt.Errorf("state directory %s: %w", dir, err)
		}
		f.Restricted = restricted
		step := StateDirStep{Facts: f, Decision: DecideStateDir(f)}
		switch step.Decision.Action {
		case StateDirUse:
			r.Steps = append(r.Steps, step)
			return r, nil
		case StateDirRefuse:
			r.Steps = append(r.Steps, step)
			return r, fmt.Errorf("state directory %s cannot be used: %s", dir, step.Decision.Reason)
		case StateDirCreate:
			if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
				return r, fmt.Errorf("state directory %s: create its parent: %w", dir, err)
			}
			err := ops.mkdirRestricted(dir)
			if errors.Is(err, fs.ErrExist) {
				step.Raced = true // someone made it meanwhile: look again
			} else if err != nil {
				return r, fmt.Errorf("state directory %s: create: %w", dir, err)
			}
		case StateDirRestrict:
			if err := ops.restrict(dir); err != nil {
				return r, fmt.Errorf("state directory %s: restrict it to %s: %w", dir, restrictedTo, err)
			}
			restricted = true
		case StateDirMoveAside:
			to := fmt.Sprintf("%s.untrusted-%s-%s", dir, ops.now().UTC().Format("20060102T150405Z"), randomHex())
			if err := ops.rename(dir, to); err != nil {
				return r, fmt.Errorf("state directory %s: %s; moving it aside to %s failed: %w "+
					"(a process may hold a file in it open; an administrator must remove it)",
					dir, step.Decision.Reason, filepath.Base(to), err)
			}
			step.MovedTo = to
			restricted = false
		}
		r.Steps = append(r.Steps, step)
	}
	return r, fmt.Errorf("state directory %s changed at each of %d looks: something keeps replacing it", dir, maxStateDirSteps)
}

// observeStateDir reads dir's facts and, when dir is the agent's and
// closed to others, checks its entries.
func observeStateDir(dir string, ops stateDirOps) (StateDirFacts, error) {
	ff, err := ops.lstat(dir)
	if err != nil {
		return StateDirFacts{}, err
	}
	f := StateDirFacts{Facts: ff}
	if !ff.Exists || !ff.OwnerTrusted || ff.Link || !ff.Dir || (len(ff.Others) > 0 && !ff.Emulated) {
		return f, nil
	}
	f.Scanned = true
	configName := filepath.Base(config.DefaultFilePath())
	var walk func(rel string) error
	walk = func(rel string) error {
		names, err := ops.readDir(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		for _, name := range names {
			p := filepath.Join(rel, name)
			if rel == "" && strings.EqualFold(name, configName) {
				continue
			}
			ef, err := ops.lstat(filepath.Join(dir, p))
			var why string
			switch {
			case err != nil:
				why = "unreadable: " + err.Error()
			case !ef.Exists:
				continue // gone meanwhile
			default:
				why = entryProblem(ef)
			}
			if why != "" {
				f.UntrustedCount++
				if len(f.Untrusted) < maxUntrustedListed {
					f.Untrusted = append(f.Untrusted, UntrustedEntry{Path: p, Why: why})
				}
				continue // never descend into what is not ours
			}
			if ef.Dir {
				if err := walk(p); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return f, fmt.Errorf("check its entries: %w", err)
	}
	return f, nil
}

// randomHex returns 8 random hexadecimal digits, so that the name a
// directory is moved aside to cannot be taken in advance.
func randomHex() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Log logs what PrepareStateDir saw and did: one line per action, a
// warning for what a local user may have caused (a directory moved aside
// or open to others), which also reaches the event log on Windows. A
// refusal is PrepareStateDir's error, which the caller logs.
func (r *StateDirReport) Log(log *slog.Logger) {
	if r == nil {
		return
	}
	for _, s := range r.Steps {
		d := s.Decision
		switch d.Action {
		case StateDirUse:
			log.Info("state directory checked: using it", "dir", r.Dir, "why", d.Reason)
		case StateDirCreate:
			if s.Raced {
				log.Warn("state directory appeared while the agent was creating it: looking at it again", "dir", r.Dir)
				continue
			}
			log.Info("state directory created, restricted to "+restrictedTo, "dir", r.Dir)
		case StateDirRestrict:
			if len(s.Facts.Others) == 0 {
				log.Info("state directory restricted to "+restrictedTo, "dir", r.Dir, "why", d.Reason)
				continue
			}
			log.Warn("state directory was open to others: restricted to "+restrictedTo+
				"; its entries are checked next", "dir", r.Dir, "why", d.Reason, "owner", s.Facts.Owner)
		case StateDirMoveAside:
			log.Warn("state directory not trusted: moved aside untouched and made anew; the agent starts without "+
				"what it held (identity, spool, config file): an administrator should look at it, and may copy back "+
				"what is theirs", "dir", r.Dir, "moved_to", s.MovedTo, "why", d.Reason)
		}
		// StateDirRefuse: PrepareStateDir's error says it; the caller logs
		// it.
	}
}

// readDirNames lists the names in dir.
func readDirNames(dir string) ([]string, error) {
	es, err := os.ReadDir(dir)
	names := make([]string, len(es))
	for i, e := range es {
		names[i] = e.Name()
	}
	return names, err
}

// InspectStateDir looks at dir as PrepareStateDir does first and returns
// what it saw and what it would do, changing nothing (the agent's
// check-state-dir -n).
func InspectStateDir(dir string) (StateDirStep, error) {
	dir = filepath.Clean(dir)
	f, err := observeStateDir(dir, platformStateDirOps())
	if err != nil {
		return StateDirStep{Facts: f}, fmt.Errorf("state directory %s: %w", dir, err)
	}
	return StateDirStep{Facts: f, Decision: DecideStateDir(f)}, nil
}
