package config

import (
	"flag"
	"fmt"
)

// FlagLayer is the command-line layer: one string flag per setting, named
// by Definition.Flag. Only the flags given on the command line count.
type FlagLayer struct {
	fs    *flag.FlagSet
	flags map[string]string // flag name → setting name
}

// RegisterFlags defines the settings' flags on fs and returns their layer;
// read it after fs.Parse.
func RegisterFlags(fs *flag.FlagSet) *FlagLayer {
	l := &FlagLayer{fs: fs, flags: make(map[string]string, len(Definitions))}
	for _, d := range Definitions {
		usage := d.Help
		if d.Default != "" {
			usage += fmt.Sprintf(" Default %s.", d.Default)
		}
		usage += fmt.Sprintf(" Group Policy value %s, the config file and the installer's settings take precedence.", d.Name)
		if d.Secret {
			usage += " A command line can be read by every local user."
		}
		fs.String(d.Flag, "", usage)
		l.flags[d.Flag] = d.Name
	}
	return l
}

// Name returns "flags".
func (l *FlagLayer) Name() string { return "flags" }

// Read returns the values of the flags that were set.
func (l *FlagLayer) Read() (map[string]Value, []Warning) {
	values := make(map[string]Value)
	l.fs.Visit(func(f *flag.Flag) {
		if name, ok := l.flags[f.Name]; ok {
			values[name] = Value{Raw: f.Value.String(), Where: "flag -" + f.Name}
		}
	})
	return values, nil
}
