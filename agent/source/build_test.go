package source

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

func u32(v uint32) *uint32 { return &v }

const (
	invalid     = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_INVALID_VALUE
	queryFailed = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_QUERY_FAILED
	timeout     = sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_TIMEOUT
)

func accountPath(domain, name string) string {
	return `\\.\root\cimv2:Win32_Account.Domain="` + domain + `",Name="` + name + `"`
}

func sessionPath(id string) string {
	return `\\.\root\cimv2:Win32_LogonSession.LogonId="` + id + `"`
}

func TestLogonSessionFromRow(t *testing.T) {
	row := LogonSessionRow{
		AuthenticationPackage: "Kerberos",
		Caption:               "cap",
		Description:           "desc",
		LogonId:               "4294967297",
		LogonType:             u32(10),
		Name:                  "name",
		StartTime:             "20110328152159.578125-420",
		Status:                "OK",
	}
	got, errs := LogonSessionFromRow(row)
	want := &sessionauditv1.LogonSession{
		AuthenticationPackage: "Kerberos",
		Caption:               "cap",
		Description:           "desc",
		LogonId:               "4294967297",
		LogonType:             sessionauditv1.LogonType_LOGON_TYPE_REMOTE_INTERACTIVE,
		LogonTypeRaw:          u32(10),
		Name:                  "name",
		StartTime:             ts(time.Date(2011, 3, 28, 22, 21, 59, 578125000, time.UTC)),
		Status:                "OK",
	}
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	if diff := protoDiff(want, got); diff != "" {
		t.Fatalf("LogonSessionFromRow (want, got):\n%s", diff)
	}
	if got.LogonTypeRaw == row.LogonType {
		t.Error("LogonTypeRaw aliases the row's pointer")
	}
}

func TestLogonSessionFromRowTypes(t *testing.T) {
	for _, tt := range []struct {
		raw  *uint32
		want sessionauditv1.LogonType
	}{
		{nil, sessionauditv1.LogonType_LOGON_TYPE_UNSPECIFIED},
		{u32(0), sessionauditv1.LogonType_LOGON_TYPE_SYSTEM},
		{u32(1), sessionauditv1.LogonType_LOGON_TYPE_UNSPECIFIED},
		{u32(2), sessionauditv1.LogonType_LOGON_TYPE_INTERACTIVE},
		{u32(13), sessionauditv1.LogonType_LOGON_TYPE_CACHED_UNLOCK},
		{u32(42), sessionauditv1.LogonType_LOGON_TYPE_UNSPECIFIED},
	} {
		got, _ := LogonSessionFromRow(LogonSessionRow{LogonId: "1", LogonType: tt.raw})
		if got.GetLogonType() != tt.want {
			t.Errorf("LogonType %v: got %v, want %v", tt.raw, got.GetLogonType(), tt.want)
		}
		if (tt.raw == nil) != (got.LogonTypeRaw == nil) || (tt.raw != nil && *tt.raw != got.GetLogonTypeRaw()) {
			t.Errorf("LogonType %v: raw kept as %v", tt.raw, got.LogonTypeRaw)
		}
	}
}

func TestLogonSessionFromRowInvalidDatetime(t *testing.T) {
	got, errs := LogonSessionFromRow(LogonSessionRow{
		LogonId:     "999",
		StartTime:   "********152159.******+***",
		InstallDate: "",
	})
	if got.StartTime != nil || got.InstallDate != nil {
		t.Errorf("StartTime = %v, InstallDate = %v; want both absent", got.StartTime, got.InstallDate)
	}
	if got.GetLogonId() != "999" {
		t.Errorf("the instance is not reported: %v", got)
	}
	if len(errs) != 1 {
		t.Fatalf("errors = %v, want one", errs)
	}
	e := errs[0]
	if e.GetKind() != invalid || e.GetWmiClass() != ClassLogonSession || e.GetProperty() != "StartTime" ||
		e.GetInstanceKey() != "999" || e.GetRawValue() != "********152159.******+***" || !strings.Contains(e.GetMessage(), "wildcard") {
		t.Errorf("error = %v", e)
	}
}

func TestServerSessionFromRow(t *testing.T) {
	row := ServerSessionRow{
		ActiveTime:      u32(3600),
		ComputerName:    "10.0.12.34",
		IdleTime:        u32(5),
		InstallDate:     "2011",
		ResourcesOpened: u32(2),
		SessionType:     u32(7),
		TransportName:   `\Device\NetbtTcpip_{X}`,
		UserName:        "alice",
	}
	got, errs := ServerSessionFromRow(row)
	want := &sessionauditv1.ServerSession{
		ActiveTime:      u32(3600),
		ComputerName:    "10.0.12.34",
		IdleTime:        u32(5),
		ResourcesOpened: u32(2),
		SessionType:     sessionauditv1.ServerSessionType_SERVER_SESSION_TYPE_UNSPECIFIED,
		SessionTypeRaw:  u32(7),
		TransportName:   `\Device\NetbtTcpip_{X}`,
		UserName:        "alice",
	}
	if diff := protoDiff(want, got); diff != "" {
		t.Fatalf("ServerSessionFromRow (want, got):\n%s", diff)
	}
	if len(errs) != 1 || errs[0].GetProperty() != "InstallDate" || errs[0].GetInstanceKey() != `10.0.12.34\alice` || errs[0].GetRawValue() != "2011" {
		t.Errorf("errors = %v", errs)
	}
	s, _ := ServerSessionFromRow(ServerSessionRow{ComputerName: "x", SessionType: u32(0)})
	if s.GetSessionType() != sessionauditv1.ServerSessionType_SERVER_SESSION_TYPE_GUEST || s.SessionTypeRaw == nil || s.ActiveTime != nil {
		t.Errorf("SessionType 0: %v", s)
	}
}

func TestHostFromRows(t *testing.T) {
	h, errs := HostFromRows("guid", "1.2.3",
		&OperatingSystemRow{Caption: "Microsoft Windows Server 2022 Standard", Version: "10.0.20348", BuildNumber: "20348", LastBootUpTime: "20250106073000.500000+060"},
		&ComputerSystemRow{DNSHostName: "", Name: "FS01", Domain: "corp.contoso.com"})
	want := &sessionauditv1.Host{
		MachineGuid: "guid", AgentVersion: "1.2.3", Hostname: "FS01", Domain: "corp.contoso.com",
		OsCaption: "Microsoft Windows Server 2022 Standard", OsVersion: "10.0.20348", OsBuild: "20348",
		LastBootTime: ts(time.Date(2025, 1, 6, 6, 30, 0, 500000000, time.UTC)),
	}
	if diff := protoDiff(want, h); diff != "" || len(errs) != 0 {
		t.Fatalf("HostFromRows (want, got):\n%s\nerrors: %v", diff, errs)
	}
	h, _ = HostFromRows("g", "v", nil, &ComputerSystemRow{DNSHostName: "fs01", Name: "FS01"})
	if h.GetHostname() != "fs01" || h.GetLastBootTime() != nil {
		t.Errorf("DNSHostName not preferred, or facts invented: %v", h)
	}
	h, errs = HostFromRows("g", "v", &OperatingSystemRow{LastBootUpTime: "bad"}, nil)
	if h.GetLastBootTime() != nil || len(errs) != 1 || errs[0].GetProperty() != "LastBootUpTime" || errs[0].GetWmiClass() != ClassOperatingSystem {
		t.Errorf("bad boot time: host %v, errors %v", h, errs)
	}
}

func sessions(ids ...string) []*sessionauditv1.LogonSession {
	out := make([]*sessionauditv1.LogonSession, len(ids))
	for i, id := range ids {
		out[i] = &sessionauditv1.LogonSession{LogonId: id}
	}
	return out
}

func TestJoinAccounts(t *testing.T) {
	ss := sessions("999", "4294967297", "123456", "777")
	links := []LoggedOnUserRow{
		{accountPath("CONTOSO-WS01", "WS01$"), sessionPath("999")},
		// Key order, host name, unquoted LogonId, case of key names.
		{`\\WS01\root\cimv2:Win32_UserAccount.Name="alice",Domain="CONTOSO"`, `\\WS01\root\cimv2:Win32_LogonSession.logonid=4294967297`},
		// Escapes inside values.
		{accountPath(`CON\\TOSO`, `o\"brien`), sessionPath("123456")},
		// Unknown session: ignored, counted.
		{accountPath("CONTOSO", "bob"), sessionPath("555")},
		// LogonIds compare exactly: "0999" is not "999".
		{accountPath("CONTOSO", "eve"), sessionPath("0999")},
		// Unparseable links.
		{accountPath("CONTOSO", "x"), `Win32_LogonSession.LogonId="12`},
		{`Win32_Account.Name="nodomain"`, sessionPath("777")},
		{accountPath("CONTOSO", "y"), `Win32_Process.Handle="4"`},
	}
	stats, errs := JoinAccounts(ss, links)
	want := map[string]*sessionauditv1.Account{
		"999":        {Domain: "CONTOSO-WS01", Name: "WS01$"},
		"4294967297": {Domain: "CONTOSO", Name: "alice"},
		"123456":     {Domain: `CON\TOSO`, Name: `o"brien`},
		"777":        nil,
	}
	for _, s := range ss {
		if !proto.Equal(s.GetAccount(), want[s.GetLogonId()]) {
			t.Errorf("session %s: account %v, want %v", s.GetLogonId(), s.GetAccount(), want[s.GetLogonId()])
		}
	}
	wantStats := JoinStats{Joined: 3, UnknownSession: 2, Invalid: 3}
	if stats != wantStats {
		t.Errorf("stats = %+v, want %+v", stats, wantStats)
	}
	if len(errs) != 3 {
		t.Fatalf("errors = %v, want 3", errs)
	}
	for _, e := range errs {
		if e.GetKind() != invalid || e.GetWmiClass() != ClassLoggedOnUser || e.GetRawValue() == "" {
			t.Errorf("error %v", e)
		}
	}
	if errs[1].GetProperty() != "Antecedent" || errs[1].GetInstanceKey() != "777" {
		t.Errorf("missing Domain key: error %v, want Antecedent of 777", errs[1])
	}
}

func TestJoinAccountsSeveralAccounts(t *testing.T) {
	links := []LoggedOnUserRow{
		{accountPath("CONTOSO", "zed"), sessionPath("1000")},
		{accountPath("contoso", "Alice"), sessionPath("1000")},
		{accountPath("CONTOSO", "alice"), sessionPath("1000")}, // same account, other case
		{accountPath("CONTOSO", "bob"), sessionPath("2000")},
		{accountPath("CONTOSO", "bob"), sessionPath("2000")}, // duplicate link
	}
	var first *sessionauditv1.Account
	for i := range 20 {
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		shuffled := append([]LoggedOnUserRow(nil), links...)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		ss := sessions("1000", "2000")
		stats, errs := JoinAccounts(ss, shuffled)
		got := ss[0].GetAccount()
		if !strings.EqualFold(got.GetName(), "alice") || !strings.EqualFold(got.GetDomain(), "contoso") {
			t.Fatalf("kept %v, want CONTOSO\\alice (sorts first)", got)
		}
		if first == nil {
			first = got
		} else if !proto.Equal(first, got) {
			t.Fatalf("choice depends on row order: %v then %v", first, got)
		}
		if ss[1].GetAccount().GetName() != "bob" {
			t.Fatalf("duplicate link: account %v", ss[1].GetAccount())
		}
		if stats.Conflicting != 1 || len(errs) != 1 || errs[0].GetInstanceKey() != "1000" || !strings.Contains(errs[0].GetRawValue(), "zed") {
			t.Fatalf("stats %+v, errors %v; want one conflict naming zed on 1000", stats, errs)
		}
	}
}

func baseCollection() *Collection {
	return &Collection{
		TakenAt:         time.Date(2025, 1, 6, 9, 0, 0, 0, time.UTC),
		MachineGUID:     "6b1f0b8e-0000-4000-8000-000000000001",
		AgentVersion:    "dev",
		OperatingSystem: &OperatingSystemRow{Caption: "Windows", Version: "10.0.22631", BuildNumber: "22631", LastBootUpTime: "20250106070000.000000+000"},
		ComputerSystem:  &ComputerSystemRow{DNSHostName: "WS01", Name: "WS01", Domain: "corp.contoso.com"},
		LogonSessions: []LogonSessionRow{
			{LogonId: "999", LogonType: u32(0), AuthenticationPackage: "NTLM", StartTime: "20250106070001.000000+000"},
			{LogonId: "1234567", LogonType: u32(2), AuthenticationPackage: "Kerberos", StartTime: "20250106080000.000000+000"},
			{LogonId: "997", LogonType: u32(5), AuthenticationPackage: "Negotiate", StartTime: "2025010607****.000000+000"},
		},
		LoggedOnUsers: []LoggedOnUserRow{
			{accountPath("CONTOSO", "WS01$"), sessionPath("999")},
			{accountPath("NT AUTHORITY", "LOCAL SERVICE"), sessionPath("997")},
			{accountPath("CONTOSO", "alice"), sessionPath("1234567")},
		},
		ServerSessions: []ServerSessionRow{
			{ComputerName: "WS0123", UserName: "bob", ActiveTime: u32(60)},
			{ComputerName: "10.0.12.34", UserName: "alice", ActiveTime: u32(600)},
		},
	}
}

func TestBuildSnapshot(t *testing.T) {
	snap, stats := BuildSnapshot(baseCollection())
	var ids []string
	for _, s := range snap.GetLogonSessions() {
		ids = append(ids, s.GetLogonId()+"="+s.GetAccount().GetName())
	}
	if got := strings.Join(ids, ","); got != "997=LOCAL SERVICE,999=WS01$,1234567=alice" {
		t.Errorf("logon sessions = %s", got)
	}
	if got := snap.GetServerSessions(); len(got) != 2 || got[0].GetComputerName() != "10.0.12.34" {
		t.Errorf("server sessions = %v", got)
	}
	if snap.GetHost().GetLastBootTime().AsTime() != time.Date(2025, 1, 6, 7, 0, 0, 0, time.UTC) || snap.GetHost().GetMachineGuid() == "" {
		t.Errorf("host = %v", snap.GetHost())
	}
	if !snap.GetTakenAt().AsTime().Equal(time.Date(2025, 1, 6, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("taken_at = %v", snap.GetTakenAt())
	}
	if len(snap.GetErrors()) != 1 || snap.GetErrors()[0].GetInstanceKey() != "997" || stats.InvalidValues != 1 || stats.Join.Joined != 3 {
		t.Errorf("errors = %v, stats = %+v", snap.GetErrors(), stats)
	}
	if IncompleteClasses(snap.GetErrors()) != nil {
		t.Errorf("an INVALID_VALUE error makes a class incomplete")
	}
}

func TestBuildSnapshotRowOrder(t *testing.T) {
	want, _ := BuildSnapshot(baseCollection())
	for i := range 10 {
		c := baseCollection()
		rng := rand.New(rand.NewPCG(uint64(i), 2))
		rng.Shuffle(len(c.LogonSessions), func(a, b int) { c.LogonSessions[a], c.LogonSessions[b] = c.LogonSessions[b], c.LogonSessions[a] })
		rng.Shuffle(len(c.LoggedOnUsers), func(a, b int) { c.LoggedOnUsers[a], c.LoggedOnUsers[b] = c.LoggedOnUsers[b], c.LoggedOnUsers[a] })
		rng.Shuffle(len(c.ServerSessions), func(a, b int) { c.ServerSessions[a], c.ServerSessions[b] = c.ServerSessions[b], c.ServerSessions[a] })
		got, _ := BuildSnapshot(c)
		if diff := protoDiff(want, got); diff != "" {
			t.Fatalf("snapshot depends on row order (want, got):\n%s", diff)
		}
	}
}

func TestBuildSnapshotFailures(t *testing.T) {
	c := baseCollection()
	c.Failures = []ClassFailure{
		{Class: ClassLoggedOnUser, Kind: timeout, Err: errors.New("deadline 30s exceeded")},
		{Class: ClassServerSession, Kind: queryFailed, Err: errors.New("0x80041003 access denied")},
	}
	c.OperatingSystem = nil
	snap, _ := BuildSnapshot(c)
	if len(snap.GetLogonSessions()) != 3 {
		t.Errorf("logon sessions = %d, want 3", len(snap.GetLogonSessions()))
	}
	for _, s := range snap.GetLogonSessions() {
		if s.GetAccount() != nil {
			t.Errorf("session %s has an account though Win32_LoggedOnUser failed", s.GetLogonId())
		}
	}
	if len(snap.GetServerSessions()) != 0 {
		t.Errorf("rows of a failed class are reported: %v", snap.GetServerSessions())
	}
	got := IncompleteClasses(snap.GetErrors())
	for _, class := range []string{ClassLoggedOnUser, ClassServerSession, ClassOperatingSystem} {
		if !got[class] {
			t.Errorf("%s is not marked incomplete: %v", class, snap.GetErrors())
		}
	}
	if got[ClassLogonSession] || got[ClassComputerSystem] {
		t.Errorf("incomplete classes = %v", got)
	}
	if snap.GetErrors()[0].GetMessage() != "deadline 30s exceeded" {
		t.Errorf("message = %q", snap.GetErrors()[0].GetMessage())
	}
	if snap.GetHost().GetLastBootTime() != nil || snap.GetHost().GetHostname() != "WS01" {
		t.Errorf("host = %v", snap.GetHost())
	}

	c = baseCollection()
	c.Failures = []ClassFailure{{Class: ClassLogonSession, Kind: queryFailed}}
	snap, stats := BuildSnapshot(c)
	if len(snap.GetLogonSessions()) != 0 || stats.Join.Joined != 0 {
		t.Errorf("failed Win32_LogonSession: sessions %v, stats %+v", snap.GetLogonSessions(), stats)
	}
}

func TestBuildSnapshotDuplicates(t *testing.T) {
	c := baseCollection()
	c.LogonSessions = append(c.LogonSessions, LogonSessionRow{LogonId: "999", AuthenticationPackage: "dup"}, LogonSessionRow{LogonId: ""})
	c.ServerSessions = append(c.ServerSessions,
		ServerSessionRow{ComputerName: "WS0123", UserName: "bob", ActiveTime: u32(6000)},
		ServerSessionRow{ComputerName: "WS0123", UserName: "bob", ActiveTime: u32(5)},
		ServerSessionRow{ComputerName: "", UserName: "x"})
	snap, stats := BuildSnapshot(c)
	if stats.DroppedLogonSessions != 2 || stats.DroppedServerSessions != 3 {
		t.Errorf("stats = %+v", stats)
	}
	for _, s := range snap.GetLogonSessions() {
		if s.GetAuthenticationPackage() == "dup" {
			t.Errorf("the second of two rows with one LogonId was kept")
		}
	}
	for _, s := range snap.GetServerSessions() {
		if s.GetComputerName() == "WS0123" && s.GetActiveTime() != 6000 {
			t.Errorf("kept the younger of two server sessions with one key: %v", s)
		}
	}
}

func TestCompareLogonIDs(t *testing.T) {
	ids := []string{"4294967297", "999", "1000", "0", "997"}
	want := []string{"0", "997", "999", "1000", "4294967297"}
	sorted := append([]string(nil), ids...)
	for i := range sorted {
		for j := i + 1; j < len(sorted); j++ {
			if CompareLogonIDs(sorted[j], sorted[i]) < 0 {
				sorted[i], sorted[j] = sorted[j], sorted[i]
			}
		}
	}
	if strings.Join(sorted, ",") != strings.Join(want, ",") {
		t.Errorf("sorted = %v, want %v", sorted, want)
	}
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// protoDiff returns "" when want and got are equal messages, else both in
// text form.
func protoDiff(want, got proto.Message) string {
	if proto.Equal(want, got) {
		return ""
	}
	return "want: " + prototext.Format(want) + "\ngot:  " + prototext.Format(got)
}
