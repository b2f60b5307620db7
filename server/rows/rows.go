// Package rows turns query results into flat rows: one record per session
// interval or host, with the same fields, names and values in the analysts'
// CLI (tables, --json, --csv), the HTTP API and the web UI, so that all
// three answer the same question with the same data.
//
// Times are RFC 3339 in UTC with second precision or finer; a session's end
// is given as last_seen (the last report that saw it) and end_before (the
// first that did not), so the uncertainty of an end is explicit; open
// sessions have open=true and no end_before.
//
// CSV output is safe to open in a spreadsheet: a cell that begins with =, +,
// -, @, a tab or a carriage return is prefixed with a single quote (OWASP's
// CSV injection advice), so that no cell is taken for a formula.
package rows

import (
	"fmt"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Logon is one logon session interval.
type Logon struct {
	Host        string `json:"host"`
	HostDomain  string `json:"host_domain"`
	MachineGUID string `json:"machine_guid"`
	// Account is "DOMAIN\name"; empty when the host reported no account.
	Account               string `json:"account"`
	SID                   string `json:"sid"`
	LogonType             string `json:"logon_type"`
	LogonTypeRaw          *int64 `json:"logon_type_raw"`
	LogonID               string `json:"logon_id"`
	AuthenticationPackage string `json:"authentication_package"`
	Start                 string `json:"start"`
	LastSeen              string `json:"last_seen"`
	EndBefore             string `json:"end_before"`
	Open                  bool   `json:"open"`
	BootTime              string `json:"boot_time"`
	// LingeringSince is when the agent first saw the session lingering: an
	// interactive, RDP or cached logon with no process left, kept by LSA
	// because a token to it is still open (the user has most likely logged
	// off). Empty while live or unknown.
	LingeringSince string `json:"lingering_since"`
}

// Server is one server (SMB) session interval: a remote computer and user
// holding a session to Host.
type Server struct {
	Host            string `json:"host"`
	HostDomain      string `json:"host_domain"`
	MachineGUID     string `json:"machine_guid"`
	FromComputer    string `json:"from_computer"`
	UserName        string `json:"user_name"`
	ClientType      string `json:"client_type"`
	TransportName   string `json:"transport_name"`
	SessionType     string `json:"session_type"`
	ResourcesOpened *int64 `json:"resources_opened"`
	IdleSeconds     *int64 `json:"idle_seconds"`
	Start           string `json:"start"`
	LastSeen        string `json:"last_seen"`
	EndBefore       string `json:"end_before"`
	Open            bool   `json:"open"`
}

// Host is one host and its reporting state.
type Host struct {
	Host               string `json:"host"`
	HostDomain         string `json:"host_domain"`
	MachineGUID        string `json:"machine_guid"`
	OS                 string `json:"os"`
	OSVersion          string `json:"os_version"`
	AgentVersion       string `json:"agent_version"`
	AgentID            string `json:"agent_id"`
	LastBootTime       string `json:"last_boot_time"`
	FirstSeen          string `json:"first_seen"`
	LastSeen           string `json:"last_seen"`
	OpenLogonSessions  int64  `json:"open_logon_sessions"`
	OpenServerSessions int64  `json:"open_server_sessions"`
}

var serverTypeNames = map[pb.ServerSessionType]string{
	pb.ServerSessionType_SERVER_SESSION_TYPE_GUEST:         "guest",
	pb.ServerSessionType_SERVER_SESSION_TYPE_NO_ENCRYPTION: "no-encryption",
	pb.ServerSessionType_SERVER_SESSION_TYPE_OTHER:         "other",
}

// Time formats a timestamp for a row: RFC 3339 in UTC, "" when absent.
func Time(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339Nano)
}

// FromLogon flattens a logon session interval.
func FromLogon(l *pb.LogonSessionInterval) Logon {
	s := l.GetSession()
	r := Logon{
		Host: l.GetHost().GetHostname(), HostDomain: l.GetHost().GetDomain(), MachineGUID: l.GetHost().GetMachineGuid(),
		LogonID: s.GetLogonId(), AuthenticationPackage: s.GetAuthenticationPackage(),
		Start: Time(s.GetStartTime()), LastSeen: Time(l.GetEnd().GetLastSeen()), EndBefore: Time(l.GetEnd().GetEndBefore()),
		Open: l.GetEnd().GetOpen(), BootTime: Time(l.GetBootTime()), LingeringSince: Time(s.GetLingeringSince()),
	}
	if a := s.GetAccount(); a != nil {
		r.Account = a.GetDomain() + `\` + a.GetName()
		r.SID = a.GetSid()
	}
	if s.LogonTypeRaw != nil {
		v := int64(s.GetLogonTypeRaw())
		r.LogonTypeRaw = &v
		r.LogonType = pb.LogonTypeName(s.GetLogonTypeRaw())
	}
	return r
}

// FromServer flattens a server session interval.
func FromServer(si *pb.ServerSessionInterval) Server {
	s := si.GetSession()
	r := Server{
		Host: si.GetHost().GetHostname(), HostDomain: si.GetHost().GetDomain(), MachineGUID: si.GetHost().GetMachineGuid(),
		FromComputer: s.GetComputerName(), UserName: s.GetUserName(), ClientType: s.GetClientType(),
		TransportName: s.GetTransportName(),
		Start:         Time(si.GetStartTime()), LastSeen: Time(si.GetEnd().GetLastSeen()), EndBefore: Time(si.GetEnd().GetEndBefore()),
		Open: si.GetEnd().GetOpen(),
	}
	if s.SessionTypeRaw != nil {
		r.SessionType = serverTypeNames[pb.ServerSessionTypeFromWMI(s.GetSessionTypeRaw())]
		if r.SessionType == "" {
			r.SessionType = fmt.Sprintf("unknown(%d)", s.GetSessionTypeRaw())
		}
	}
	if s.ResourcesOpened != nil {
		v := int64(s.GetResourcesOpened())
		r.ResourcesOpened = &v
	}
	if s.IdleTime != nil {
		v := int64(s.GetIdleTime())
		r.IdleSeconds = &v
	}
	return r
}

// FromHost flattens a host status.
func FromHost(h *pb.HostStatus) Host {
	x := h.GetHost()
	return Host{
		Host: x.GetHostname(), HostDomain: x.GetDomain(), MachineGUID: x.GetMachineGuid(),
		OS: x.GetOsCaption(), OSVersion: x.GetOsVersion(), AgentVersion: x.GetAgentVersion(), AgentID: h.GetAgentId(),
		LastBootTime: Time(x.GetLastBootTime()), FirstSeen: Time(h.GetFirstSeen()), LastSeen: Time(h.GetLastSeen()),
		OpenLogonSessions: int64(h.GetOpenLogonSessions()), OpenServerSessions: int64(h.GetOpenServerSessions()),
	}
}
