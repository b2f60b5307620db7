package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/sessionaudit/sessionaudit/agent/filetrust"
)

// maxFileSize bounds the config file that FileLayer reads.
const maxFileSize = 1 << 20

// FileLayer is the local config file (format in the package comment).
type FileLayer struct {
	// Path is the file's path; DefaultFilePath() when empty.
	Path string
	// MustExist makes a missing file a Warning (for a path given on the
	// command line); otherwise a missing file is a layer without values.
	MustExist bool
}

// path returns the file's path.
func (f FileLayer) path() string {
	if f.Path == "" {
		return DefaultFilePath()
	}
	return f.Path
}

// Name returns "config file <path>".
func (f FileLayer) Name() string { return "config file " + f.path() }

// Read reads and parses the file. A line that cannot be parsed is a Warning
// naming the file and the line; the other lines still count. A file that
// someone other than a trusted owner may have written is not read at all
// (CheckFileOwner), and the Warning says why.
func (f FileLayer) Read() (map[string]Value, []Warning) {
	p := f.path()
	file, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !f.MustExist {
			return nil, nil
		}
		return nil, []Warning{{Layer: f.Name(), Where: "config file " + p, Err: err}}
	}
	defer file.Close()
	// The facts of the file opened, whatever its name points to now.
	facts, err := filetrust.Stat(file)
	if err == nil {
		err = CheckFileOwner(facts)
	}
	if err != nil {
		return nil, []Warning{{Layer: f.Name(), Where: "config file " + p, Err: err}}
	}
	data, err := io.ReadAll(io.LimitReader(file, maxFileSize+1))
	if err != nil {
		return nil, []Warning{{Layer: f.Name(), Where: "config file " + p, Err: err}}
	}
	if len(data) > maxFileSize {
		return nil, []Warning{{Layer: f.Name(), Where: "config file " + p,
			Err: fmt.Errorf("larger than %d bytes, not read", maxFileSize)}}
	}
	return ParseFile(bytes.NewReader(data), f.Name(), "config file "+p)
}

// CheckFileOwner returns why the config file described by facts must not
// be read, or nil. The agent, as SYSTEM, would otherwise take its
// collector, CA and secret from a file that a local user wrote: on Windows
// the default file is in %ProgramData%\sessionaudit, where users could
// create files before the agent restricted it. The file must be owned by
// SYSTEM, Administrators or the agent's account (elsewhere root or the
// agent's user), and nobody else may change it (write, append, change its
// DACL or owner). Others may read it: the ACL that keeps a secret in it
// private is the administrator's to set. Under Wine, whose ACLs are
// emulated (filetrust.Facts.Emulated), only the owner is checked.
func CheckFileOwner(facts filetrust.Facts) error {
	switch {
	case !facts.OwnerTrusted:
		return fmt.Errorf("owned by %s, not by %s: not read, since another local user may have written it "+
			"(make an administrator its owner, e.g. icacls FILE /setowner *S-1-5-32-544, or chown root)",
			facts.Owner, filetrust.TrustedOwnersText)
	case len(facts.OthersWrite) > 0 && !facts.Emulated:
		return fmt.Errorf("%s may change it: not read (remove their write access)",
			strings.Join(facts.OthersWrite, ", "))
	}
	return nil
}

// ParseFile parses a config file read from r. layer names the layer in
// warnings and where names the file in messages ("config file /x").
func ParseFile(r io.Reader, layer, where string) (map[string]Value, []Warning) {
	values := make(map[string]Value)
	firstLine := make(map[string]int) // lower-case name → line it was first set on
	var warnings []Warning
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxFileSize)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if n == 1 {
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		at := fmt.Sprintf("%s, line %d", where, n)
		name, value, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			// The line is not shown: it may hold a secret.
			warnings = append(warnings, Warning{Layer: layer, Where: at,
				Err: errors.New("want Name = value (a setting per line; # starts a comment)")})
			continue
		}
		key := strings.ToLower(name)
		if prev, dup := firstLine[key]; dup {
			warnings = append(warnings, Warning{Setting: name, Layer: layer, Where: at + ": " + name,
				Err: fmt.Errorf("set again (first on line %d); this value is used", prev)})
			for k := range values { // drop the earlier spelling
				if strings.EqualFold(k, name) {
					delete(values, k)
				}
			}
		} else {
			firstLine[key] = n
		}
		values[name] = Value{Raw: strings.TrimSpace(value), Where: at + ": " + name}
	}
	if err := sc.Err(); err != nil {
		warnings = append(warnings, Warning{Layer: layer, Where: where, Err: fmt.Errorf("read: %w", err)})
	}
	return values, warnings
}
