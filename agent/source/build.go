package source

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sessionaudit/sessionaudit/agent/cim"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// maxRawValue is the most bytes of a raw value a CollectionError carries.
const maxRawValue = 256

// Collection is the raw result of one collection pass: what the queries gave,
// and which queries failed.
type Collection struct {
	// TakenAt is when the pass started, by the host's clock.
	TakenAt time.Time
	// MachineGUID is the host's machine GUID, lower-case without braces.
	MachineGUID string
	// SMBIOSUUID is Win32_ComputerSystemProduct.UUID in the canonical form
	// of identity.ParseSMBIOSUUID; "" when unread or a placeholder.
	SMBIOSUUID string
	// AgentVersion is the agent's version.
	AgentVersion string
	// OperatingSystem is the Win32_OperatingSystem instance; nil when the
	// query failed or gave none.
	OperatingSystem *OperatingSystemRow
	// ComputerSystem is the Win32_ComputerSystem instance; nil when the query
	// failed or gave none.
	ComputerSystem *ComputerSystemRow
	// LogonSessions are the Win32_LogonSession instances.
	LogonSessions []LogonSessionRow
	// LoggedOnUsers are the Win32_LoggedOnUser instances.
	LoggedOnUsers []LoggedOnUserRow
	// ServerSessions are the Win32_ServerSession instances, when
	// ServerSessionSource is ClassServerSession.
	ServerSessions []ServerSessionRow
	// SmbSessions are the MSFT_SmbSession instances, when
	// ServerSessionSource is ClassSmbSession.
	SmbSessions []SmbSessionRow
	// ServerSessionSource is the class the server sessions were read from:
	// ClassSmbSession, or ClassServerSession (also when empty).
	ServerSessionSource string
	// SmbFallbackReason is why MSFT_SmbSession was not used although the
	// source tried it (its query failed, the namespace is missing); empty
	// otherwise. It is reported in Snapshot.server_session_build.
	SmbFallbackReason string
	// SessionProcesses are the Win32_SessionProcess instances, when
	// SessionProcessesCounted (see Lingering); BuildSnapshot ignores them.
	SessionProcesses []SessionProcessRow
	// SessionProcessesCounted says that SessionProcesses is complete: the
	// query ran and succeeded.
	SessionProcessesCounted bool
	// Failures lists the classes whose query did not complete.
	Failures []ClassFailure
}

// ClassFailure is a class whose list is incomplete in a Collection.
type ClassFailure struct {
	// Class is the WMI class, one of the Class constants.
	Class string
	// Kind is QUERY_FAILED, TIMEOUT or DISABLED.
	Kind sessionauditv1.CollectionErrorKind
	// Err is the cause, for people; may be nil for DISABLED.
	Err error
}

// BuildStats counts what BuildSnapshot did not report as such; the caller
// logs it or exports it as metrics.
type BuildStats struct {
	// InvalidValues counts properties left absent because their value could
	// not be read (each is also a CollectionError).
	InvalidValues int
	// DroppedLogonSessions counts Win32_LogonSession rows not reported: no
	// LogonId, or a LogonId already seen in the same pass.
	DroppedLogonSessions int
	// DroppedServerSessions counts server-session rows not reported: no
	// computer name, a key (ComputerName, UserName) already seen, or a
	// SessionId already seen; Snapshot.server_session_build says which.
	DroppedServerSessions int
	// Join counts what happened to the Win32_LoggedOnUser links.
	Join JoinStats
}

// BuildSnapshot turns a Collection into a Snapshot. Logon sessions come out
// sorted by LogonId (shorter first, so decimal LUIDs sort by value), server
// sessions by (ComputerName, UserName), errors in the order met (class
// failures, host, logon sessions, links, server sessions); apart from
// duplicate keys, the result does not depend on the order of the rows. See the package comment for the
// rules; the stats say what was dropped.
func BuildSnapshot(c *Collection) (*sessionauditv1.Snapshot, BuildStats) {
	var stats BuildStats
	failed := make(map[string]bool)
	snap := &sessionauditv1.Snapshot{TakenAt: timestamppb.New(c.TakenAt.UTC())}
	for _, f := range c.Failures {
		failed[f.Class] = true
		msg := "class not collected"
		if f.Err != nil {
			msg = f.Err.Error()
		}
		snap.Errors = append(snap.Errors, &sessionauditv1.CollectionError{
			Kind: f.Kind, WmiClass: f.Class, Message: msg,
		})
	}
	addErrs := func(errs []*sessionauditv1.CollectionError) {
		stats.InvalidValues += len(errs)
		snap.Errors = append(snap.Errors, errs...)
	}
	missing := func(class string) {
		if !failed[class] {
			failed[class] = true
			snap.Errors = append(snap.Errors, &sessionauditv1.CollectionError{
				Kind:     sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_QUERY_FAILED,
				WmiClass: class,
				Message:  "query gave no instance",
			})
		}
	}

	os, cs := c.OperatingSystem, c.ComputerSystem
	if failed[ClassOperatingSystem] {
		os = nil
	} else if os == nil {
		missing(ClassOperatingSystem)
	}
	if failed[ClassComputerSystem] {
		cs = nil
	} else if cs == nil {
		missing(ClassComputerSystem)
	}
	host, errs := HostFromRows(c.MachineGUID, c.AgentVersion, os, cs)
	host.SmbiosUuid = c.SMBIOSUUID
	snap.Host = host
	addErrs(errs)

	if !failed[ClassLogonSession] {
		rows := slices.Clone(c.LogonSessions)
		slices.SortStableFunc(rows, func(a, b LogonSessionRow) int { return CompareLogonIDs(a.LogonId, b.LogonId) })
		seen := make(map[string]bool, len(rows))
		for _, row := range rows {
			if row.LogonId == "" || seen[row.LogonId] {
				stats.DroppedLogonSessions++
				continue
			}
			seen[row.LogonId] = true
			s, errs := LogonSessionFromRow(row)
			addErrs(errs)
			snap.LogonSessions = append(snap.LogonSessions, s)
		}
		if !failed[ClassLoggedOnUser] {
			var errs []*sessionauditv1.CollectionError
			stats.Join, errs = JoinAccounts(snap.LogonSessions, c.LoggedOnUsers)
			snap.Errors = append(snap.Errors, errs...)
		}
	}

	if !failed[ClassServerSession] {
		buildServerSessions(c, snap, &stats, addErrs)
	}
	return snap, stats
}

// ServerSessionKey is the identity of a server session: the WMI keys of
// Win32_ServerSession, compared exactly.
type ServerSessionKey struct {
	ComputerName string
	UserName     string
}

// KeyOfServerSession returns s's key.
func KeyOfServerSession(s *sessionauditv1.ServerSession) ServerSessionKey {
	return ServerSessionKey{ComputerName: s.GetComputerName(), UserName: s.GetUserName()}
}

// CompareServerSessionKeys orders keys by ComputerName, then UserName.
func CompareServerSessionKeys(a, b ServerSessionKey) int {
	if c := strings.Compare(a.ComputerName, b.ComputerName); c != 0 {
		return c
	}
	return strings.Compare(a.UserName, b.UserName)
}

// CompareLogonIDs orders LogonIds shorter first, then bytewise: decimal LUIDs
// come out in numeric order without being parsed.
func CompareLogonIDs(a, b string) int {
	return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b))
}

// invalidValue builds the INVALID_VALUE CollectionError for one property.
func invalidValue(class, property, instanceKey, raw string, err error) *sessionauditv1.CollectionError {
	return &sessionauditv1.CollectionError{
		Kind:        sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_INVALID_VALUE,
		WmiClass:    class,
		Property:    property,
		InstanceKey: truncate(instanceKey),
		RawValue:    truncate(raw),
		Message:     err.Error(),
	}
}

// truncate cuts s to maxRawValue bytes, not inside a UTF-8 sequence.
func truncate(s string) string {
	if len(s) <= maxRawValue {
		return s
	}
	cut := maxRawValue
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut]
}

// datetime parses an optional CIM datetime property. A bad value gives nil
// and an INVALID_VALUE error naming class, property and instance.
func datetime(class, property, instanceKey, raw string) (*timestamppb.Timestamp, *sessionauditv1.CollectionError) {
	t, ok, err := cim.ParseOptionalDatetime(raw)
	if err != nil {
		return nil, invalidValue(class, property, instanceKey, raw, err)
	}
	if !ok {
		return nil, nil
	}
	return timestamppb.New(t), nil
}

// copyUint32 returns a new pointer to *p's value, or nil.
func copyUint32(p *uint32) *uint32 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// LogonSessionFromRow converts one Win32_LogonSession row. LogonId is kept
// verbatim; LogonType is mapped with LogonTypeFromWMI and kept raw; a
// datetime that cannot be parsed is left absent and returned as an
// INVALID_VALUE error. The account is not set (see JoinAccounts).
func LogonSessionFromRow(row LogonSessionRow) (*sessionauditv1.LogonSession, []*sessionauditv1.CollectionError) {
	var errs []*sessionauditv1.CollectionError
	s := &sessionauditv1.LogonSession{
		AuthenticationPackage: row.AuthenticationPackage,
		Caption:               row.Caption,
		Description:           row.Description,
		LogonId:               row.LogonId,
		Name:                  row.Name,
		Status:                row.Status,
	}
	var e *sessionauditv1.CollectionError
	if s.StartTime, e = datetime(ClassLogonSession, "StartTime", row.LogonId, row.StartTime); e != nil {
		errs = append(errs, e)
	}
	if s.InstallDate, e = datetime(ClassLogonSession, "InstallDate", row.LogonId, row.InstallDate); e != nil {
		errs = append(errs, e)
	}
	if row.LogonType != nil {
		s.LogonTypeRaw = copyUint32(row.LogonType)
		s.LogonType = sessionauditv1.LogonTypeFromWMI(*row.LogonType)
	}
	return s, errs
}

// ServerSessionFromRow converts one Win32_ServerSession row. SessionType is
// mapped with ServerSessionTypeFromWMI and kept raw; a datetime that cannot
// be parsed is left absent and returned as an INVALID_VALUE error whose
// instance key is `ComputerName\UserName`.
func ServerSessionFromRow(row ServerSessionRow) (*sessionauditv1.ServerSession, []*sessionauditv1.CollectionError) {
	var errs []*sessionauditv1.CollectionError
	s := &sessionauditv1.ServerSession{
		ActiveTime:      copyUint32(row.ActiveTime),
		Caption:         row.Caption,
		ClientType:      row.ClientType,
		ComputerName:    row.ComputerName,
		Description:     row.Description,
		IdleTime:        copyUint32(row.IdleTime),
		Name:            row.Name,
		ResourcesOpened: copyUint32(row.ResourcesOpened),
		Status:          row.Status,
		TransportName:   row.TransportName,
		UserName:        row.UserName,
	}
	var e *sessionauditv1.CollectionError
	if s.InstallDate, e = datetime(ClassServerSession, "InstallDate", row.ComputerName+`\`+row.UserName, row.InstallDate); e != nil {
		errs = append(errs, e)
	}
	if row.SessionType != nil {
		s.SessionTypeRaw = copyUint32(row.SessionType)
		s.SessionType = sessionauditv1.ServerSessionTypeFromWMI(*row.SessionType)
	}
	return s, errs
}

// HostFromRows builds the Host from the machine GUID, the agent's version and
// the two singleton rows, either of which may be nil (its facts are then
// empty). The host name is DNSHostName, else Name. A LastBootUpTime that
// cannot be parsed is left absent and returned as an INVALID_VALUE error
// (instance key empty: the class has one instance).
func HostFromRows(machineGUID, agentVersion string, os *OperatingSystemRow, cs *ComputerSystemRow) (*sessionauditv1.Host, []*sessionauditv1.CollectionError) {
	h := &sessionauditv1.Host{MachineGuid: machineGUID, AgentVersion: agentVersion}
	var errs []*sessionauditv1.CollectionError
	if cs != nil {
		h.Hostname = cmp.Or(cs.DNSHostName, cs.Name)
		h.Domain = cs.Domain
	}
	if os != nil {
		h.OsCaption = os.Caption
		h.OsVersion = os.Version
		h.OsBuild = os.BuildNumber
		var e *sessionauditv1.CollectionError
		if h.LastBootTime, e = datetime(ClassOperatingSystem, "LastBootUpTime", "", os.LastBootUpTime); e != nil {
			errs = append(errs, e)
		}
	}
	return h, errs
}

// JoinStats counts the fate of Win32_LoggedOnUser links in JoinAccounts.
type JoinStats struct {
	// Joined counts sessions that got an account.
	Joined int
	// UnknownSession counts links whose Dependent names a LogonId that is not
	// among the sessions (a session that ended between the two queries, or
	// a stale link): they are ignored.
	UnknownSession int
	// Invalid counts links whose paths could not be parsed or lack the keys
	// (each is also an INVALID_VALUE error).
	Invalid int
	// Conflicting counts sessions named by links to more than one account
	// (each is also an INVALID_VALUE error).
	Conflicting int
}

// JoinAccounts sets the account of each session from the Win32_LoggedOnUser
// links, whose Dependent names a session by LogonId (compared exactly) and
// whose Antecedent names the account by Domain and Name. It returns what
// happened and an INVALID_VALUE error per unusable link.
//
//   - A session that no link names keeps no account; it is still reported.
//   - A link to a LogonId that is not among sessions is ignored and counted.
//   - When links name several different accounts for one session (accounts
//     compared without regard to case, as Windows does), the account that
//     sorts first by (Domain, Name), without regard to case, is kept, so the
//     choice does not depend on the order WMI gives the rows; each other one
//     is reported as an INVALID_VALUE error on Antecedent with the LogonId
//     as instance key.
//   - The host and namespace of the paths are not checked: WMI names the
//     host "." or by name, and the association is local either way.
func JoinAccounts(sessions []*sessionauditv1.LogonSession, links []LoggedOnUserRow) (JoinStats, []*sessionauditv1.CollectionError) {
	var stats JoinStats
	var errs []*sessionauditv1.CollectionError
	byID := make(map[string]*sessionauditv1.LogonSession, len(sessions))
	for _, s := range sessions {
		byID[s.GetLogonId()] = s
	}
	type candidate struct {
		account *sessionauditv1.Account
		raw     string
	}
	found := make(map[string][]candidate)
	for _, l := range links {
		logonID, err := logonIDOf(l.Dependent)
		if err != nil {
			stats.Invalid++
			errs = append(errs, invalidValue(ClassLoggedOnUser, "Dependent", l.Antecedent, l.Dependent, err))
			continue
		}
		account, err := accountOf(l.Antecedent)
		if err != nil {
			stats.Invalid++
			errs = append(errs, invalidValue(ClassLoggedOnUser, "Antecedent", logonID, l.Antecedent, err))
			continue
		}
		if byID[logonID] == nil {
			stats.UnknownSession++
			continue
		}
		found[logonID] = append(found[logonID], candidate{account, l.Antecedent})
	}
	ids := make([]string, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, CompareLogonIDs)
	for _, id := range ids {
		cands := found[id]
		slices.SortStableFunc(cands, func(a, b candidate) int {
			return cmp.Or(
				strings.Compare(strings.ToLower(a.account.Domain), strings.ToLower(b.account.Domain)),
				strings.Compare(strings.ToLower(a.account.Name), strings.ToLower(b.account.Name)),
				strings.Compare(a.account.Domain, b.account.Domain),
				strings.Compare(a.account.Name, b.account.Name),
				strings.Compare(a.raw, b.raw),
			)
		})
		kept := cands[0].account
		byID[id].Account = kept
		stats.Joined++
		conflict := false
		for _, c := range cands[1:] {
			if strings.EqualFold(c.account.Domain, kept.Domain) && strings.EqualFold(c.account.Name, kept.Name) {
				continue
			}
			conflict = true
			errs = append(errs, invalidValue(ClassLoggedOnUser, "Antecedent", id, c.raw,
				fmt.Errorf("logon session %s is linked to several accounts; kept %s\\%s, ignored this one", id, kept.Domain, kept.Name)))
		}
		if conflict {
			stats.Conflicting++
		}
	}
	return stats, errs
}

// logonIDOf returns the LogonId a Win32_LoggedOnUser.Dependent names.
func logonIDOf(dependent string) (string, error) {
	p, err := cim.ParseObjectPath(dependent)
	if err != nil {
		return "", err
	}
	if !strings.EqualFold(p.Class, ClassLogonSession) {
		return "", fmt.Errorf("dependent %q: class %q, want %s", dependent, p.Class, ClassLogonSession)
	}
	id, ok := p.Key("LogonId")
	if !ok || id == "" {
		return "", fmt.Errorf("dependent %q: no LogonId key", dependent)
	}
	return id, nil
}

// accountOf returns the account a Win32_LoggedOnUser.Antecedent names. Any
// class with Domain and Name keys is accepted (Win32_Account and its
// subclasses Win32_UserAccount, Win32_SystemAccount, Win32_Group).
func accountOf(antecedent string) (*sessionauditv1.Account, error) {
	p, err := cim.ParseObjectPath(antecedent)
	if err != nil {
		return nil, err
	}
	domain, okD := p.Key("Domain")
	name, okN := p.Key("Name")
	if !okD || !okN {
		return nil, fmt.Errorf("antecedent %q: want keys Domain and Name", antecedent)
	}
	return &sessionauditv1.Account{Domain: domain, Name: name}, nil
}
