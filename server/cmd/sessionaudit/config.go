package main

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// configFile is what the config file says. Its format is one "key = value"
// per line; blank lines and lines starting with # are ignored; keys are
// collector, token and ca-cert (a relative ca-cert path is relative to the
// file's directory).
type configFile struct {
	path      string
	collector string
	token     string
	caCert    string
}

// configKeys are the keys a config file may hold.
var configKeys = []string{"collector", "token", "ca-cert"}

// defaultConfigPath returns where the config file is looked for when
// --config and SESSIONAUDIT_CONFIG are not given: configDir/sessionaudit/cli.conf
// ("" when no directory is known).
func defaultConfigPath(env lookupEnv) string {
	dir := configDir(env)
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, "sessionaudit", "cli.conf")
}

// loadConfig reads the config file at path. A missing file is no error when
// it was not named explicitly (the default path). A file holding a token
// must be readable by its owner only (checkConfigPermissions).
func loadConfig(path string, explicit bool) (configFile, error) {
	cf := configFile{path: path}
	if path == "" {
		return cf, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		return cf, nil
	}
	if err != nil {
		return cf, usagef("config file: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return cf, usagef("config file: %v", err)
	}
	if !fi.Mode().IsRegular() {
		return cf, usagef("config file %s is not a regular file", path)
	}
	data := make([]byte, 0, fi.Size())
	buf := bytes.NewBuffer(data)
	if _, err := buf.ReadFrom(f); err != nil {
		return cf, usagef("config file %s: %v", path, err)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(buf)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if !ok || key == "" {
			return cf, usagef("config file %s line %d: want \"key = value\" (keys: %s)", path, n, strings.Join(configKeys, ", "))
		}
		if seen[key] {
			return cf, usagef("config file %s line %d: %s is set twice", path, n, key)
		}
		seen[key] = true
		switch key {
		case "collector":
			cf.collector = value
		case "token":
			cf.token = value
		case "ca-cert":
			if value != "" && !filepath.IsAbs(value) {
				value = filepath.Join(filepath.Dir(path), value)
			}
			cf.caCert = value
		default:
			return cf, usagef("config file %s line %d: unknown key %q (keys: %s)", path, n, key, strings.Join(configKeys, ", "))
		}
	}
	if err := sc.Err(); err != nil {
		return cf, usagef("config file %s: %v", path, err)
	}
	if cf.token != "" {
		if err := checkConfigPermissions(path, fi); err != nil {
			return cf, err
		}
	}
	return cf, nil
}
