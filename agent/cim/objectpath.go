package cim

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrPathSyntax is the sentinel a *PathError wraps.
var ErrPathSyntax = errors.New("malformed WMI object path")

// ObjectPath is a parsed WMI object path, such as the references that
// Win32_LoggedOnUser carries:
//
//	\\.\root\cimv2:Win32_Account.Domain="CONTOSO",Name="alice"
//	\\HOST01\root\cimv2:Win32_LogonSession.LogonId="999"
//	Win32_Account.Name="x",Domain="y"
//	Win32_OperatingSystem=@
type ObjectPath struct {
	// Host is the server part without the leading "\\" ("." for the local
	// host, or a machine name); empty when the path has none.
	Host string
	// Namespace is the namespace as given, e.g. `root\cimv2`; empty when the
	// path has none.
	Namespace string
	// Class is the class name, e.g. "Win32_Account".
	Class string
	// Keys maps each key property, with its name as given, to its value with
	// the escapes removed. Numbers and other unquoted values are kept as
	// their text. WMI key names are case-insensitive: look them up with Key.
	// Nil for a singleton or a class path.
	Keys map[string]string
	// Singleton is true for a path to a singleton instance ("Class=@").
	Singleton bool
}

// Key returns the value of the key property name, compared without regard
// to case as WMI does, and whether the path has it.
func (p ObjectPath) Key(name string) (string, bool) {
	if v, ok := p.Keys[name]; ok {
		return v, true
	}
	for k, v := range p.Keys {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// String returns the path in WMI's syntax, with the keys in a fixed order
// (sorted by name) and every value quoted, '"' and '\' escaped with '\'.
// ParseObjectPath of the result gives p back, key values as strings.
func (p ObjectPath) String() string {
	var b strings.Builder
	switch {
	case p.Host != "":
		b.WriteString(`\\`)
		b.WriteString(p.Host)
		b.WriteByte('\\')
		b.WriteString(p.Namespace)
		b.WriteByte(':')
	case p.Namespace != "":
		b.WriteString(p.Namespace)
		b.WriteByte(':')
	}
	b.WriteString(p.Class)
	if p.Singleton {
		b.WriteString("=@")
		return b.String()
	}
	names := make([]string, 0, len(p.Keys))
	for k := range p.Keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for i, k := range names {
		if i == 0 {
			b.WriteByte('.')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteString(`="`)
		v := p.Keys[k]
		for j := 0; j < len(v); j++ {
			if v[j] == '"' || v[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(v[j])
		}
		b.WriteByte('"')
	}
	return b.String()
}

// PathError is the error ParseObjectPath returns: it names the input and the
// byte offset where parsing failed.
type PathError struct {
	// Input is the path that failed to parse, in full.
	Input string
	// Offset is the byte offset in Input where the problem was found.
	Offset int
	// Detail says what was expected, for people.
	Detail string
}

// Error returns a message naming the input (shortened when very long), the
// offset and the problem.
func (e *PathError) Error() string {
	return fmt.Sprintf("cim: parse object path %s at offset %d: %s", quoteShort(e.Input), e.Offset, e.Detail)
}

// Unwrap returns ErrPathSyntax.
func (e *PathError) Unwrap() error { return ErrPathSyntax }

// ParseObjectPath parses a WMI object path:
//
//	[\\host\namespace:]Class[.Key=Value[,Key=Value]...]
//	[namespace:]Class[.Key=Value[,Key=Value]...]
//	[\\host\namespace:]Class=@
//
// '/' may stand for '\' in the server and namespace part. Keys may come in
// any order; a key name may appear once (case-insensitively). A value is
// either quoted ("..."), where \" stands for '"' and \\ for '\' (a '\'
// before any other character is kept as it is), or unquoted (a number, say:
// LogonId=999), running to the next ',' or the end. No whitespace is
// allowed outside quotes. A class path (no keys) is accepted.
func ParseObjectPath(s string) (ObjectPath, error) {
	p := pathParser{in: s}
	path, err := p.parse()
	if err != nil {
		return ObjectPath{}, err
	}
	return path, nil
}

type pathParser struct {
	in  string
	pos int
}

func (p *pathParser) fail(at int, format string, args ...any) error {
	return &PathError{Input: p.in, Offset: at, Detail: fmt.Sprintf(format, args...)}
}

func isSep(c byte) bool { return c == '\\' || c == '/' }

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func (p *pathParser) parse() (ObjectPath, error) {
	var out ObjectPath
	s := p.in
	if s == "" {
		return out, p.fail(0, "empty path")
	}
	if len(s) >= 2 && isSep(s[0]) && isSep(s[1]) {
		// \\host\namespace:
		p.pos = 2
		start := p.pos
		for p.pos < len(s) && !isSep(s[p.pos]) && s[p.pos] != ':' {
			p.pos++
		}
		if p.pos == start {
			return out, p.fail(start, "empty host after \\\\")
		}
		if p.pos == len(s) || !isSep(s[p.pos]) {
			return out, p.fail(p.pos, "expected '\\' and a namespace after host %q", s[start:p.pos])
		}
		out.Host = s[start:p.pos]
		p.pos++
		start = p.pos
		for p.pos < len(s) && s[p.pos] != ':' {
			if s[p.pos] == '"' || s[p.pos] == '=' {
				return out, p.fail(p.pos, "unexpected %q in namespace", s[p.pos])
			}
			p.pos++
		}
		if p.pos == len(s) {
			return out, p.fail(start, "namespace not followed by ':' and a class")
		}
		if p.pos == start {
			return out, p.fail(start, "empty namespace")
		}
		out.Namespace = s[start:p.pos]
		p.pos++
	} else {
		// Optional namespace: a ':' before the class's '.', '=' or the end.
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == '.' || c == '=' || c == '"' {
				break
			}
			if c == ':' {
				if i == 0 {
					return out, p.fail(0, "empty namespace before ':'")
				}
				out.Namespace = s[:i]
				p.pos = i + 1
				break
			}
		}
	}

	class, err := p.ident("class name")
	if err != nil {
		return out, err
	}
	out.Class = class
	if p.pos == len(s) {
		return out, nil // a class path
	}
	switch s[p.pos] {
	case '=':
		if s[p.pos:] != "=@" {
			return out, p.fail(p.pos, "expected \"=@\" (singleton) at the end, or '.' and keys")
		}
		out.Singleton = true
		return out, nil
	case '.':
		p.pos++
	default:
		return out, p.fail(p.pos, "unexpected %q after class name, want '.' and keys or \"=@\"", s[p.pos])
	}

	out.Keys = make(map[string]string)
	for {
		keyAt := p.pos
		name, err := p.ident("key name")
		if err != nil {
			return out, err
		}
		for k := range out.Keys {
			if strings.EqualFold(k, name) {
				return out, p.fail(keyAt, "key %q given twice", name)
			}
		}
		if p.pos == len(s) || s[p.pos] != '=' {
			return out, p.fail(p.pos, "expected '=' after key %q", name)
		}
		p.pos++
		value, err := p.value(name)
		if err != nil {
			return out, err
		}
		out.Keys[name] = value
		if p.pos == len(s) {
			return out, nil
		}
		if s[p.pos] != ',' {
			return out, p.fail(p.pos, "expected ',' or the end after the value of key %q", name)
		}
		p.pos++
	}
}

// ident reads an identifier (letters, digits, '_', not starting with a digit).
func (p *pathParser) ident(what string) (string, error) {
	s, start := p.in, p.pos
	if p.pos == len(s) || !isIdentStart(s[p.pos]) {
		if p.pos == len(s) {
			return "", p.fail(p.pos, "expected %s, found the end", what)
		}
		return "", p.fail(p.pos, "expected %s, found %q", what, s[p.pos])
	}
	for p.pos < len(s) && isIdent(s[p.pos]) {
		p.pos++
	}
	return s[start:p.pos], nil
}

// value reads a quoted or unquoted key value.
func (p *pathParser) value(key string) (string, error) {
	s, start := p.in, p.pos
	if p.pos == len(s) {
		return "", p.fail(p.pos, "missing value for key %q", key)
	}
	if s[p.pos] != '"' {
		for p.pos < len(s) && s[p.pos] != ',' {
			c := s[p.pos]
			if c == '"' || c == '=' || c == '\\' || c <= ' ' || c == 0x7f {
				return "", p.fail(p.pos, "unexpected %q in unquoted value of key %q", c, key)
			}
			p.pos++
		}
		if p.pos == start {
			return "", p.fail(start, "empty unquoted value for key %q", key)
		}
		return s[start:p.pos], nil
	}
	p.pos++
	var b strings.Builder
	for p.pos < len(s) {
		c := s[p.pos]
		switch {
		case c == '"':
			p.pos++
			return b.String(), nil
		case c == '\\' && p.pos+1 < len(s) && (s[p.pos+1] == '"' || s[p.pos+1] == '\\'):
			b.WriteByte(s[p.pos+1])
			p.pos += 2
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return "", p.fail(start, "unterminated quoted value for key %q", key)
}
