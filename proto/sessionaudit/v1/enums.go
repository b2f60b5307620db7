package sessionauditv1

import (
	"fmt"
	"strings"
)

// This file is written by hand: the mapping between WMI's numbers and the
// protocol's enums, which cannot be equal for WMI's zero values (proto3
// reserves 0 for "not set").

// LogonTypeFromWMI maps Win32_LogonSession.LogonType to the enum. A value the
// protocol does not know (1, or above 13) maps to LOGON_TYPE_UNSPECIFIED; the
// caller keeps the raw number in LogonSession.logon_type_raw.
func LogonTypeFromWMI(raw uint32) LogonType {
	switch {
	case raw == 0:
		return LogonType_LOGON_TYPE_SYSTEM
	case raw >= 2 && raw <= 13:
		return LogonType(raw)
	default:
		return LogonType_LOGON_TYPE_UNSPECIFIED
	}
}

// WMIValue returns the Win32_LogonSession.LogonType number t stands for, and
// false for LOGON_TYPE_UNSPECIFIED or a number this version does not know.
func (t LogonType) WMIValue() (uint32, bool) {
	switch {
	case t == LogonType_LOGON_TYPE_SYSTEM:
		return 0, true
	case t >= 2 && t <= 13:
		return uint32(t), true
	default:
		return 0, false
	}
}

// ServerSessionTypeFromWMI maps Win32_ServerSession.SessionType (0 Guest,
// 1 NoEncryption, 2 Other) to the enum; any other value maps to
// SERVER_SESSION_TYPE_UNSPECIFIED and is kept raw by the caller.
func ServerSessionTypeFromWMI(raw uint32) ServerSessionType {
	if raw <= 2 {
		return ServerSessionType(raw + 1)
	}
	return ServerSessionType_SERVER_SESSION_TYPE_UNSPECIFIED
}

// WMIValue returns the Win32_ServerSession.SessionType number t stands for,
// and false for SERVER_SESSION_TYPE_UNSPECIFIED or an unknown number.
func (t ServerSessionType) WMIValue() (uint32, bool) {
	if t >= 1 && t <= 3 {
		return uint32(t) - 1, true
	}
	return 0, false
}

// LogonTypeNames are the short names of the logon types, as every surface
// uses them (the CLI's --type and its rows, the HTTP API's logon_type
// parameter and rows, the web UI, fleetsim's tables); the raw WMI number is
// kept beside the name.
var LogonTypeNames = map[LogonType]string{
	LogonType_LOGON_TYPE_SYSTEM:                    "system",
	LogonType_LOGON_TYPE_INTERACTIVE:               "interactive",
	LogonType_LOGON_TYPE_NETWORK:                   "network",
	LogonType_LOGON_TYPE_BATCH:                     "batch",
	LogonType_LOGON_TYPE_SERVICE:                   "service",
	LogonType_LOGON_TYPE_PROXY:                     "proxy",
	LogonType_LOGON_TYPE_UNLOCK:                    "unlock",
	LogonType_LOGON_TYPE_NETWORK_CLEARTEXT:         "network-cleartext",
	LogonType_LOGON_TYPE_NEW_CREDENTIALS:           "new-credentials",
	LogonType_LOGON_TYPE_REMOTE_INTERACTIVE:        "rdp",
	LogonType_LOGON_TYPE_CACHED_INTERACTIVE:        "cached-interactive",
	LogonType_LOGON_TYPE_CACHED_REMOTE_INTERACTIVE: "cached-rdp",
	LogonType_LOGON_TYPE_CACHED_UNLOCK:             "cached-unlock",
}

// ParseLogonType returns the logon type a short name (as in
// LogonTypeNames, case-insensitive), a proto enum name
// (LOGON_TYPE_REMOTE_INTERACTIVE) or a WMI number (10) stands for.
func ParseLogonType(s string) (LogonType, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	for t, name := range LogonTypeNames {
		if v == name || strings.EqualFold(s, t.String()) || strings.EqualFold(s, strings.TrimPrefix(t.String(), "LOGON_TYPE_")) {
			return t, nil
		}
	}
	var n uint32
	if _, err := fmt.Sscan(v, &n); err == nil && fmt.Sprint(n) == v {
		if t := LogonTypeFromWMI(n); t != LogonType_LOGON_TYPE_UNSPECIFIED {
			return t, nil
		}
	}
	return 0, fmt.Errorf("logon type %q: want one of %s, or a WMI number 0, 2..13", s, strings.Join(LogonTypeList(), ", "))
}

// LogonTypeName names a raw Win32_LogonSession.LogonType as the rows do:
// its short name in LogonTypeNames, or "unknown(N)" for a number this
// version does not know.
func LogonTypeName(raw uint32) string {
	if name, ok := LogonTypeNames[LogonTypeFromWMI(raw)]; ok {
		return name
	}
	return fmt.Sprintf("unknown(%d)", raw)
}

// LogonTypeList returns the short names in WMI order.
func LogonTypeList() []string {
	var out []string
	for t := LogonType_LOGON_TYPE_SYSTEM; t <= LogonType_LOGON_TYPE_CACHED_UNLOCK; t++ {
		out = append(out, LogonTypeNames[t])
	}
	return out
}

// ContentName names a report's content as the proto's oneof does:
// "snapshot", "delta" or "heartbeat"; "empty" when none is set.
func (r *Report) ContentName() string {
	switch r.GetContent().(type) {
	case *Report_Snapshot:
		return "snapshot"
	case *Report_Delta:
		return "delta"
	case *Report_Heartbeat:
		return "heartbeat"
	}
	return "empty"
}
