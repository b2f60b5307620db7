//go:build windows

package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows/registry"
)

// DefaultFilePath returns %ProgramData%\sessionaudit\agent.conf
// (C:\ProgramData when the variable is not set).
func DefaultFilePath() string {
	dir := os.Getenv("ProgramData")
	if dir == "" {
		dir = `C:\ProgramData`
	}
	return filepath.Join(dir, "sessionaudit", "agent.conf")
}

// NewPolicyLayer returns the layer of the values under HKLM\PolicyKey (in
// the 64-bit view of the registry).
func NewPolicyLayer() *RegistryLayer {
	return newPolicyLayer(func() (map[string]RegistryValue, error) { return readKey(PolicyKey) })
}

// NewInstallerLayer returns the layer of the values under
// HKLM\InstallerKey (in the 64-bit view of the registry).
func NewInstallerLayer() *RegistryLayer {
	return newInstallerLayer(func() (map[string]RegistryValue, error) { return readKey(InstallerKey) })
}

// readKey reads every value under HKLM\path; nil, nil when the key does
// not exist. A value that cannot be read has its Err set.
func readKey(path string) (map[string]RegistryValue, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, path, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if errors.Is(err, registry.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	defer k.Close()
	names, err := k.ReadValueNames(-1)
	if err != nil {
		return nil, fmt.Errorf("list values: %w", err)
	}
	out := make(map[string]RegistryValue, len(names))
	for _, name := range names {
		_, typ, err := k.GetValue(name, nil)
		if errors.Is(err, registry.ErrNotExist) {
			continue // deleted while we read
		}
		if err != nil {
			out[name] = RegistryValue{Err: err}
			continue
		}
		rv := RegistryValue{Type: typ}
		switch typ {
		case registry.SZ, registry.EXPAND_SZ:
			if rv.String, _, err = k.GetStringValue(name); err == nil && typ == registry.EXPAND_SZ {
				rv.String, err = registry.ExpandString(rv.String)
			}
		case registry.DWORD, registry.QWORD:
			rv.Number, _, err = k.GetIntegerValue(name)
		}
		if errors.Is(err, registry.ErrNotExist) {
			continue
		}
		rv.Err = err
		out[name] = rv
	}
	return out, nil
}
