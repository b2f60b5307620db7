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

// PolicyLayer is the Group Policy layer: the values under PolicyKey. On
// Windows NewPolicyLayer reads the registry; elsewhere it has no values,
// and PolicyLayerFromValues makes one from given values (for tests).
type PolicyLayer struct {
	// read returns the values under the key; nil, nil when the key does
	// not exist.
	read func() (map[string]RegistryValue, error)
}

// PolicyLayerFromValues returns a policy layer whose key holds values.
func PolicyLayerFromValues(values map[string]RegistryValue) *PolicyLayer {
	return &PolicyLayer{read: func() (map[string]RegistryValue, error) { return values, nil }}
}

// Name returns "Group Policy".
func (p *PolicyLayer) Name() string { return "Group Policy" }

// Read reads the key. A value of another type than REG_SZ, REG_EXPAND_SZ,
// REG_DWORD or REG_QWORD is a Warning; numbers are given in decimal (a
// REG_SZ holding a decimal number is accepted for a DWORD setting).
func (p *PolicyLayer) Read() (map[string]Value, []Warning) {
	regs, err := p.read()
	if err != nil {
		return nil, []Warning{{Layer: p.Name(), Where: "policy key " + PolicyKeyPath, Err: err}}
	}
	values := make(map[string]Value, len(regs))
	var warnings []Warning
	for _, name := range slices.Sorted(maps.Keys(regs)) {
		rv := regs[name]
		where := "policy value " + name
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
