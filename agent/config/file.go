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
// naming the file and the line; the other lines still count.
func (f FileLayer) Read() (map[string]Value, []Warning) {
	p := f.path()
	data, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !f.MustExist {
			return nil, nil
		}
		return nil, []Warning{{Layer: f.Name(), Where: "config file " + p, Err: err}}
	}
	if len(data) > maxFileSize {
		return nil, []Warning{{Layer: f.Name(), Where: "config file " + p,
			Err: fmt.Errorf("%d bytes: larger than %d, not read", len(data), maxFileSize)}}
	}
	return ParseFile(bytes.NewReader(data), f.Name(), "config file "+p)
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
