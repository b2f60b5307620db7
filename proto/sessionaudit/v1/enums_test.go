package sessionauditv1

import (
	"strings"
	"testing"
)

func TestLogonTypeFromWMI(t *testing.T) {
	tests := []struct {
		raw  uint32
		want LogonType
	}{
		{0, LogonType_LOGON_TYPE_SYSTEM},
		{1, LogonType_LOGON_TYPE_UNSPECIFIED},
		{2, LogonType_LOGON_TYPE_INTERACTIVE},
		{3, LogonType_LOGON_TYPE_NETWORK},
		{4, LogonType_LOGON_TYPE_BATCH},
		{5, LogonType_LOGON_TYPE_SERVICE},
		{6, LogonType_LOGON_TYPE_PROXY},
		{7, LogonType_LOGON_TYPE_UNLOCK},
		{8, LogonType_LOGON_TYPE_NETWORK_CLEARTEXT},
		{9, LogonType_LOGON_TYPE_NEW_CREDENTIALS},
		{10, LogonType_LOGON_TYPE_REMOTE_INTERACTIVE},
		{11, LogonType_LOGON_TYPE_CACHED_INTERACTIVE},
		{12, LogonType_LOGON_TYPE_CACHED_REMOTE_INTERACTIVE},
		{13, LogonType_LOGON_TYPE_CACHED_UNLOCK},
		{14, LogonType_LOGON_TYPE_UNSPECIFIED},
		{1 << 31, LogonType_LOGON_TYPE_UNSPECIFIED},
	}
	for _, tt := range tests {
		got := LogonTypeFromWMI(tt.raw)
		if got != tt.want {
			t.Errorf("LogonTypeFromWMI(%d) = %v, want %v", tt.raw, got, tt.want)
		}
		back, ok := got.WMIValue()
		if wantOK := tt.want != LogonType_LOGON_TYPE_UNSPECIFIED; ok != wantOK || (ok && back != tt.raw) {
			t.Errorf("%v.WMIValue() = %d, %v; want %d, %v", got, back, ok, tt.raw, wantOK)
		}
	}
	// Every named enum value round-trips.
	for n := range LogonType_name {
		lt := LogonType(n)
		if raw, ok := lt.WMIValue(); ok && LogonTypeFromWMI(raw) != lt {
			t.Errorf("%v does not round-trip through WMI value %d", lt, raw)
		}
	}
}

func TestServerSessionTypeFromWMI(t *testing.T) {
	tests := []struct {
		raw  uint32
		want ServerSessionType
	}{
		{0, ServerSessionType_SERVER_SESSION_TYPE_GUEST},
		{1, ServerSessionType_SERVER_SESSION_TYPE_NO_ENCRYPTION},
		{2, ServerSessionType_SERVER_SESSION_TYPE_OTHER},
		{3, ServerSessionType_SERVER_SESSION_TYPE_UNSPECIFIED},
		{^uint32(0), ServerSessionType_SERVER_SESSION_TYPE_UNSPECIFIED},
	}
	for _, tt := range tests {
		got := ServerSessionTypeFromWMI(tt.raw)
		if got != tt.want {
			t.Errorf("ServerSessionTypeFromWMI(%d) = %v, want %v", tt.raw, got, tt.want)
		}
		back, ok := got.WMIValue()
		if wantOK := tt.want != ServerSessionType_SERVER_SESSION_TYPE_UNSPECIFIED; ok != wantOK || (ok && back != tt.raw) {
			t.Errorf("%v.WMIValue() = %d, %v; want %d, %v", got, back, ok, tt.raw, wantOK)
		}
	}
}

func TestParseLogonType(t *testing.T) {
	for in, want := range map[string]LogonType{
		"rdp": LogonType_LOGON_TYPE_REMOTE_INTERACTIVE, "RDP": LogonType_LOGON_TYPE_REMOTE_INTERACTIVE,
		"10": LogonType_LOGON_TYPE_REMOTE_INTERACTIVE, "LOGON_TYPE_SERVICE": LogonType_LOGON_TYPE_SERVICE,
		"remote_interactive": LogonType_LOGON_TYPE_REMOTE_INTERACTIVE, "0": LogonType_LOGON_TYPE_SYSTEM,
		"network-cleartext": LogonType_LOGON_TYPE_NETWORK_CLEARTEXT,
	} {
		got, err := ParseLogonType(in)
		if err != nil || got != want {
			t.Errorf("ParseLogonType(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1", "14", "rdp2", "-1", "1e1"} {
		if _, err := ParseLogonType(bad); err == nil || !strings.Contains(err.Error(), "logon type") {
			t.Errorf("ParseLogonType(%q) err = %v", bad, err)
		}
	}
}

func TestReportContentName(t *testing.T) {
	for want, r := range map[string]*Report{
		"snapshot":  {Content: &Report_Snapshot{}},
		"delta":     {Content: &Report_Delta{}},
		"heartbeat": {Content: &Report_Heartbeat{}},
		"empty":     {},
	} {
		if got := r.ContentName(); got != want {
			t.Errorf("ContentName() = %q, want %q", got, want)
		}
	}
	if got := (*Report)(nil).ContentName(); got != "empty" {
		t.Errorf("nil report: ContentName() = %q, want empty", got)
	}
}
