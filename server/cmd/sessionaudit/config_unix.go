//go:build !windows

package main

import (
	"os"
	"path/filepath"
)

// defaultConfigHelp names the default config file in help texts.
const defaultConfigHelp = "$XDG_CONFIG_HOME/sessionaudit/cli.conf or ~/.config/sessionaudit/cli.conf"

// configDir is $XDG_CONFIG_HOME, else $HOME/.config.
func configDir(env lookupEnv) string {
	if d, ok := env("XDG_CONFIG_HOME"); ok && filepath.IsAbs(d) {
		return d
	}
	if h, ok := env("HOME"); ok && h != "" {
		return filepath.Join(h, ".config")
	}
	return ""
}

// checkConfigPermissions refuses a config file holding a token that its
// group or others may read or write, as ssh refuses such a private key: the
// token would be anyone's on the machine.
func checkConfigPermissions(path string, fi os.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return usagef("config file %s holds a token but its mode %04o lets group or others read or change it; "+
			"run: chmod 600 %s", path, perm, path)
	}
	return nil
}
