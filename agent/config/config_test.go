package config

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/source"
)

// samples holds, per setting, three distinct valid values as a layer writes
// them, and one invalid value with the message it gives.
var samples = map[string]struct {
	valid      [3]string
	invalid    string
	invalidErr string
}{
	CollectorAddress:      {[3]string{"a.contoso.com:8443", "b.contoso.com:8443", "10.0.0.1:443"}, "collector.contoso.com", "want host:port"},
	EnrollmentSecret:      {[3]string{"s3cret-a", "s3cret-b", "s3cret-c"}, "bad\x01secret", "control characters"},
	CACertificate:         {[3]string{"/etc/sa/a.pem", "/etc/sa/b.pem", "/etc/sa/c.pem"}, "ca.pem", "absolute path"},
	CAPin:                 {[3]string{strings.Repeat("a", 64), strings.Repeat("b", 64), "sha256:" + strings.Repeat("c", 64)}, "abc", "64 hexadecimal digits"},
	PollIntervalSeconds:   {[3]string{"30", "40", "50"}, "0", "must be between 10 and 3600"},
	ResyncIntervalMinutes: {[3]string{"10", "20", "30"}, "10081", "must be between 10 and 10080"},
	SpoolMaxMB:            {[3]string{"1", "2", "3"}, "ten", "not a whole number"},
	LogLevel:              {[3]string{"debug", "warn", "error"}, "verbose", "want debug, info, warn or error"},
	CollectLogonSessions:  {[3]string{"0", "1", "0"}, "2", "must be 0 or 1"},
	CollectServerSessions: {[3]string{"0", "1", "0"}, "yes", "not a whole number"},
	QueryTimeoutSeconds:   {[3]string{"5", "30", "600"}, "601", "must be between 5 and 600"},
}

// policy returns a policy layer holding values: DWORD settings as REG_DWORD
// when they are numbers, the others as REG_SZ.
func policy(values map[string]string) *RegistryLayer {
	regs := make(map[string]RegistryValue, len(values))
	for name, v := range values {
		d, _ := Lookup(name)
		var n uint64
		if d != nil && d.Type == DWORD {
			if _, err := fmt.Sscan(v, &n); err == nil {
				regs[name] = RegistryValue{Type: RegDWORD, Number: n}
				continue
			}
		}
		regs[name] = RegistryValue{Type: RegSZ, String: v}
	}
	return PolicyLayerFromValues(regs)
}

func file(values map[string]string) Layer {
	var b strings.Builder
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range values {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s = %s\n", name, values[name])
	}
	return parsedFile{b.String()}
}

// parsedFile is a FileLayer without a file.
type parsedFile struct{ text string }

func (parsedFile) Name() string { return "config file /etc/sessionaudit/agent.conf" }
func (f parsedFile) Read() (map[string]Value, []Warning) {
	return ParseFile(strings.NewReader(f.text), f.Name(), "config file /etc/sessionaudit/agent.conf")
}

func flags(t *testing.T, values map[string]string) Layer {
	t.Helper()
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	l := RegisterFlags(fs)
	var args []string
	for name, v := range values {
		d, _ := Lookup(name)
		args = append(args, "-"+d.Flag+"="+v)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDefinitions(t *testing.T) {
	seenName, seenFlag := map[string]bool{}, map[string]bool{}
	for _, d := range Definitions {
		if seenName[strings.ToLower(d.Name)] || seenFlag[d.Flag] {
			t.Errorf("%s: name or flag %q used twice", d.Name, d.Flag)
		}
		seenName[strings.ToLower(d.Name)], seenFlag[d.Flag] = true, true
		if d.Help == "" || d.Flag == "" || (d.Type != String && d.Type != DWORD) {
			t.Errorf("%s: incomplete definition", d.Name)
		}
		if d.Type == DWORD && (d.Min > d.Max || d.setNumber == nil) || d.Type == String && d.setString == nil || d.get == nil {
			t.Errorf("%s: bounds or functions wrong", d.Name)
		}
		if _, ok := samples[d.Name]; !ok {
			t.Errorf("%s: no samples in this test", d.Name)
		}
	}
	s := Defaults()
	for _, d := range Definitions {
		if got := s.Value(d.Name); got != d.Default {
			t.Errorf("%s: default reads back as %q, want %q", d.Name, got, d.Default)
		}
		if s.Origin(d.Name) != OriginDefault {
			t.Errorf("%s: origin %q", d.Name, s.Origin(d.Name))
		}
	}
	if s.PollInterval != time.Minute || s.ResyncInterval != 24*time.Hour || s.SpoolMaxBytes != 64<<20 ||
		s.LogLevel != slog.LevelInfo || !s.CollectLogonSessions || !s.CollectServerSessions || s.QueryTimeout != time.Minute {
		t.Errorf("defaults %+v", s)
	}
}

// TestPrecedence checks, for every setting, policy > file > flags > default.
func TestPrecedence(t *testing.T) {
	for _, d := range Definitions {
		v := samples[d.Name].valid
		tests := []struct {
			layers     []Layer
			want, from string
		}{
			{[]Layer{policy(map[string]string{d.Name: v[0]}), file(map[string]string{d.Name: v[1]}), flags(t, map[string]string{d.Name: v[2]})}, v[0], "Group Policy"},
			{[]Layer{policy(nil), file(map[string]string{d.Name: v[1]}), flags(t, map[string]string{d.Name: v[2]})}, v[1], "config file /etc/sessionaudit/agent.conf"},
			{[]Layer{policy(nil), file(nil), flags(t, map[string]string{d.Name: v[2]})}, v[2], "flags"},
			{[]Layer{policy(nil), file(nil), flags(t, nil)}, d.Default, OriginDefault},
		}
		for i, tt := range tests {
			s, ws := Load(tt.layers...)
			if len(ws) != 0 {
				t.Errorf("%s case %d: warnings %v", d.Name, i, ws)
			}
			want := tt.want
			if want != "" && d.Type == String { // normalised forms
				var probe Settings
				_ = d.set(&probe, want)
				want = d.get(&probe)
			}
			if got := d.get(&s); got != want || s.Origin(d.Name) != tt.from {
				t.Errorf("%s case %d: %q from %q, want %q from %q", d.Name, i, got, s.Origin(d.Name), want, tt.from)
			}
		}
	}
}

// TestInvalidFallsThrough: an invalid value in a layer is a warning naming
// setting, layer and value, and the next layer's value is used.
func TestInvalidFallsThrough(t *testing.T) {
	for _, d := range Definitions {
		sm := samples[d.Name]
		s, ws := Load(
			policy(map[string]string{d.Name: sm.invalid}),
			file(map[string]string{d.Name: sm.valid[1]}),
		)
		if s.Origin(d.Name) == "Group Policy" || s.Origin(d.Name) != "config file /etc/sessionaudit/agent.conf" {
			t.Errorf("%s: origin %q, want the config file", d.Name, s.Origin(d.Name))
		}
		if len(ws) != 1 {
			t.Fatalf("%s: warnings %v, want 1", d.Name, ws)
		}
		w := ws[0]
		shown := sm.invalid
		if d.Secret {
			shown = "[redacted]"
		}
		want := "policy value " + d.Name + "=" + shown + ": "
		if w.Setting != d.Name || w.Layer != "Group Policy" || !strings.HasPrefix(w.String(), want) || !strings.Contains(w.String(), sm.invalidErr) {
			t.Errorf("%s: warning %q (setting %q layer %q), want %q…%q", d.Name, w, w.Setting, w.Layer, want, sm.invalidErr)
		}
	}

	// Invalid in every layer: the default, one warning per layer.
	s, ws := Load(
		policy(map[string]string{PollIntervalSeconds: "0"}),
		file(map[string]string{PollIntervalSeconds: "5"}),
		flags(t, map[string]string{PollIntervalSeconds: "-1"}),
	)
	if s.PollInterval != time.Minute || s.Origin(PollIntervalSeconds) != OriginDefault {
		t.Errorf("poll interval %v from %s, want the default", s.PollInterval, s.Origin(PollIntervalSeconds))
	}
	var got []string
	for _, w := range ws {
		got = append(got, w.String())
	}
	want := []string{
		"policy value PollIntervalSeconds=0: must be between 10 and 3600",
		"config file /etc/sessionaudit/agent.conf, line 1: PollIntervalSeconds=5: must be between 10 and 3600",
		"flag -poll-interval-seconds=-1: not a whole number",
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEmptyValueIsUnset(t *testing.T) {
	s, ws := Load(policy(map[string]string{CollectorAddress: " "}), file(map[string]string{CollectorAddress: "c:1"}))
	if len(ws) != 0 || s.CollectorAddress != "c:1" {
		t.Errorf("got %q, warnings %v", s.CollectorAddress, ws)
	}
}

func TestPolicyRegistryTypes(t *testing.T) {
	p := PolicyLayerFromValues(map[string]RegistryValue{
		PollIntervalSeconds:   {Type: RegSZ, String: "30"}, // a string holding a number is accepted
		SpoolMaxMB:            {Type: RegBinary},
		CollectServerSessions: {Type: RegQWORD, Number: 0},
		LogLevel:              {Type: RegExpandSZ, String: "debug"},
		CollectorAddress:      {Err: fmt.Errorf("access denied")},
		"PollIntervalSecs":    {Type: RegDWORD, Number: 5},
	})
	s, ws := Load(p)
	if s.PollInterval != 30*time.Second || s.CollectServerSessions || s.LogLevel != slog.LevelDebug || s.SpoolMaxBytes != 64<<20 {
		t.Errorf("settings %v", s)
	}
	var got []string
	for _, w := range ws {
		got = append(got, w.String())
	}
	want := []string{
		"policy value CollectorAddress: cannot read: access denied",
		"policy value SpoolMaxMB: registry type REG_BINARY: want REG_SZ or REG_DWORD",
		"policy value PollIntervalSecs: no such setting (known: " + strings.Join(names(), ", ") + ")",
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPolicyKeyError(t *testing.T) {
	p := newPolicyLayer(func() (map[string]RegistryValue, error) { return nil, fmt.Errorf("open: access denied") })
	_, ws := Load(p)
	if len(ws) != 1 || ws[0].String() != `policy key HKLM\SOFTWARE\Policies\sessionaudit\Agent: open: access denied` {
		t.Errorf("warnings %v", ws)
	}
}

func TestParseFile(t *testing.T) {
	text := "\uFEFF# agent settings\r\n" +
		"CollectorAddress = collector.contoso.com:8443\r\n" +
		"this line is wrong\n" +
		"\n" +
		"; another comment\n" +
		"pollintervalseconds=30\n" +
		"EnrollmentSecret = a=b#c\n" +
		"PollIntervalSeconds = 45\n" +
		"= 5\n"
	values, ws := ParseFile(strings.NewReader(text), "config file /x", "config file /x")
	var got []string
	for _, w := range ws {
		got = append(got, w.String())
	}
	want := []string{
		"config file /x, line 3: want Name = value (a setting per line; # starts a comment)",
		"config file /x, line 8: PollIntervalSeconds: set again (first on line 6); this value is used",
		"config file /x, line 9: want Name = value (a setting per line; # starts a comment)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("warnings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if v := values["CollectorAddress"]; v.Raw != "collector.contoso.com:8443" || v.Where != "config file /x, line 2: CollectorAddress" {
		t.Errorf("CollectorAddress = %+v", v)
	}
	if v := values["EnrollmentSecret"]; v.Raw != "a=b#c" {
		t.Errorf("EnrollmentSecret = %q, want the rest of the line", v.Raw)
	}
	if _, ok := values["pollintervalseconds"]; ok || values["PollIntervalSeconds"].Raw != "45" {
		t.Errorf("values %v: want the later PollIntervalSeconds only", values)
	}
}

func TestFileLayer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.conf")
	if _, ws := (FileLayer{Path: path}).Read(); len(ws) != 0 {
		t.Errorf("missing optional file: warnings %v", ws)
	}
	if _, ws := (FileLayer{Path: path, MustExist: true}).Read(); len(ws) != 1 || !strings.Contains(ws[0].String(), "config file "+path) {
		t.Errorf("missing required file: warnings %v", ws)
	}
	if err := os.WriteFile(path, []byte("SpoolMaxMB = 128\nLogLevel = sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, ws := Load(FileLayer{Path: path})
	if s.SpoolMaxBytes != 128<<20 || s.Origin(SpoolMaxMB) != "config file "+path {
		t.Errorf("spool %d from %s", s.SpoolMaxBytes, s.Origin(SpoolMaxMB))
	}
	if len(ws) != 1 || ws[0].String() != "config file "+path+", line 2: LogLevel=sometimes: want debug, info, warn or error" {
		t.Errorf("warnings %v", ws)
	}
	if (FileLayer{}).Name() != "config file "+DefaultFilePath() {
		t.Errorf("default name %q", FileLayer{}.Name())
	}
}

func TestFlagsOnlySetOnesCount(t *testing.T) {
	l := flags(t, map[string]string{LogLevel: "debug"})
	values, _ := l.Read()
	if len(values) != 1 || values[LogLevel].Raw != "debug" || values[LogLevel].Where != "flag -log-level" {
		t.Errorf("values %v", values)
	}
}

func TestSecretNeverShown(t *testing.T) {
	const secret = "hunter2-very-secret"
	s, ws := Load(policy(map[string]string{EnrollmentSecret: secret, CollectorAddress: "c.contoso.com:443"}))
	if len(ws) != 0 || s.EnrollmentSecret.Reveal() != secret || !s.EnrollmentSecret.IsSet() {
		t.Fatalf("secret not loaded: %v", ws)
	}
	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s"} {
		fmt.Fprintf(&out, verb+"\n", s.EnrollmentSecret)
		fmt.Fprintf(&out, verb+"\n", s)
		fmt.Fprintf(&out, verb+"\n", &s)
	}
	fmt.Fprintln(&out, s.Describe(), s.Value(EnrollmentSecret))
	slog.New(slog.NewTextHandler(&out, nil)).Info("settings", "settings", s, "secret", s.EnrollmentSecret)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("settings", "settings", s, "secret", s.EnrollmentSecret)
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(j)
	if strings.Contains(out.String(), secret) || strings.Contains(out.String(), fmt.Sprintf("%x", secret)) {
		t.Errorf("the secret leaked:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "EnrollmentSecret=[redacted] (from Group Policy)") {
		t.Errorf("no redacted line in:\n%s", out.String())
	}

	// An invalid secret is not shown in its warning, nor a misspelt one.
	_, ws = Load(MapLayer{LayerName: "test", Values: map[string]string{EnrollmentSecret: secret + "\x00", "EnrolmentSecret": secret}})
	for _, w := range ws {
		if strings.Contains(w.String(), secret) {
			t.Errorf("warning shows the secret: %s", w)
		}
	}
	if len(ws) != 2 {
		t.Errorf("warnings %v, want 2", ws)
	}
	if (Secret{}).String() != "" {
		t.Error("an empty secret should print as empty")
	}
}

func TestDescribe(t *testing.T) {
	s, _ := Load(policy(map[string]string{PollIntervalSeconds: "30"}))
	lines := s.Describe()
	if !slices.Contains(lines, "PollIntervalSeconds=30 (from Group Policy)") || !slices.Contains(lines, "SpoolMaxMB=64 (from default)") {
		t.Errorf("lines %v", lines)
	}
}

func TestDisabledClasses(t *testing.T) {
	s, _ := Load(MapLayer{LayerName: "test", Values: map[string]string{CollectLogonSessions: "false", CollectServerSessions: "true"}})
	if got := s.DisabledClasses(); !slices.Equal(got, []string{source.ClassLogonSession, source.ClassLoggedOnUser}) {
		t.Errorf("disabled %v", got)
	}
	if got := Defaults().DisabledClasses(); len(got) != 0 {
		t.Errorf("defaults disable %v", got)
	}
}

// fakeLayer is a Layer whose values a test changes between reloads. Each
// Read sends on reads once it has taken the values.
type fakeLayer struct {
	mu     sync.Mutex
	values map[string]string
	reads  chan struct{}
}

func (f *fakeLayer) Name() string { return "Group Policy" }

func (f *fakeLayer) Read() (map[string]Value, []Warning) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads <- struct{}{}
	return MapLayer{LayerName: "policy value", Values: f.values}.Read()
}

func (f *fakeLayer) set(name, v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.values = map[string]string{name: v}
}

func TestWatcher(t *testing.T) {
	layer := &fakeLayer{values: map[string]string{PollIntervalSeconds: "30"}, reads: make(chan struct{}, 100)}
	w := NewWatcher(layer, file(map[string]string{SpoolMaxMB: "8"}))
	<-layer.reads
	if s, _ := w.Current(); s.PollInterval != 30*time.Second {
		t.Fatalf("initial poll interval %v", s.PollInterval)
	}
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx, ticks) }()

	// tick hands the watcher a tick and waits until it has read the layer,
	// so that the test may change the layer. The send succeeds only when the
	// watcher has finished with the previous tick (and delivered its
	// update, if any).
	tick := func() {
		t.Helper()
		select {
		case ticks <- time.Time{}:
		case <-time.After(5 * time.Second):
			t.Fatal("watcher did not take the tick: it is blocked delivering an update nobody expected")
		}
		<-layer.reads
	}
	next := func() Update {
		t.Helper()
		select {
		case u := <-w.Updates():
			return u
		case <-time.After(5 * time.Second):
			t.Fatal("no update")
		}
		return Update{}
	}

	// Unchanged: nothing is delivered (the second tick would block).
	tick()
	tick()

	// A policy change is delivered, with its origin.
	layer.set(PollIntervalSeconds, "120")
	tick()
	u := next()
	if u.Settings.PollInterval != 2*time.Minute || u.Settings.Origin(PollIntervalSeconds) != "Group Policy" || len(u.Warnings) != 0 {
		t.Errorf("update %v %v", u.Settings, u.Warnings)
	}
	if s, _ := w.Current(); !s.Equal(u.Settings) {
		t.Error("Current does not match the update")
	}
	tick()

	// The policy value removed: the default comes back.
	layer.set(LogLevel, "")
	tick()
	if u = next(); u.Settings.PollInterval != time.Minute || u.Settings.Origin(PollIntervalSeconds) != OriginDefault {
		t.Errorf("after removal: %v from %s", u.Settings.PollInterval, u.Settings.Origin(PollIntervalSeconds))
	}

	// An invalid value leaves the settings as they were but is delivered
	// for its warning, once.
	layer.set(PollIntervalSeconds, "0")
	tick()
	if u = next(); u.Settings.PollInterval != time.Minute || len(u.Warnings) != 1 {
		t.Errorf("invalid value: %v, warnings %v", u.Settings.PollInterval, u.Warnings)
	}
	tick()
	tick()

	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Run returned %v", err)
	}
	if _, open := <-w.Updates(); open {
		t.Error("updates not closed after Run")
	}
	if SpoolMax := u.Settings.SpoolMaxBytes; SpoolMax != 8<<20 {
		t.Errorf("lower layer lost: spool %d", SpoolMax)
	}
}

// TestInstallerLayer: the installer's settings (the MSI's registry key)
// rank below Group Policy and the config file and above the flags, and
// their warnings name the installer's key.
func TestInstallerLayer(t *testing.T) {
	installer := InstallerLayerFromValues(map[string]RegistryValue{
		CollectorAddress:    {Type: RegSZ, String: "msi.contoso.com:8443"},
		PollIntervalSeconds: {Type: RegDWORD, Number: 20},
		LogLevel:            {Type: RegSZ, String: "debug"},
		SpoolMaxMB:          {Type: RegDWORD, Number: 0},
	})
	s, ws := Load(
		policy(map[string]string{PollIntervalSeconds: "30"}),
		file(map[string]string{LogLevel: "warn"}),
		installer,
		flags(t, map[string]string{CollectorAddress: "flag.contoso.com:8443", SpoolMaxMB: "8"}),
	)
	for name, want := range map[string]string{
		PollIntervalSeconds: "30 from Group Policy",
		LogLevel:            "warn from config file /etc/sessionaudit/agent.conf",
		CollectorAddress:    "msi.contoso.com:8443 from installer settings",
		SpoolMaxMB:          "8 from flags",
	} {
		if got := s.Value(name) + " from " + s.Origin(name); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	if len(ws) != 1 || ws[0].String() != "installer value SpoolMaxMB=0: must be between 1 and 4096" || ws[0].Layer != OriginInstaller {
		t.Errorf("warnings %v", ws)
	}
	broken := newInstallerLayer(func() (map[string]RegistryValue, error) { return nil, fmt.Errorf("open: access denied") })
	if _, ws := Load(broken); len(ws) != 1 || ws[0].String() != `installer key HKLM\SOFTWARE\sessionaudit\Agent: open: access denied` {
		t.Errorf("warnings %v", ws)
	}
}
