package identity

import (
	"errors"
	"testing"
)

const (
	guidImage  = "6f1c2a34-0000-4000-8000-000000000001"
	guidNew    = "6f1c2a34-0000-4000-8000-000000000002"
	smbiosVM1  = "4c4c4544-0031-3510-8044-b7c04f4e3132"
	smbiosVM2  = "4c4c4544-0031-3510-8044-b7c04f4e3133"
	smbiosNone = ""
)

func TestParseSMBIOSUUID(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"4C4C4544-0031-3510-8044-B7C04F4E3132", smbiosVM1, true},
		{" {4c4c4544-0031-3510-8044-b7c04f4e3132} ", smbiosVM1, true},
		{"00000000-0000-0000-0000-000000000000", "", false},
		{"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", "", false},
		{"03000200-0400-0500-0006-000700080009", "", false},
		{"", "", false},
		{"not-a-uuid", "", false},
	} {
		got, err := ParseSMBIOSUUID(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("ParseSMBIOSUUID(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ParseSMBIOSUUID(%q): %v does not wrap ErrInvalidName", tc.in, err)
		}
	}
}

func TestCanonicalSMBIOSUUID(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "  ": "", "00000000-0000-0000-0000-000000000000": "",
		"{03000200-0400-0500-0006-000700080009}": "", "4C4C4544-0031-3510-8044-B7C04F4E3132": smbiosVM1,
	} {
		if got, err := CanonicalSMBIOSUUID(in); err != nil || got != want {
			t.Errorf("CanonicalSMBIOSUUID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := CanonicalSMBIOSUUID("4c4c4544"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("malformed: err = %v", err)
	}
}

// TestMatch is the rule of 0003-security.md, "Machine identity that
// survives cloning", case by case.
func TestMatch(t *testing.T) {
	m := func(guid, smbios, name string) Machine {
		return Machine{MachineGUID: guid, SMBIOSUUID: smbios, Hostname: name, Domain: "corp.example"}
	}
	for _, tc := range []struct {
		name string
		p, k Machine
		want Verdict
	}{
		{"same install", m(guidImage, smbiosVM1, "WS1"), m(guidImage, smbiosVM1, "WS1"), SameMachine},
		{"same install renamed", m(guidImage, smbiosVM1, "WS9"), m(guidImage, smbiosVM1, "WS1"), SameMachine},
		{"agent before 3/7 presents no SMBIOS UUID", m(guidImage, smbiosNone, "WS1"), m(guidImage, smbiosVM1, "WS1"), SameMachine},
		{"host known from before 3/7", m(guidImage, smbiosVM1, "WS1"), m(guidImage, smbiosNone, "WS1"), SameMachine},
		{"placeholder SMBIOS UUID is no evidence", m(guidImage, "ffffffff-ffff-ffff-ffff-ffffffffffff", "WS2"), m(guidImage, smbiosVM1, "WS1"), SameMachine},
		{"clone of a golden image", m(guidImage, smbiosVM2, "VDI-002"), m(guidImage, smbiosVM1, "VDI-001"), Clone},
		{"clone that kept the image's name", m(guidImage, smbiosVM2, "VDI"), m(guidImage, smbiosVM1, "VDI"), Clone},
		{"reimage of the same hardware", m(guidNew, smbiosVM1, "WS1"), m(guidImage, smbiosVM1, "ws1"), Reimaged},
		{"reimage, other domain spelling", Machine{guidNew, smbiosVM1, "WS1", "CORP.EXAMPLE"}, m(guidImage, smbiosVM1, "WS1"), Reimaged},
		{"duplicated SMBIOS UUID (hypervisor)", m(guidNew, smbiosVM1, "WS2"), m(guidImage, smbiosVM1, "WS1"), DuplicatedSMBIOS},
		{"reimage without an SMBIOS UUID", m(guidNew, smbiosNone, "WS1"), m(guidImage, smbiosNone, "WS1"), DifferentMachine},
		{"different machines", m(guidNew, smbiosVM2, "WS2"), m(guidImage, smbiosVM1, "WS1"), DifferentMachine},
		{"placeholder on both, new GUID", m(guidNew, "03000200-0400-0500-0006-000700080009", "WS1"), m(guidImage, "03000200-0400-0500-0006-000700080009", "WS1"), DifferentMachine},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Match(tc.p, tc.k); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
			if got := Match(tc.p, tc.k).Same(); got != (tc.want == SameMachine || tc.want == Reimaged) {
				t.Errorf("Same = %v", got)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	clone1 := Machine{MachineGUID: guidImage, SMBIOSUUID: smbiosVM1, Hostname: "VDI-001"}
	clone2 := Machine{MachineGUID: guidImage, SMBIOSUUID: smbiosVM2, Hostname: "VDI-002"}
	known := []Machine{clone1, clone2}
	for _, tc := range []struct {
		name      string
		p         Machine
		known     []Machine
		index     int
		v         Verdict
		ambiguous bool
	}{
		{"first clone finds its host", clone1, known, 0, SameMachine, false},
		{"second clone finds its host", clone2, known, 1, SameMachine, false},
		{"third clone is a new machine", Machine{MachineGUID: guidImage, SMBIOSUUID: "4c4c4544-0031-3510-8044-b7c04f4e3134"}, known, -1, DifferentMachine, false},
		{"no SMBIOS UUID among clones: ambiguous", Machine{MachineGUID: guidImage}, known, -1, SameMachine, true},
		{"reimaged clone keeps its host", Machine{MachineGUID: guidNew, SMBIOSUUID: smbiosVM2, Hostname: "vdi-002"}, known, 1, Reimaged, false},
		{"same machine preferred to a reimage", Machine{MachineGUID: guidNew, SMBIOSUUID: smbiosVM1, Hostname: "VDI-001"},
			[]Machine{clone1, {MachineGUID: guidNew, SMBIOSUUID: smbiosVM1, Hostname: "VDI-001"}}, 1, SameMachine, false},
		{"nothing known", clone1, nil, -1, DifferentMachine, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i, v, amb := Resolve(tc.p, tc.known)
			if i != tc.index || v != tc.v || amb != tc.ambiguous {
				t.Errorf("Resolve = %d, %v, %v; want %d, %v, %v", i, v, amb, tc.index, tc.v, tc.ambiguous)
			}
		})
	}
}

func TestCloneHostKey(t *testing.T) {
	k1, k2 := CloneHostKey(guidImage, smbiosVM1), CloneHostKey(guidImage, smbiosVM2)
	if k1 == k2 || k1 == guidImage || k1 != CloneHostKey(guidImage, smbiosVM1) {
		t.Fatalf("keys %s, %s: want distinct, stable, not the GUID", k1, k2)
	}
	for _, k := range []string{k1, k2} {
		if g, err := ParseMachineGUID(k); err != nil || g != k {
			t.Errorf("key %s is no canonical machine GUID: %v", k, err)
		}
	}
	for _, tc := range []struct {
		cert, guid, smbios string
		want               bool
	}{
		{guidImage, guidImage, smbiosVM1, true},
		{guidImage, guidImage, "", true},
		{k1, guidImage, smbiosVM1, true},
		{k1, guidImage, smbiosVM2, false},
		{k1, guidNew, smbiosVM1, false},
		{k1, guidImage, "", false},
		{guidNew, guidImage, smbiosVM1, false},
	} {
		if got := BoundHost(tc.cert, tc.guid, tc.smbios); got != tc.want {
			t.Errorf("BoundHost(%s, %s, %q) = %v, want %v", tc.cert, tc.guid, tc.smbios, got, tc.want)
		}
	}
}
