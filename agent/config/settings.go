package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sessionaudit/sessionaudit/agent/source"
)

// Setting names: the registry value names under PolicyKey, and the keys of
// the config file.
const (
	CollectorAddress      = "CollectorAddress"
	EnrollmentSecret      = "EnrollmentSecret"
	CACertificate         = "CACertificate"
	CAPin                 = "CAPin"
	PollIntervalSeconds   = "PollIntervalSeconds"
	ResyncIntervalMinutes = "ResyncIntervalMinutes"
	SpoolMaxMB            = "SpoolMaxMB"
	LogLevel              = "LogLevel"
	CollectLogonSessions  = "CollectLogonSessions"
	CollectServerSessions = "CollectServerSessions"
	QueryTimeoutSeconds   = "QueryTimeoutSeconds"
)

// OriginDefault is the Origin of a setting that no layer set.
const OriginDefault = "default"

// Type is the registry type of a setting's policy value.
type Type int

// The types.
const (
	// String is REG_SZ (REG_EXPAND_SZ is also read, and expanded).
	String Type = iota + 1
	// DWORD is REG_DWORD: a decimal number in the config file and flags.
	DWORD
)

// String returns the registry name of the type: "REG_SZ" or "REG_DWORD".
func (t Type) String() string {
	switch t {
	case String:
		return "REG_SZ"
	case DWORD:
		return "REG_DWORD"
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// Definition describes one setting.
type Definition struct {
	// Name is the registry value name under PolicyKey and the config file
	// key.
	Name string
	// Flag is the command-line flag's name, without the dash.
	Flag string
	// Type is the registry type of the policy value.
	Type Type
	// Default is the value used when no layer sets one, written as in a
	// layer; "" means unset.
	Default string
	// Min and Max bound a DWORD setting, inclusive.
	Min, Max uint32
	// Secret marks a value that is never shown.
	Secret bool
	// Help says what the setting does, for flag usage, the ADMX explanation
	// and the documentation.
	Help string

	// setString stores a String value, after checking it.
	setString func(s *Settings, v string) error
	// setNumber stores a DWORD value already checked against Min and Max.
	setNumber func(s *Settings, n uint32)
	// get returns the setting's value in s, written as in a layer.
	get func(s *Settings) string
}

// Switch reports whether d is a 0/1 DWORD (a check box in the ADMX).
func (d *Definition) Switch() bool { return d.Type == DWORD && d.Min == 0 && d.Max == 1 }

// Definitions lists every setting, in the order they are documented.
var Definitions = []Definition{
	{
		Name: CollectorAddress, Flag: "collector-address", Type: String,
		Help: "Address of the collector, as host:port (e.g. collector.contoso.com:8443).",
		setString: func(s *Settings, v string) error {
			host, port, err := net.SplitHostPort(v)
			if err != nil || host == "" || strings.ContainsAny(host, "/ ") {
				return errors.New("want host:port, e.g. collector.contoso.com:8443")
			}
			if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
				return fmt.Errorf("port %q: want a number from 1 to 65535", port)
			}
			s.CollectorAddress = v
			return nil
		},
		get: func(s *Settings) string { return s.CollectorAddress },
	},
	{
		Name: EnrollmentSecret, Flag: "enrollment-secret", Type: String, Secret: true,
		Help: "Secret the agent presents once to enroll with the collector. A policy value " +
			"or flag can be read by every local user: use short-lived, use-limited secrets.",
		setString: func(s *Settings, v string) error {
			if len(v) > 1024 {
				return fmt.Errorf("%d bytes: at most 1024", len(v))
			}
			if strings.ContainsFunc(v, unicode.IsControl) {
				return errors.New("contains control characters")
			}
			s.EnrollmentSecret = Secret{v}
			return nil
		},
		get: func(s *Settings) string { return s.EnrollmentSecret.Reveal() },
	},
	{
		Name: CACertificate, Flag: "ca-certificate", Type: String,
		Help: "Absolute path of a PEM file of CA certificates that the collector's certificate " +
			"must chain to. The agent never trusts the system's roots: set this, CAPin, or both. Read when connecting.",
		setString: func(s *Settings, v string) error {
			if !filepath.IsAbs(v) {
				return errors.New("must be an absolute path to a PEM file")
			}
			s.CACertificate = filepath.Clean(v)
			return nil
		},
		get: func(s *Settings) string { return s.CACertificate },
	},
	{
		Name: CAPin, Flag: "ca-pin", Type: String,
		Help: "SHA-256 of the SubjectPublicKeyInfo of a certificate in the collector's chain, " +
			"64 hexadecimal digits (optionally prefixed sha256:); several, separated by commas, " +
			"allow a key rollover. When set, the connection also requires a pinned key.",
		setString: func(s *Settings, v string) error {
			var pins []string
			for p := range strings.SplitSeq(v, ",") {
				p = strings.ToLower(strings.TrimSpace(p))
				p = strings.TrimPrefix(p, "sha256:")
				if len(p) != 64 || strings.ContainsFunc(p, func(r rune) bool {
					return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f')
				}) {
					return fmt.Errorf("pin %q: want 64 hexadecimal digits (a SHA-256)", p)
				}
				if !slices.Contains(pins, p) {
					pins = append(pins, p)
				}
			}
			s.CAPins = pins
			return nil
		},
		get: func(s *Settings) string { return strings.Join(s.CAPins, ",") },
	},
	{
		Name: PollIntervalSeconds, Flag: "poll-interval-seconds", Type: DWORD, Default: "60", Min: 10, Max: 3600,
		Help:      "Seconds between two snapshots of the host's sessions.",
		setNumber: func(s *Settings, n uint32) { s.PollInterval = time.Duration(n) * time.Second },
		get:       func(s *Settings) string { return strconv.FormatInt(int64(s.PollInterval/time.Second), 10) },
	},
	{
		Name: ResyncIntervalMinutes, Flag: "resync-interval-minutes", Type: DWORD, Default: "1440", Min: 10, Max: 10080,
		Help:      "Minutes between two complete snapshots sent to the collector (changes are sent in between).",
		setNumber: func(s *Settings, n uint32) { s.ResyncInterval = time.Duration(n) * time.Minute },
		get:       func(s *Settings) string { return strconv.FormatInt(int64(s.ResyncInterval/time.Minute), 10) },
	},
	{
		Name: SpoolMaxMB, Flag: "spool-max-mb", Type: DWORD, Default: "64", Min: 1, Max: 4096,
		Help:      "Most megabytes (MiB) of reports kept on disk while the collector cannot be reached; the oldest are dropped beyond.",
		setNumber: func(s *Settings, n uint32) { s.SpoolMaxBytes = int64(n) << 20 },
		get:       func(s *Settings) string { return strconv.FormatInt(s.SpoolMaxBytes>>20, 10) },
	},
	{
		Name: LogLevel, Flag: "log-level", Type: String, Default: "info",
		Help: "Least severity logged: debug, info, warn or error.",
		setString: func(s *Settings, v string) error {
			switch strings.ToLower(v) {
			case "debug":
				s.LogLevel = slog.LevelDebug
			case "info":
				s.LogLevel = slog.LevelInfo
			case "warn", "warning":
				s.LogLevel = slog.LevelWarn
			case "error":
				s.LogLevel = slog.LevelError
			default:
				return errors.New("want debug, info, warn or error")
			}
			return nil
		},
		get: func(s *Settings) string { return strings.ToLower(s.LogLevel.String()) },
	},
	{
		Name: CollectLogonSessions, Flag: "collect-logon-sessions", Type: DWORD, Default: "1", Min: 0, Max: 1,
		Help:      "1 to collect logon sessions and their accounts (Win32_LogonSession, Win32_LoggedOnUser), 0 not to.",
		setNumber: func(s *Settings, n uint32) { s.CollectLogonSessions = n == 1 },
		get:       func(s *Settings) string { return boolDigit(s.CollectLogonSessions) },
	},
	{
		Name: CollectServerSessions, Flag: "collect-server-sessions", Type: DWORD, Default: "1", Min: 0, Max: 1,
		Help:      "1 to collect SMB sessions opened to this host (Win32_ServerSession), 0 not to.",
		setNumber: func(s *Settings, n uint32) { s.CollectServerSessions = n == 1 },
		get:       func(s *Settings) string { return boolDigit(s.CollectServerSessions) },
	},
	{
		Name: QueryTimeoutSeconds, Flag: "query-timeout-seconds", Type: DWORD, Default: "60", Min: 5, Max: 600,
		Help: "Seconds one WMI query may take before its class is reported as TIMEOUT. WMI runs one query at a time: " +
			"a query still running after 3 of these deadlines is taken as hung, and the agent exits so that the " +
			"service restarts it.",
		setNumber: func(s *Settings, n uint32) { s.QueryTimeout = time.Duration(n) * time.Second },
		get:       func(s *Settings) string { return strconv.FormatInt(int64(s.QueryTimeout/time.Second), 10) },
	},
}

func boolDigit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Lookup returns the definition of the setting named name, without regard
// to case.
func Lookup(name string) (*Definition, bool) {
	for i := range Definitions {
		if strings.EqualFold(Definitions[i].Name, name) {
			return &Definitions[i], true
		}
	}
	return nil, false
}

// set checks raw, written as in a layer, and stores it in s.
func (d *Definition) set(s *Settings, raw string) error {
	raw = strings.TrimSpace(raw)
	if d.Type == String {
		return d.setString(s, raw)
	}
	if d.Switch() {
		switch strings.ToLower(raw) {
		case "true":
			raw = "1"
		case "false":
			raw = "0"
		}
	}
	n, err := strconv.ParseUint(raw, 10, 32)
	if err != nil {
		return errors.New("not a whole number")
	}
	if n < uint64(d.Min) || n > uint64(d.Max) {
		if d.Switch() {
			return errors.New("must be 0 or 1")
		}
		return fmt.Errorf("must be between %d and %d", d.Min, d.Max)
	}
	d.setNumber(s, uint32(n))
	return nil
}

// show returns raw as it may be printed: secrets are redacted.
func (d *Definition) show(raw string) string {
	if d.Secret {
		return Secret{raw}.String()
	}
	return raw
}

// Settings are the agent's resolved settings. Use Load to make them; the
// zero value is not valid. Settings are values: do not modify a Settings
// that others hold.
type Settings struct {
	// CollectorAddress is the collector's host:port; "" when not set.
	CollectorAddress string
	// EnrollmentSecret is the secret presented at enrollment; empty when
	// not set. See the package comment: policy values are not secret.
	EnrollmentSecret Secret
	// CACertificate is the path of a PEM file of CA certificates; "" means
	// none (then CAPins must be set: the uplink never trusts the system's
	// roots).
	CACertificate string
	// CAPins are the accepted SHA-256s of SubjectPublicKeyInfo, lower-case
	// hexadecimal; none means no pinning.
	CAPins []string
	// PollInterval is the time between snapshots.
	PollInterval time.Duration
	// ResyncInterval is the time between complete snapshots.
	ResyncInterval time.Duration
	// SpoolMaxBytes bounds the spool on disk.
	SpoolMaxBytes int64
	// LogLevel is the least level logged.
	LogLevel slog.Level
	// CollectLogonSessions turns on Win32_LogonSession and
	// Win32_LoggedOnUser.
	CollectLogonSessions bool
	// CollectServerSessions turns on Win32_ServerSession.
	CollectServerSessions bool
	// QueryTimeout is the deadline of one WMI query.
	QueryTimeout time.Duration

	// origin maps each setting's name to the layer it came from.
	origin map[string]string
}

// Defaults returns the settings that no layer changed.
func Defaults() Settings {
	s := Settings{origin: make(map[string]string, len(Definitions))}
	for i := range Definitions {
		d := &Definitions[i]
		if d.Default != "" {
			if err := d.set(&s, d.Default); err != nil {
				panic(fmt.Sprintf("config: default of %s: %v", d.Name, err))
			}
		}
		s.origin[d.Name] = OriginDefault
	}
	return s
}

// Origin returns the name of the layer the setting named name came from
// (e.g. "Group Policy"), or OriginDefault.
func (s Settings) Origin(name string) string {
	if d, ok := Lookup(name); ok {
		if o, ok := s.origin[d.Name]; ok {
			return o
		}
	}
	return OriginDefault
}

// Value returns the setting named name written as in a layer ("60" for
// PollIntervalSeconds), with a secret redacted; "" for an unknown or unset
// setting.
func (s Settings) Value(name string) string {
	d, ok := Lookup(name)
	if !ok {
		return ""
	}
	v := d.get(&s)
	if d.Secret && v != "" {
		return Secret{v}.String()
	}
	return v
}

// Describe returns one line per setting, "PollIntervalSeconds=60 (from
// Group Policy)", secrets redacted: what the agent logs at start and after
// a reload.
func (s Settings) Describe() []string {
	lines := make([]string, 0, len(Definitions))
	for _, d := range Definitions {
		lines = append(lines, fmt.Sprintf("%s=%s (from %s)", d.Name, s.Value(d.Name), s.Origin(d.Name)))
	}
	return lines
}

// LogValue logs the settings as a group, one attribute per setting whose
// value reads "60 (from Group Policy)"; secrets are redacted.
func (s Settings) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(Definitions))
	for _, d := range Definitions {
		attrs = append(attrs, slog.String(d.Name, s.Value(d.Name)+" (from "+s.Origin(d.Name)+")"))
	}
	return slog.GroupValue(attrs...)
}

// String returns Describe's lines joined by "; " (secrets redacted), so
// that a Settings printed by mistake does not leak the secret.
func (s Settings) String() string { return strings.Join(s.Describe(), "; ") }

// Equal reports whether s and t have the same values from the same layers.
func (s Settings) Equal(t Settings) bool {
	for _, d := range Definitions {
		if d.get(&s) != d.get(&t) || s.Origin(d.Name) != t.Origin(d.Name) {
			return false
		}
	}
	return true
}

// DisabledClasses returns the WMI classes the settings turn off, for
// wmi.Options.Disabled.
func (s Settings) DisabledClasses() []string {
	var out []string
	if !s.CollectLogonSessions {
		out = append(out, source.ClassLogonSession, source.ClassLoggedOnUser)
	}
	if !s.CollectServerSessions {
		out = append(out, source.ClassServerSession)
	}
	return out
}

// Secret is a string that is never printed: every fmt verb, slog and JSON
// show "[redacted]" (or "" when it is empty). Reveal returns the value.
type Secret struct{ value string }

// NewSecret returns a Secret holding v.
func NewSecret(v string) Secret { return Secret{v} }

// Reveal returns the secret's value. Call it only to use the value, never
// to log it.
func (s Secret) Reveal() string { return s.value }

// IsSet reports whether the secret is not empty.
func (s Secret) IsSet() bool { return s.value != "" }

// String returns "[redacted]", or "" when the secret is empty.
func (s Secret) String() string {
	if s.value == "" {
		return ""
	}
	return "[redacted]"
}

// Format writes String for every verb, so that no verb (%x, %d, %#v)
// prints the value.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(s.String())) }

// LogValue logs String.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText marshals String, for JSON and other encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
