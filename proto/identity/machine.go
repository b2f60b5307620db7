package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// Machine identity that survives cloning (0003-security.md, "Machine
// identity that survives cloning", issue 3/7).
//
// The machine GUID (HKLM\SOFTWARE\Microsoft\Cryptography\MachineGuid) is
// written by Windows setup, so every clone of a golden image that was not
// generalised carries the image's GUID; a reimage of the same hardware gets
// a new one. The SMBIOS system UUID (Win32_ComputerSystemProduct.UUID) is
// the hardware's or the virtual machine's: a hypervisor gives each clone its
// own, and a reimage keeps it. Some hypervisors (and cheap boards) give the
// same SMBIOS UUID to many machines, or a placeholder. Match combines the
// two, and the host name where they disagree.

// SMBIOS UUIDs no machine can be told by: the nil UUID, all F, and the
// firmware defaults seen on unprogrammed boards. UsableSMBIOSUUID refuses
// them; the agent then sends none.
var placeholderSMBIOSUUIDs = map[string]bool{
	"00000000-0000-0000-0000-000000000000": true,
	"ffffffff-ffff-ffff-ffff-ffffffffffff": true,
	"03000200-0400-0500-0006-000700080009": true, // AMI default
	"00020003-0004-0005-0006-000700080009": true, // the same, byte-swapped
	"01234567-8910-1112-1314-151617181920": true,
}

// ParseSMBIOSUUID returns the SMBIOS UUID u (as Win32_ComputerSystemProduct
// reports it: upper case, perhaps in braces) in canonical form: lower case,
// 8-4-4-4-12 hex digits. A placeholder (UsableSMBIOSUUID false) is an error
// that wraps ErrInvalidName, like any malformed value.
func ParseSMBIOSUUID(u string) (string, error) {
	n := NormalizeMachineGUID(u)
	if !machineGUIDPattern.MatchString(n) {
		return "", fmt.Errorf("identity: SMBIOS UUID %q: %w: want 8-4-4-4-12 hex digits", u, ErrInvalidName)
	}
	if !UsableSMBIOSUUID(n) {
		return "", fmt.Errorf("identity: SMBIOS UUID %q: %w: a placeholder no machine can be told by", u, ErrInvalidName)
	}
	return n, nil
}

// CanonicalSMBIOSUUID is ParseSMBIOSUUID for a value that may be absent:
// "" for an empty value or a placeholder (no evidence either way), an
// error only for a malformed one.
func CanonicalSMBIOSUUID(u string) (string, error) {
	if strings.TrimSpace(u) == "" {
		return "", nil
	}
	n := NormalizeMachineGUID(u)
	if machineGUIDPattern.MatchString(n) && !UsableSMBIOSUUID(n) {
		return "", nil
	}
	return ParseSMBIOSUUID(u)
}

// UsableSMBIOSUUID reports whether the canonical SMBIOS UUID u can tell a
// machine: not empty and not a known placeholder.
func UsableSMBIOSUUID(u string) bool {
	return u != "" && !placeholderSMBIOSUUIDs[u]
}

// Machine is what an enrollment, or a known host, says about the machine:
// the canonical machine GUID, the canonical SMBIOS UUID ("" when unknown or
// a placeholder), and the host name and domain (compared without case).
type Machine struct {
	MachineGUID string
	SMBIOSUUID  string
	Hostname    string
	Domain      string
}

// Verdict is how a presented machine relates to a known one.
type Verdict int

// The verdicts of Match. Only SameMachine and Reimaged make the presented
// machine the known one (it keeps the known host and its history).
const (
	// DifferentMachine: different machine GUID and different (or unknown)
	// SMBIOS UUID.
	DifferentMachine Verdict = iota
	// SameMachine: the same machine GUID, and the same SMBIOS UUID or one
	// side does not know it (an agent before issue 3/7, or a placeholder).
	SameMachine
	// Reimaged: a new machine GUID on the same hardware (same usable SMBIOS
	// UUID) under the same host name and domain: the same machine, its
	// history kept.
	Reimaged
	// Clone: the same machine GUID, different usable SMBIOS UUIDs: a clone
	// of a golden image (VDI), a different machine.
	Clone
	// DuplicatedSMBIOS: the same usable SMBIOS UUID, different machine GUIDs
	// and different host names: a hypervisor that gives one SMBIOS UUID to
	// many machines (or a reimage that also renamed the machine, which
	// cannot be told apart): different machines, by the host name.
	DuplicatedSMBIOS
)

func (v Verdict) String() string {
	switch v {
	case DifferentMachine:
		return "different machine"
	case SameMachine:
		return "same machine"
	case Reimaged:
		return "reimaged"
	case Clone:
		return "clone"
	case DuplicatedSMBIOS:
		return "duplicated SMBIOS UUID"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Same reports whether v makes the presented machine the known one.
func (v Verdict) Same() bool { return v == SameMachine || v == Reimaged }

// Match applies the rule to a presented machine p and a known one k (both
// in canonical form):
//
//	machine GUID  SMBIOS UUID           host name  verdict
//	same          same, or either ""    any        SameMachine
//	same          both usable, differ   any        Clone (different)
//	differs       same, usable          same       Reimaged (same, history kept)
//	differs       same, usable          differs    DuplicatedSMBIOS (different)
//	differs       differs, or either "" any        DifferentMachine
func Match(p, k Machine) Verdict {
	pu, ku := UsableSMBIOSUUID(p.SMBIOSUUID), UsableSMBIOSUUID(k.SMBIOSUUID)
	if p.MachineGUID == k.MachineGUID {
		if pu && ku && p.SMBIOSUUID != k.SMBIOSUUID {
			return Clone
		}
		return SameMachine
	}
	if !pu || !ku || p.SMBIOSUUID != k.SMBIOSUUID {
		return DifferentMachine
	}
	if strings.EqualFold(p.Hostname, k.Hostname) && strings.EqualFold(p.Domain, k.Domain) {
		return Reimaged
	}
	return DuplicatedSMBIOS
}

// Resolve finds which of the known machines the presented one is: the index
// of the one Match calls SameMachine, else the one it calls Reimaged, and
// that verdict; -1 and DifferentMachine when none is (a new machine). When
// more than one known machine is the same by the same verdict (clones that
// an agent without an SMBIOS UUID cannot be told from), it returns -1 and
// ambiguous true: the caller must refuse rather than guess.
func Resolve(p Machine, known []Machine) (index int, v Verdict, ambiguous bool) {
	for _, want := range []Verdict{SameMachine, Reimaged} {
		index = -1
		for i, k := range known {
			if Match(p, k) != want {
				continue
			}
			if index >= 0 {
				return -1, want, true
			}
			index = i
		}
		if index >= 0 {
			return index, want, false
		}
	}
	return -1, DifferentMachine, false
}

// CloneHostKey is the name the collector gives a clone of a golden image
// (Match: Clone) in its certificate and in the store, in place of the
// machine GUID it shares with the image's other clones: a UUID (version 8,
// RFC 9562) derived from the canonical machine GUID and SMBIOS UUID, so the
// same clone gets the same key at every enrollment and any party can check
// it (BoundHost).
func CloneHostKey(machineGUID, smbiosUUID string) string {
	sum := sha256.Sum256([]byte("sessionaudit clone host key\x00" + machineGUID + "\x00" + smbiosUUID))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // variant 10
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// BoundHost reports whether a certificate naming the host certHost may
// carry reports of the machine with the canonical machineGUID and SMBIOS
// UUID: certHost is the machine GUID, or the clone host key of the two.
func BoundHost(certHost, machineGUID, smbiosUUID string) bool {
	if certHost == machineGUID {
		return true
	}
	return UsableSMBIOSUUID(smbiosUUID) && certHost == CloneHostKey(machineGUID, smbiosUUID)
}
