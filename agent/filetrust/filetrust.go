// Package filetrust reads who owns a file or directory and who else may use
// it, without following links, and says which owners the agent trusts.
//
// The agent runs as SYSTEM, and everything it keeps or reads locally — its
// state directory (identity, spool, log) and its config file — sits where
// local users can create files (%ProgramData% lets them). A file that a
// local user created, or can change, is that user's input: the agent must
// not use it as its own (docs/design/0003-security.md, "Local files", added
// 2026-12-04). This package gives the facts; the decisions are made by the
// callers, as plain functions of the facts: agent/run (the state
// directory, run.DecideStateDir) and agent/config (the config file).
//
// Trusted owners: on Windows SYSTEM (S-1-5-18), BUILTIN\Administrators
// (S-1-5-32-544) and the agent's own account (the user of its process
// token: SYSTEM for the service); elsewhere root (uid 0) and the agent's
// effective uid. The Windows calls are thin (filetrust_windows.go: one
// handle opened with FILE_FLAG_OPEN_REPARSE_POINT, GetFileInformationByHandle,
// GetSecurityInfo); the reading of a DACL is plain Go (AnalyzeDACL), tested
// on every platform.
package filetrust

import (
	"fmt"
	"slices"
)

// Well-known SIDs.
const (
	SIDSystem         = "S-1-5-18"
	SIDAdministrators = "S-1-5-32-544"
	SIDUsers          = "S-1-5-32-545"
	SIDEveryone       = "S-1-1-0"
	SIDOwnerRights    = "S-1-3-4"
	SIDCreatorOwner   = "S-1-3-0"
	SIDCreatorGroup   = "S-1-3-1"
)

// WindowsTrustedOwners are the owners the agent trusts on Windows besides
// its own account (TrustedOwners there): SYSTEM and BUILTIN\Administrators.
var WindowsTrustedOwners = []string{SIDSystem, SIDAdministrators}

// Facts are what the file system says about one object, read without
// following it if it is a link.
type Facts struct {
	// Exists is false when there is nothing at the path; the other fields
	// are then zero.
	Exists bool
	// Link is true for a reparse point (Windows: junction, symbolic link,
	// mount point…) or a symbolic link (elsewhere). A link is never
	// followed: the other facts are the link's own.
	Link bool
	// Dir is true for a directory (on Windows also a junction).
	Dir bool
	// Owner names the owner: a SID on Windows ("S-1-5-18"), "uid N"
	// elsewhere; "unknown (...)" when it could not be read.
	Owner string
	// OwnerTrusted reports whether Owner is one the agent trusts (the
	// package comment).
	OwnerTrusted bool
	// Protected reports, on Windows, that the DACL does not inherit from the
	// parent (SE_DACL_PROTECTED); always true elsewhere.
	Protected bool
	// Others are the principals, other than the trusted ones and a trusted
	// owner, that the DACL (Windows) or the mode (elsewhere: "group",
	// "others") gives any access; sorted.
	Others []string
	// OthersWrite are those of Others that may change the object's content
	// or its permissions (write, append, add entries, delete entries, change
	// the DACL or the owner).
	OthersWrite []string
	// Links is the number of hard links (directories: as the system says).
	Links uint32
	// Emulated is true under Wine, whose security descriptors are made up
	// from the Unix mode of the file (and kept by nobody): Protected,
	// Others and OthersWrite then say nothing that Windows enforces, and a
	// protected DACL set on a directory reads back open. Callers do not
	// judge access from them; the owner and link facts still hold.
	Emulated bool
}

// String describes f in one line, for logs and test failures.
func (f Facts) String() string {
	if !f.Exists {
		return "does not exist"
	}
	kind := "file"
	switch {
	case f.Link:
		kind = "link (reparse point)"
	case f.Dir:
		kind = "directory"
	}
	s := fmt.Sprintf("%s owned by %s (trusted: %v), protected: %v, others: %v, others may write: %v, links: %d",
		kind, f.Owner, f.OwnerTrusted, f.Protected, f.Others, f.OthersWrite, f.Links)
	if f.Emulated {
		s += " (ACL emulated by Wine)"
	}
	return s
}

// ACE is one access control entry of a DACL, as AnalyzeDACL reads it.
type ACE struct {
	// Type is the ACE type (ACCESS_ALLOWED_ACE_TYPE is 0).
	Type uint8
	// Flags are the ACE flags (INHERIT_ONLY_ACE is 0x08).
	Flags uint8
	// Mask is the access mask.
	Mask uint32
	// SID is the trustee; "" when it cannot be read from this ACE type
	// (object ACEs), which AnalyzeDACL counts as another principal.
	SID string
}

// ACE types and flags, from winnt.h.
const (
	aceAllowed               = 0x0
	aceAllowedCompound       = 0x4
	aceAllowedObject         = 0x5
	aceAllowedCallback       = 0x9
	aceAllowedCallbackObject = 0xB
	aceInheritOnly           = 0x08
)

// WriteRights are the access rights that let a principal change an object
// or what it holds: FILE_WRITE_DATA (a directory: FILE_ADD_FILE),
// FILE_APPEND_DATA (FILE_ADD_SUBDIRECTORY), FILE_DELETE_CHILD, WRITE_DAC,
// WRITE_OWNER, GENERIC_ALL and GENERIC_WRITE.
const WriteRights = 0x2 | 0x4 | 0x40 | 0x40000 | 0x80000 | 0x10000000 | 0x40000000

// AnalyzeDACL returns the principals other than the trusted ones (and the
// owner, when trusted) that the DACL gives any access to, and those that it
// gives a write right (WriteRights). nullDACL is a DACL that is absent or
// NULL: everyone has full access. Deny entries are ignored (they only take
// away), and so are inherit-only entries (they do not apply to the object
// itself); an allow entry whose trustee cannot be read counts as another
// principal. OWNER RIGHTS (S-1-3-4) stands for the owner.
func AnalyzeDACL(owner string, nullDACL bool, aces []ACE, trusted func(sid string) bool) (others, othersWrite []string) {
	if nullDACL {
		return []string{SIDEveryone}, []string{SIDEveryone}
	}
	for _, a := range aces {
		switch a.Type {
		case aceAllowed, aceAllowedCompound, aceAllowedObject, aceAllowedCallback, aceAllowedCallbackObject:
		default:
			continue
		}
		if a.Flags&aceInheritOnly != 0 || a.Mask == 0 {
			continue
		}
		sid := a.SID
		switch sid {
		case SIDOwnerRights:
			sid = owner
		case SIDCreatorOwner, SIDCreatorGroup:
			// Only meaningful in inheritable entries; on the object itself
			// they grant nothing.
			continue
		case "":
			sid = fmt.Sprintf("(ACE type %d)", a.Type)
		}
		if sid != "" && trusted(sid) {
			continue
		}
		if !slices.Contains(others, sid) {
			others = append(others, sid)
		}
		if a.Mask&WriteRights != 0 && !slices.Contains(othersWrite, sid) {
			othersWrite = append(othersWrite, sid)
		}
	}
	slices.Sort(others)
	slices.Sort(othersWrite)
	return others, othersWrite
}

// IsTrusted reports whether principal (a SID on Windows, "uid N"
// elsewhere) is one of the trusted owners: the platform's (TrustedOwners)
// or self, the agent's own account.
func IsTrusted(principal, self string) bool {
	return principal != "" && (principal == self || slices.Contains(TrustedOwners, principal))
}
