package source

// The row types below are what a Windows source queries into. Their field
// names are the WMI property names exactly (github.com/yusufpapurcu/wmi maps
// properties by name and has no struct tags), hence LogonId and not LogonID.
// Datetimes are strings, parsed here with package cim, so that one bad value
// cannot abort a whole query; numbers that WMI may give as NULL are pointers.
// WMI's NULL string is the empty string.

// LogonSessionRow is one instance of Win32_LogonSession.
type LogonSessionRow struct {
	AuthenticationPackage string
	Caption               string
	Description           string
	InstallDate           string // CIM datetime
	LogonId               string //nolint:revive // WMI property name.
	LogonType             *uint32
	Name                  string
	StartTime             string // CIM datetime
	Status                string
}

// LoggedOnUserRow is one instance of the association Win32_LoggedOnUser:
// Antecedent is an object path to a Win32_Account (keys Domain and Name),
// Dependent an object path to a Win32_LogonSession (key LogonId).
type LoggedOnUserRow struct {
	Antecedent string
	Dependent  string
}

// ServerSessionRow is one instance of Win32_ServerSession.
type ServerSessionRow struct {
	ActiveTime      *uint32
	Caption         string
	ClientType      string
	ComputerName    string
	Description     string
	IdleTime        *uint32
	InstallDate     string // CIM datetime
	Name            string
	ResourcesOpened *uint32
	SessionType     *uint32
	Status          string
	TransportName   string
	UserName        string
}

// OperatingSystemRow holds the properties of Win32_OperatingSystem the agent
// reports.
type OperatingSystemRow struct {
	BuildNumber    string
	Caption        string
	LastBootUpTime string // CIM datetime
	Version        string
}

// ComputerSystemRow holds the properties of Win32_ComputerSystem the agent
// reports.
type ComputerSystemRow struct {
	DNSHostName string
	Domain      string
	Name        string
}
