package main

import (
	"os"
	"path/filepath"
)

// defaultConfigHelp names the default config file in help texts.
const defaultConfigHelp = `%AppData%\sessionaudit\cli.conf`

// configDir is %AppData% (the roaming profile's application data), or
// $XDG_CONFIG_HOME when it is set.
func configDir(env lookupEnv) string {
	if d, ok := env("XDG_CONFIG_HOME"); ok && filepath.IsAbs(d) {
		return d
	}
	if d, ok := env("APPDATA"); ok && d != "" {
		return d
	}
	return ""
}

// checkConfigPermissions does nothing on Windows: a file under the user's
// profile inherits an ACL that admits only the user, SYSTEM and
// administrators, and mode bits say nothing about ACLs.
func checkConfigPermissions(string, os.FileInfo) error { return nil }
