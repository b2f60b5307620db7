package sessionauditv1

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
