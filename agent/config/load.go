package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Layer is one source of settings: Group Policy, the config file, flags.
type Layer interface {
	// Name names the layer for people, as Settings.Origin reports it:
	// "Group Policy", "config file /etc/sessionaudit/agent.conf", "flags".
	Name() string
	// Read reads the layer now and returns its values by setting name (as
	// written in the layer; Load matches names without regard to case),
	// and the problems it met, for example a line it could not parse. A
	// layer that does not exist (no policy key, no file) has no values and
	// is not a problem.
	Read() (map[string]Value, []Warning)
}

// Value is one raw value of a layer.
type Value struct {
	// Raw is the value as written in the layer (a DWORD in decimal).
	Raw string
	// Where says where it was read, for messages, naming the setting as
	// written: "policy value PollIntervalSeconds", "config file
	// /etc/sessionaudit/agent.conf, line 3: PollIntervalSeconds", "flag
	// -poll-interval-seconds".
	Where string
}

// Warning is a problem with one layer's value, or with a whole layer. The
// agent logs it and goes on with the next layer's value or the default.
type Warning struct {
	// Setting is the setting's name, or "" for a problem with the layer
	// itself.
	Setting string
	// Layer is the layer's name.
	Layer string
	// Where is the Value's Where, or the place of a layer problem.
	Where string
	// Value is the raw value, redacted for a secret; "" for a layer problem
	// or an unknown setting (whose value might be a misspelt secret).
	Value string
	// Err says what is wrong.
	Err error
}

// String returns "policy value PollIntervalSeconds=0: must be between 10
// and 3600" (a value) or "config file /x, line 4: want Name=value" (a layer
// problem, or a value not shown).
func (w Warning) String() string {
	if w.Value == "" {
		return fmt.Sprintf("%s: %v", w.Where, w.Err)
	}
	return fmt.Sprintf("%s=%s: %v", w.Where, w.Value, w.Err)
}

// Load resolves every setting from layers, highest first: each takes the
// value of the first layer that sets it validly, else its default. A value
// that is not valid, or names no setting, is reported as a Warning and
// skipped; an empty value counts as not set. Warnings come in this order:
// for each layer, its own problems then its unknown names; then invalid
// values by setting (in the order of Definitions), highest layer first.
func Load(layers ...Layer) (Settings, []Warning) {
	s := Defaults()
	var warnings []Warning
	// values[i] holds layer i's values by canonical setting name.
	values := make([]map[string]Value, len(layers))
	for i, l := range layers {
		raw, ws := l.Read()
		warnings = append(warnings, ws...)
		values[i] = make(map[string]Value, len(raw))
		for _, name := range slices.Sorted(maps.Keys(raw)) {
			v := raw[name]
			d, ok := Lookup(name)
			if !ok {
				// The value is not shown: it may be a misspelt secret.
				warnings = append(warnings, Warning{
					Setting: name, Layer: l.Name(), Where: v.Where,
					Err: fmt.Errorf("no such setting (known: %s)", strings.Join(names(), ", ")),
				})
				continue
			}
			values[i][d.Name] = v
		}
	}
	for di := range Definitions {
		d := &Definitions[di]
		for i, l := range layers {
			v, ok := values[i][d.Name]
			if !ok || strings.TrimSpace(v.Raw) == "" {
				continue
			}
			if err := d.set(&s, v.Raw); err != nil {
				warnings = append(warnings, Warning{
					Setting: d.Name, Layer: l.Name(), Where: v.Where, Value: d.show(v.Raw), Err: err,
				})
				continue
			}
			s.origin[d.Name] = l.Name()
			break
		}
	}
	return s, warnings
}

// names returns the names of the settings.
func names() []string {
	out := make([]string, len(Definitions))
	for i, d := range Definitions {
		out[i] = d.Name
	}
	return out
}

// MapLayer is a Layer of fixed values, for tests and for settings that a
// program computes.
type MapLayer struct {
	// LayerName is returned by Name.
	LayerName string
	// Values are the raw values by setting name.
	Values map[string]string
}

// Name returns LayerName.
func (m MapLayer) Name() string { return m.LayerName }

// Read returns Values; each Value's Where is "<LayerName> <setting>".
func (m MapLayer) Read() (map[string]Value, []Warning) {
	out := make(map[string]Value, len(m.Values))
	for k, v := range m.Values {
		out[k] = Value{Raw: v, Where: m.LayerName + " " + k}
	}
	return out, nil
}
