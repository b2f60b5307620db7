package config

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// PolicyKey is the registry key, under HKEY_LOCAL_MACHINE, that holds the
// Group Policy settings of the agent: one value per setting, named as in
// Definitions. The ADMX template writes here. Every local user can read it.
const PolicyKey = `SOFTWARE\Policies\sessionaudit\Agent`

// PolicyKeyPath is PolicyKey with its hive, as people write it.
const PolicyKeyPath = `HKLM\` + PolicyKey

// InstallerKey is the registry key, under HKEY_LOCAL_MACHINE, where the
// MSI writes the settings given as msiexec properties (COLLECTOR_ADDRESS,
// ENROLLMENT_SECRET, CA_CERTIFICATE, CA_PIN): one value per setting, named
// as in Definitions, as under PolicyKey. It ranks below Group Policy and
// the config file and above the flags. The MSI reads it back at an upgrade,
// so that an upgrade without properties keeps them. Every local user can
// read it unless its ACL is narrowed.
const InstallerKey = `SOFTWARE\sessionaudit\Agent`

// InstallerKeyPath is InstallerKey with its hive, as people write it.
const InstallerKeyPath = `HKLM\` + InstallerKey

// Registry value types, as Windows numbers them (winnt.h).
const (
	RegSZ       uint32 = 1
	RegExpandSZ uint32 = 2
	RegBinary   uint32 = 3
	RegDWORD    uint32 = 4
	RegMultiSZ  uint32 = 7
	RegQWORD    uint32 = 11
)

// RegistryValue is one registry value as read from PolicyKey.
type RegistryValue struct {
	// Type is the registry type (RegSZ, RegDWORD, ...).
	Type uint32
	// String is the data of a RegSZ, or of a RegExpandSZ after expansion.
	String string
	// Number is the data of a RegDWORD or RegQWORD.
	Number uint64
	// Err is set when the value could not be read.
	Err error
}

// RegistryLayer is a layer read from one registry key under
// HKEY_LOCAL_MACHINE, one value per setting: Group Policy (PolicyKey,
// NewPolicyLayer) or the installer's settings (InstallerKey,
// NewInstallerLayer). On Windows the New functions read the registry;
// elsewhere they have no values, and PolicyLayerFromValues and
// InstallerLayerFromValues make layers from given values (for tests).
type RegistryLayer struct {
	// name is the layer's name: "Group Policy", "installer settings".
	name string
	// what starts messages about a value or the key: "policy", "installer".
	what string
	// keyPath names the key in messages, hive included.
	keyPath string
	// read returns the values under the key; nil, nil when the key does
	// not exist.
	read func() (map[string]RegistryValue, error)
}

// Layer names of the registry layers, as Settings.Origin reports them.
const (
	OriginPolicy    = "Group Policy"
	OriginInstaller = "installer settings"
)

// newPolicyLayer returns the Group Policy layer reading with read.
func newPolicyLayer(read func() (map[string]RegistryValue, error)) *RegistryLayer {
	return &RegistryLayer{name: OriginPolicy, what: "policy", keyPath: PolicyKeyPath, read: read}
}

// newInstallerLayer returns the installer settings layer reading with read.
func newInstallerLayer(read func() (map[string]RegistryValue, error)) *RegistryLayer {
	return &RegistryLayer{name: OriginInstaller, what: "installer", keyPath: InstallerKeyPath, read: read}
}

// PolicyLayerFromValues returns a Group Policy layer whose key holds values.
func PolicyLayerFromValues(values map[string]RegistryValue) *RegistryLayer {
	return newPolicyLayer(func() (map[string]RegistryValue, error) { return values, nil })
}

// InstallerLayerFromValues returns an installer settings layer whose key
// holds values.
func InstallerLayerFromValues(values map[string]RegistryValue) *RegistryLayer {
	return newInstallerLayer(func() (map[string]RegistryValue, error) { return values, nil })
}

// Name returns "Group Policy" or "installer settings".
func (p *RegistryLayer) Name() string { return p.name }

// Read reads the key. A value of another type than REG_SZ, REG_EXPAND_SZ,
// REG_DWORD or REG_QWORD is a Warning; numbers are given in decimal (a
// REG_SZ holding a decimal number is accepted for a DWORD setting).
func (p *RegistryLayer) Read() (map[string]Value, []Warning) {
	regs, err := p.read()
	if err != nil {
		return nil, []Warning{{Layer: p.Name(), Where: p.what + " key " + p.keyPath, Err: err}}
	}
	values := make(map[string]Value, len(regs))
	var warnings []Warning
	for _, name := range slices.Sorted(maps.Keys(regs)) {
		rv := regs[name]
		where := p.what + " value " + name
		if rv.Err != nil {
			warnings = append(warnings, Warning{Setting: name, Layer: p.Name(), Where: where,
				Err: fmt.Errorf("cannot read: %w", rv.Err)})
			continue
		}
		switch rv.Type {
		case RegSZ, RegExpandSZ:
			values[name] = Value{Raw: rv.String, Where: where}
		case RegDWORD, RegQWORD:
			values[name] = Value{Raw: strconv.FormatUint(rv.Number, 10), Where: where}
		default:
			warnings = append(warnings, Warning{Setting: name, Layer: p.Name(), Where: where,
				Err: fmt.Errorf("registry type %s: want REG_SZ or REG_DWORD", regTypeName(rv.Type))})
		}
	}
	return values, warnings
}

// regTypeName names a registry type.
func regTypeName(t uint32) string {
	switch t {
	case RegSZ:
		return "REG_SZ"
	case RegExpandSZ:
		return "REG_EXPAND_SZ"
	case RegBinary:
		return "REG_BINARY"
	case RegDWORD:
		return "REG_DWORD"
	case RegMultiSZ:
		return "REG_MULTI_SZ"
	case RegQWORD:
		return "REG_QWORD"
	}
	return fmt.Sprintf("type %d", t)
}
