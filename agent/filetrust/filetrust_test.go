package filetrust

import (
	"slices"
	"testing"
)

// TestAnalyzeDACL: which entries of a DACL give access to someone the agent
// does not trust, and which give them a write right. The DACLs are those
// Windows shows (icacls) for the places the agent meets.
func TestAnalyzeDACL(t *testing.T) {
	const self = "S-1-5-18"
	trusted := func(sid string) bool { return sid == self || slices.Contains(WindowsTrustedOwners, sid) }
	const (
		full      = 0x1f01ff // FA
		readExec  = 0x1200a9 // RX
		addFile   = 0x2      // WD on a directory: create files
		addSubdir = 0x4      // AD: create folders
		user      = "S-1-5-21-1-2-3-1001"
	)
	for _, tc := range []struct {
		name             string
		owner            string
		null             bool
		aces             []ACE
		others, writable []string
	}{
		{name: "locked: SYSTEM and Administrators only (the agent's descriptor)", owner: SIDAdministrators,
			aces: []ACE{{Mask: full, SID: SIDSystem, Flags: 0x3}, {Mask: full, SID: SIDAdministrators, Flags: 0x3}}},
		{name: "inherited from ProgramData: Users read and create", owner: SIDAdministrators,
			aces: []ACE{
				{Mask: full, SID: SIDSystem, Flags: 0x13},
				{Mask: full, SID: SIDAdministrators, Flags: 0x13},
				{Mask: full, SID: SIDCreatorOwner, Flags: 0x1b}, // inherit-only
				{Mask: readExec, SID: SIDUsers, Flags: 0x13},
				{Mask: addFile | addSubdir | 0x100 | 0x10, SID: SIDUsers, Flags: 0x12},
			},
			others: []string{SIDUsers}, writable: []string{SIDUsers}},
		{name: "Users may read only", owner: SIDSystem,
			aces:   []ACE{{Mask: full, SID: SIDSystem}, {Mask: readExec, SID: SIDUsers}},
			others: []string{SIDUsers}},
		{name: "NULL DACL: everyone, everything", owner: SIDAdministrators, null: true,
			others: []string{SIDEveryone}, writable: []string{SIDEveryone}},
		{name: "deny entries and inherit-only entries take nothing into account", owner: SIDAdministrators,
			aces: []ACE{
				{Type: 1, Mask: full, SID: SIDEveryone},
				{Mask: full, SID: user, Flags: aceInheritOnly | 0x3},
				{Mask: full, SID: SIDAdministrators},
			}},
		{name: "OWNER RIGHTS of an untrusted owner is that owner", owner: user,
			aces:   []ACE{{Mask: 0x20000, SID: SIDOwnerRights}, {Mask: full, SID: SIDSystem}},
			others: []string{user}},
		{name: "OWNER RIGHTS of a trusted owner", owner: SIDAdministrators,
			aces: []ACE{{Mask: full, SID: SIDOwnerRights}}},
		{name: "an object ACE whose trustee is not read counts as someone else", owner: SIDAdministrators,
			aces:   []ACE{{Type: aceAllowedObject, Mask: 0x40000}},
			others: []string{"(ACE type 5)"}, writable: []string{"(ACE type 5)"}},
		{name: "WRITE_DAC alone is a write right", owner: SIDAdministrators,
			aces:   []ACE{{Mask: 0x40000, SID: user}},
			others: []string{user}, writable: []string{user}},
		{name: "GENERIC_WRITE is a write right, a zero mask nothing", owner: SIDAdministrators,
			aces:   []ACE{{Mask: 0x40000000, SID: SIDEveryone}, {Mask: 0, SID: user}},
			others: []string{SIDEveryone}, writable: []string{SIDEveryone}},
		{name: "the agent's own account is trusted", owner: SIDAdministrators,
			aces: []ACE{{Mask: full, SID: self}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			others, writable := AnalyzeDACL(tc.owner, tc.null, tc.aces, trusted)
			if !slices.Equal(others, tc.others) || !slices.Equal(writable, tc.writable) {
				t.Errorf("AnalyzeDACL = others %q, writable %q; want %q, %q", others, writable, tc.others, tc.writable)
			}
		})
	}
}

// TestIsTrusted: the platform's trusted owners and the agent's own
// account; nothing else, and never an empty name.
func TestIsTrusted(t *testing.T) {
	for _, p := range TrustedOwners {
		if !IsTrusted(p, "S-1-5-21-9-9-9-500") {
			t.Errorf("IsTrusted(%q) = false", p)
		}
	}
	for _, tc := range []struct {
		p, self string
		want    bool
	}{
		{"S-1-5-21-1-2-3-1001", "S-1-5-21-1-2-3-1001", true},
		{"S-1-5-21-1-2-3-1001", "S-1-5-18", false},
		{"uid 1000", "uid 1000", true},
		{"uid 1000", "uid 0", false},
		{SIDUsers, SIDSystem, false},
		{SIDEveryone, SIDSystem, false},
		{"", "", false},
	} {
		if got := IsTrusted(tc.p, tc.self); got != tc.want {
			t.Errorf("IsTrusted(%q, self %q) = %v; want %v", tc.p, tc.self, got, tc.want)
		}
	}
}
