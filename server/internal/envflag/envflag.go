// Package envflag is a flag.FlagSet whose flags may also be set by
// environment variables, with the command line first: the flags of the
// collector's and the analysts' commands (sessionaudit-collector,
// sessionaudit).
package envflag

import (
	"flag"
	"fmt"
	"io"
	"time"
)

// Set is a flag set whose flags may each name an environment variable.
type Set struct {
	*flag.FlagSet
	env map[string]string // flag name -> environment variable
	// Declared, when not nil, is called with each flag's name as it is
	// declared (for help that groups flags under headings).
	Declared func(name string)
}

// New returns an empty Set that reports errors to its caller, not to
// stderr.
func New(name string) *Set {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &Set{FlagSet: fs, env: map[string]string{}}
}

// String declares a string flag that the environment variable env (when
// not "") may set.
func (s *Set) String(p *string, name, env, def, usage string) {
	s.StringVar(p, name, def, usage)
	s.bind(name, env)
}

// Duration declares a duration flag; see String.
func (s *Set) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	s.DurationVar(p, name, def, usage)
	s.bind(name, env)
}

// Int declares an integer flag; see String.
func (s *Set) Int(p *int, name, env string, def int, usage string) {
	s.IntVar(p, name, def, usage)
	s.bind(name, env)
}

// Bool declares a boolean flag; see String.
func (s *Set) Bool(p *bool, name, env string, def bool, usage string) {
	s.BoolVar(p, name, def, usage)
	s.bind(name, env)
}

// Value declares a flag of any flag.Value; see String.
func (s *Set) Value(v flag.Value, name, env, usage string) {
	s.Var(v, name, usage)
	s.bind(name, env)
}

func (s *Set) bind(name, env string) {
	if env != "" {
		s.env[name] = env
	}
	if s.Declared != nil {
		s.Declared(name)
	}
}

// Env returns the environment variable of the flag name, "" for none.
func (s *Set) Env(name string) string { return s.env[name] }

// Parse reads args, then, for each flag not given on the command line, its
// environment variable through lookup (os.LookupEnv, or a map in tests).
// It returns the arguments after the flags. The error is flag.ErrHelp for
// -h or --help, and otherwise says what was wrong, naming the flag or the
// variable: a usage error.
func (s *Set) Parse(args []string, lookup func(string) (string, bool)) ([]string, error) {
	if err := s.FlagSet.Parse(args); err != nil {
		return nil, err
	}
	given := map[string]bool{}
	s.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for name, variable := range s.env {
		v, ok := lookup(variable)
		if !ok || given[name] {
			continue
		}
		if err := s.Set(name, v); err != nil {
			return nil, fmt.Errorf("environment variable %s=%q (for --%s): %v", variable, v, name, err)
		}
	}
	return s.Args(), nil
}
