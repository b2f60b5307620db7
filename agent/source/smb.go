package source

import (
	"math"
	"net/netip"
	"slices"
	"strings"

	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// ClassSmbSession is MSFT_SmbSession, read from NamespaceSMB where the host
// has it in place of Win32_ServerSession (docs/agent.md, "Server
// sessions"). It is not one of Classes: its rows make the list of
// ClassServerSession, and a failure of both is reported under that class.
const ClassSmbSession = "MSFT_SmbSession"

// NamespaceSMB is the WMI namespace of ClassSmbSession.
const NamespaceSMB = `root\Microsoft\Windows\SMB`

// SmbSessionRow is one instance of MSFT_SmbSession.
type SmbSessionRow struct {
	SessionId          uint64 //nolint:revive // WMI's property name
	ScopeName          string
	ClusterNodeName    string
	ClientComputerName string
	ClientUserName     string
	NumOpens           *uint64
	SecondsIdle        *uint32
	SecondsExists      *uint32
	Dialect            string
	TransportName      string
	SmbInstance        *uint32
}

// NormalizeComputerName returns the client computer name of a server
// session in one form: an IP address in brackets loses them
// ("[fe80::1]" → "fe80::1") and an IPv4-mapped IPv6 address becomes IPv4
// ("::ffff:10.0.0.1" → "10.0.0.1"); an IPv6 address is written in its
// canonical form. Anything else (a NetBIOS or DNS name, an address that
// does not parse) is returned as given.
func NormalizeComputerName(name string) string {
	s := name
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return name
	}
	return a.Unmap().String()
}

// ServerSessionFromSmbRow converts one MSFT_SmbSession row into a
// ServerSession: the mirror in smb, and the fields it shares with
// Win32_ServerSession filled from it (see ServerSession.smb). It has no
// property that can be invalid.
func ServerSessionFromSmbRow(row SmbSessionRow) *sessionauditv1.ServerSession {
	name := NormalizeComputerName(row.ClientComputerName)
	smb := &sessionauditv1.SmbSession{
		SessionId:          row.SessionId,
		ScopeName:          row.ScopeName,
		ClusterNodeName:    row.ClusterNodeName,
		ClientComputerName: name,
		ClientUserName:     row.ClientUserName,
		NumOpens:           copyUint64(row.NumOpens),
		SecondsIdle:        copyUint32(row.SecondsIdle),
		SecondsExists:      copyUint32(row.SecondsExists),
		Dialect:            row.Dialect,
		TransportName:      row.TransportName,
		SmbInstance:        copyUint32(row.SmbInstance),
	}
	s := &sessionauditv1.ServerSession{
		ActiveTime:    copyUint32(row.SecondsExists),
		ComputerName:  name,
		IdleTime:      copyUint32(row.SecondsIdle),
		TransportName: row.TransportName,
		UserName:      row.ClientUserName,
		Smb:           smb,
	}
	if row.NumOpens != nil {
		v := uint32(min(*row.NumOpens, math.MaxUint32))
		s.ResourcesOpened = &v
	}
	return s
}

// copyUint64 returns a new pointer to *p's value, or nil.
func copyUint64(p *uint64) *uint64 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// buildServerSessions fills snap.ServerSessions and snap.ServerSessionBuild
// from c, whose server-session list is complete, and counts what it left
// out in stats. Rows come from MSFT_SmbSession when c.ServerSessionSource
// says so, else from Win32_ServerSession.
func buildServerSessions(c *Collection, snap *sessionauditv1.Snapshot, stats *BuildStats, addErrs func([]*sessionauditv1.CollectionError)) {
	b := &sessionauditv1.ServerSessionBuild{Source: ClassServerSession, FallbackReason: c.SmbFallbackReason}
	snap.ServerSessionBuild = b
	type candidate struct {
		s      *sessionauditv1.ServerSession
		errs   []*sessionauditv1.CollectionError
		active uint32
		id     uint64 // SessionId, for a deterministic tie-break
	}
	var cands []candidate
	if c.ServerSessionSource == ClassSmbSession {
		b.Source = ClassSmbSession
		b.Rows = uint32(len(c.SmbSessions))
		byID := make(map[uint64]int, len(c.SmbSessions))
		for _, row := range c.SmbSessions {
			s := ServerSessionFromSmbRow(row)
			cand := candidate{s: s, active: activeTimeOf(s), id: row.SessionId}
			if i, dup := byID[row.SessionId]; dup {
				b.DroppedDuplicateSessionId++
				if better(cand.active, cand.id, cands[i].active, cands[i].id) {
					cands[i] = cand
				}
				continue
			}
			byID[row.SessionId] = len(cands)
			cands = append(cands, cand)
		}
	} else {
		b.Rows = uint32(len(c.ServerSessions))
		for _, row := range c.ServerSessions {
			row.ComputerName = NormalizeComputerName(row.ComputerName)
			s, errs := ServerSessionFromRow(row)
			cands = append(cands, candidate{s: s, errs: errs, active: activeTimeOf(s)})
		}
	}
	// Two sessions under one key: keep the one that has existed longest
	// (then the smaller SessionId, then the first), so that the choice does
	// not depend on row order where it can be helped.
	chosen := make(map[ServerSessionKey]int, len(cands))
	var keys []ServerSessionKey
	for i, cand := range cands {
		if cand.s.GetComputerName() == "" {
			b.DroppedNoComputer++
			continue
		}
		k := KeyOfServerSession(cand.s)
		if j, dup := chosen[k]; dup {
			b.DroppedDuplicateKey++
			if better(cand.active, cand.id, cands[j].active, cands[j].id) {
				chosen[k] = i
			}
			continue
		}
		chosen[k] = i
		keys = append(keys, k)
	}
	slices.SortFunc(keys, CompareServerSessionKeys)
	for _, k := range keys {
		cand := cands[chosen[k]]
		addErrs(cand.errs)
		snap.ServerSessions = append(snap.ServerSessions, cand.s)
	}
	stats.DroppedServerSessions = int(b.DroppedNoComputer + b.DroppedDuplicateKey + b.DroppedDuplicateSessionId)
}

// better reports whether a session that has existed a seconds, with id ai,
// wins over one of b seconds with id bi.
func better(a uint32, ai uint64, b uint32, bi uint64) bool {
	if a != b {
		return a > b
	}
	return ai < bi
}

// activeTimeOf returns s's active_time, 0 when absent.
func activeTimeOf(s *sessionauditv1.ServerSession) uint32 { return s.GetActiveTime() }
