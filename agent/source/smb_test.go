package source

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

func TestNormalizeComputerName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"[fe80::1]", "fe80::1"},
		{"[FE80::C8C0:F65D:3BC6:7313]", "fe80::c8c0:f65d:3bc6:7313"},
		{"[fe80::1%12]", "fe80::1%12"},
		{"[::ffff:10.0.0.1]", "10.0.0.1"},
		{"::ffff:10.0.0.1", "10.0.0.1"},
		{"[::ffff:a00:1]", "10.0.0.1"},
		{"10.0.0.5", "10.0.0.5"},
		{"[10.0.0.5]", "10.0.0.5"},
		{"FS01", "FS01"},
		{"fs01.contoso.com", "fs01.contoso.com"},
		{"[not an address]", "[not an address]"},
		{"[fe80::1", "[fe80::1"},
		{"", ""},
	} {
		if got := NormalizeComputerName(tc.in); got != tc.want {
			t.Errorf("NormalizeComputerName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestServerSessionFromSmbRow(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	row := SmbSessionRow{SessionId: 4415226380377, ScopeName: "FS01", ClusterNodeName: "NODE1",
		ClientComputerName: "[fe80::6484:f325:adff:39eb]", ClientUserName: `CONTOSO\Contoso-HV2$`,
		NumOpens: u64(math.MaxUint32 + 5), SecondsIdle: u32(3), SecondsExists: u32(90), Dialect: "3.1.1",
		TransportName: "TCP", SmbInstance: u32(0)}
	got := ServerSessionFromSmbRow(row)
	want := &sessionauditv1.ServerSession{
		ActiveTime: u32(90), ComputerName: "fe80::6484:f325:adff:39eb", IdleTime: u32(3),
		ResourcesOpened: u32(math.MaxUint32), TransportName: "TCP", UserName: `CONTOSO\Contoso-HV2$`,
		Smb: &sessionauditv1.SmbSession{SessionId: 4415226380377, ScopeName: "FS01", ClusterNodeName: "NODE1",
			ClientComputerName: "fe80::6484:f325:adff:39eb", ClientUserName: `CONTOSO\Contoso-HV2$`,
			NumOpens: u64(math.MaxUint32 + 5), SecondsIdle: u32(3), SecondsExists: u32(90), Dialect: "3.1.1",
			TransportName: "TCP", SmbInstance: u32(0)},
	}
	if !proto.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if s := ServerSessionFromSmbRow(SmbSessionRow{SessionId: 1, ClientComputerName: "x"}); s.ActiveTime != nil || s.ResourcesOpened != nil || s.Smb.NumOpens != nil {
		t.Errorf("NULL numbers not absent: %v", s)
	}
}

func TestBuildServerSessionsCountsDrops(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		c         Collection
		want      *sessionauditv1.ServerSessionBuild
		wantCount int
		wantKept  map[ServerSessionKey]uint32 // key → active_time kept
	}{
		{
			name: "SMB: one client, several sessions under one user",
			c: Collection{ServerSessionSource: ClassSmbSession, SmbSessions: []SmbSessionRow{
				{SessionId: 3, ClientComputerName: "192.168.102.14", ClientUserName: `CONTOSO\HV2$`, SecondsExists: u32(10)},
				{SessionId: 1, ClientComputerName: "192.168.102.14", ClientUserName: `CONTOSO\HV2$`, SecondsExists: u32(50)},
				{SessionId: 2, ClientComputerName: "192.168.102.14", ClientUserName: `CONTOSO\HV2$`, SecondsExists: u32(50)},
				{SessionId: 2, ClientComputerName: "192.168.102.14", ClientUserName: `CONTOSO\HV2$`, SecondsExists: u32(51)},
				{SessionId: 4, ClientComputerName: "", ClientUserName: `CONTOSO\x`},
				{SessionId: 5, ClientComputerName: "[::ffff:10.0.0.1]", ClientUserName: `CONTOSO\bob`, SecondsExists: u32(7)},
			}},
			want: &sessionauditv1.ServerSessionBuild{Source: ClassSmbSession, Rows: 6, DroppedNoComputer: 1,
				DroppedDuplicateKey: 2, DroppedDuplicateSessionId: 1},
			wantCount: 4,
			wantKept: map[ServerSessionKey]uint32{
				{"192.168.102.14", `CONTOSO\HV2$`}: 51,
				{"10.0.0.1", `CONTOSO\bob`}:        7,
			},
		},
		{
			name: "Win32_ServerSession fallback: bracketed and plain forms are one key",
			c: Collection{ServerSessionSource: ClassServerSession, SmbFallbackReason: "MSFT_SmbSession: invalid namespace",
				ServerSessions: []ServerSessionRow{
					{ComputerName: "[fe80::1]", UserName: "alice", ActiveTime: u32(5)},
					{ComputerName: "fe80::1", UserName: "alice", ActiveTime: u32(9)},
					{ComputerName: "", UserName: "bob"},
				}},
			want: &sessionauditv1.ServerSessionBuild{Source: ClassServerSession, FallbackReason: "MSFT_SmbSession: invalid namespace",
				Rows: 3, DroppedNoComputer: 1, DroppedDuplicateKey: 1},
			wantCount: 2,
			wantKept:  map[ServerSessionKey]uint32{{"fe80::1", "alice"}: 9},
		},
		{
			name:     "no source named: Win32_ServerSession",
			c:        Collection{ServerSessions: []ServerSessionRow{{ComputerName: "PC1", UserName: "u"}}},
			want:     &sessionauditv1.ServerSessionBuild{Source: ClassServerSession, Rows: 1},
			wantKept: map[ServerSessionKey]uint32{{"PC1", "u"}: 0},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.TakenAt = at
			snap, stats := BuildSnapshot(&tc.c)
			if !proto.Equal(snap.GetServerSessionBuild(), tc.want) {
				t.Errorf("build = %v, want %v", snap.GetServerSessionBuild(), tc.want)
			}
			if stats.DroppedServerSessions != tc.wantCount {
				t.Errorf("DroppedServerSessions = %d, want %d", stats.DroppedServerSessions, tc.wantCount)
			}
			got := map[ServerSessionKey]uint32{}
			for _, s := range snap.GetServerSessions() {
				got[KeyOfServerSession(s)] = s.GetActiveTime()
			}
			if len(got) != len(tc.wantKept) || len(snap.GetServerSessions()) != len(tc.wantKept) {
				t.Fatalf("kept %v, want %v", got, tc.wantKept)
			}
			for k, v := range tc.wantKept {
				if a, ok := got[k]; !ok || a != v {
					t.Errorf("kept %v, want %v", got, tc.wantKept)
				}
			}
		})
	}
}

func TestBuildServerSessionsFailedClassHasNoBuild(t *testing.T) {
	snap, _ := BuildSnapshot(&Collection{Failures: []ClassFailure{{Class: ClassServerSession,
		Kind: sessionauditv1.CollectionErrorKind_COLLECTION_ERROR_KIND_QUERY_FAILED}}})
	if snap.GetServerSessionBuild() != nil {
		t.Errorf("build = %v for a failed class", snap.GetServerSessionBuild())
	}
}
