package envflag

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestPrecedence(t *testing.T) {
	env := map[string]string{"X_NAME": "from-env", "X_WAIT": "2m", "X_N": "7", "X_ON": "true"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var declared []string
	newSet := func() (*Set, *string, *time.Duration, *int, *bool) {
		s := New("test")
		s.Declared = func(name string) { declared = append(declared, name) }
		var name string
		var wait time.Duration
		var n int
		var on bool
		s.String(&name, "name", "X_NAME", "default", "")
		s.Duration(&wait, "wait", "X_WAIT", time.Second, "")
		s.Int(&n, "n", "X_N", 1, "")
		s.Bool(&on, "on", "X_ON", false, "")
		return s, &name, &wait, &n, &on
	}
	s, name, wait, n, on := newSet()
	rest, err := s.Parse([]string{"--name", "from-flag", "arg"}, lookup)
	if err != nil || *name != "from-flag" || *wait != 2*time.Minute || *n != 7 || !*on || len(rest) != 1 || rest[0] != "arg" {
		t.Errorf("flag over env: name %q wait %v n %d on %v rest %v err %v", *name, *wait, *n, *on, rest, err)
	}
	if strings.Join(declared, ",") != "name,wait,n,on" || s.Env("wait") != "X_WAIT" || s.Env("nope") != "" {
		t.Errorf("declared %v, Env(wait) %q", declared, s.Env("wait"))
	}
	env["X_N"] = "seven"
	s, _, _, _, _ = newSet()
	if _, err := s.Parse(nil, lookup); err == nil || !strings.Contains(err.Error(), "X_N") || !strings.Contains(err.Error(), "--n") {
		t.Errorf("bad environment value: %v, want an error naming X_N and --n", err)
	}
	s, _, _, _, _ = newSet()
	if _, err := s.Parse([]string{"--help"}, lookup); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v, want flag.ErrHelp", err)
	}
	s, _, _, _, _ = newSet()
	if _, err := s.Parse([]string{"--bogus"}, lookup); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("unknown flag: %v", err)
	}
}
