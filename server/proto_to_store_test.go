package server

import (
	"errors"
	"strings"
	"testing"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/store"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)

func snapshotReport() *pb.Report {
	return &pb.Report{Sequence: 7, Content: &pb.Report_Snapshot{Snapshot: &pb.Snapshot{
		TakenAt: timestamppb.New(t0),
		Host: &pb.Host{MachineGuid: "0b7a6c1e-8d2f-4e55-9a61-3f2b1c0d9e8a", Hostname: "FS01", Domain: "CONTOSO",
			OsCaption: "Microsoft Windows Server 2022 Standard", OsVersion: "10.0.20348", OsBuild: "20348",
			LastBootTime: timestamppb.New(t0.Add(-72 * time.Hour)), AgentVersion: "0.1.0"},
		LogonSessions: []*pb.LogonSession{
			{LogonId: "999", LogonType: pb.LogonType_LOGON_TYPE_SYSTEM, LogonTypeRaw: proto.Uint32(0),
				AuthenticationPackage: "NTLM", StartTime: timestamppb.New(t0.Add(-72 * time.Hour)),
				Account: &pb.Account{Domain: "CONTOSO", Name: "FS01$", Sid: "S-1-5-18"}},
			{LogonId: "8745123", LogonTypeRaw: proto.Uint32(14), AuthenticationPackage: "Kerberos"},
			{LogonId: "8745124", LogonType: pb.LogonType_LOGON_TYPE_REMOTE_INTERACTIVE},
		},
		ServerSessions: []*pb.ServerSession{{ComputerName: "10.0.12.34", UserName: "alice", ActiveTime: proto.Uint32(600),
			SessionType: pb.ServerSessionType_SERVER_SESSION_TYPE_GUEST, SessionTypeRaw: proto.Uint32(0)}},
		Errors: []*pb.CollectionError{
			{Kind: pb.CollectionErrorKind_COLLECTION_ERROR_KIND_INVALID_VALUE, WmiClass: "Win32_LogonSession", Property: "StartTime", InstanceKey: "8745124", RawValue: "2026********.******+000"},
			{Kind: pb.CollectionErrorKind_COLLECTION_ERROR_KIND_TIMEOUT, WmiClass: "Win32_ServerSession", Message: "deadline exceeded"},
		},
	}}}
}

func TestReportFromProtoSnapshot(t *testing.T) {
	got, err := ReportFromProto(snapshotReport())
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != store.KindSnapshot || got.Sequence != 7 || !got.TakenAt.Equal(t0) {
		t.Fatalf("kind, sequence, time = %v, %d, %v", got.Kind, got.Sequence, got.TakenAt)
	}
	if got.Host == nil || got.Host.Hostname != "FS01" || !got.Host.LastBootTime.Equal(t0.Add(-72*time.Hour)) {
		t.Fatalf("host = %+v", got.Host)
	}
	if len(got.LogonSessions) != 3 {
		t.Fatalf("%d logon sessions, want 3", len(got.LogonSessions))
	}
	wantTypes := []uint32{0, 14, 10} // System via raw 0; undocumented 14 kept; RDP derived from the enum
	for i, want := range wantTypes {
		if lt := got.LogonSessions[i].LogonType; lt == nil || *lt != want {
			t.Errorf("logon session %d: LogonType = %v, want %d", i, lt, want)
		}
	}
	if a := got.LogonSessions[0].Account; a == nil || a.SID != "S-1-5-18" || a.Name != "FS01$" {
		t.Errorf("account = %+v", a)
	}
	if got.LogonSessions[1].Account != nil {
		t.Errorf("a session without account link got %+v", got.LogonSessions[1].Account)
	}
	ss := got.ServerSessions[0]
	if ss.SessionType == nil || *ss.SessionType != 0 || ss.ActiveTime == nil || *ss.ActiveTime != 600 {
		t.Errorf("server session = %+v", ss)
	}
	if len(got.CollectionErrors) != 2 || !got.CollectionErrors[0].ValueOnly || got.CollectionErrors[1].ValueOnly {
		t.Errorf("collection errors = %+v", got.CollectionErrors)
	}
	if !strings.Contains(got.CollectionErrors[0].Message, "StartTime") {
		t.Errorf("value error lost its property: %q", got.CollectionErrors[0].Message)
	}
}

func TestReportFromProtoDeltaAndHeartbeat(t *testing.T) {
	d, err := ReportFromProto(&pb.Report{Sequence: 9, Content: &pb.Report_Delta{Delta: &pb.Delta{
		BaseSequence:           7,
		TakenAt:                timestamppb.New(t0.Add(time.Minute)),
		LogonSessionsUpserted:  []*pb.LogonSession{{LogonId: "9000001", LogonTypeRaw: proto.Uint32(3)}},
		LogonSessionsEnded:     []*pb.LogonSessionKey{{LogonId: "8745123"}},
		ServerSessionsEnded:    []*pb.ServerSessionKey{{ComputerName: "10.0.12.34", UserName: "alice"}},
		ServerSessionsUpserted: []*pb.ServerSession{{ComputerName: "WS0123", UserName: "bob"}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Kind != store.KindDelta || d.BaseSequence != 7 || d.Host != nil ||
		len(d.LogonSessions) != 1 || len(d.EndedLogonIDs) != 1 || d.EndedLogonIDs[0] != "8745123" ||
		len(d.EndedServerSessions) != 1 || d.EndedServerSessions[0].UserName != "alice" || len(d.ServerSessions) != 1 {
		t.Fatalf("delta = %+v", d)
	}
	h, err := ReportFromProto(&pb.Report{Sequence: 10, Content: &pb.Report_Heartbeat{Heartbeat: &pb.Heartbeat{
		BaseSequence: 9, TakenAt: timestamppb.New(t0.Add(2 * time.Minute)),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if h.Kind != store.KindHeartbeat || h.BaseSequence != 9 || !h.TakenAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("heartbeat = %+v", h)
	}
}

func TestReportFromProtoRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(r *pb.Report)
		field  string
	}{
		{"sequence zero", func(r *pb.Report) { r.Sequence = 0 }, "sequence"},
		{"no content", func(r *pb.Report) { r.Content = nil }, "content"},
		{"no time", func(r *pb.Report) { r.GetSnapshot().TakenAt = nil }, "snapshot.taken_at"},
		{"no host", func(r *pb.Report) { r.GetSnapshot().Host = nil }, "snapshot.host"},
		{"time out of range", func(r *pb.Report) { r.GetSnapshot().TakenAt = &timestamppb.Timestamp{Seconds: 1 << 40} }, "snapshot.taken_at"},
		{"bad boot time", func(r *pb.Report) {
			r.GetSnapshot().Host.LastBootTime = &timestamppb.Timestamp{Nanos: -1}
		}, "snapshot.host.last_boot_time"},
		{"enum contradicts raw", func(r *pb.Report) {
			r.GetSnapshot().LogonSessions[0].LogonType = pb.LogonType_LOGON_TYPE_NETWORK
		}, "snapshot.logon_sessions[0].logon_type"},
		{"unknown enum without raw", func(r *pb.Report) {
			r.GetSnapshot().LogonSessions[2].LogonType = pb.LogonType(42)
		}, "snapshot.logon_sessions[2].logon_type"},
		{"session type contradicts raw", func(r *pb.Report) {
			r.GetSnapshot().ServerSessions[0].SessionType = pb.ServerSessionType_SERVER_SESSION_TYPE_OTHER
		}, "snapshot.server_sessions[0].session_type"},
		{"bad start time", func(r *pb.Report) {
			r.GetSnapshot().LogonSessions[1].StartTime = &timestamppb.Timestamp{Seconds: -1 << 40}
		}, "snapshot.logon_sessions[1].start_time"},
		{"base not below sequence", func(r *pb.Report) {
			r.Content = &pb.Report_Heartbeat{Heartbeat: &pb.Heartbeat{BaseSequence: 7, TakenAt: timestamppb.New(t0)}}
		}, "heartbeat.base_sequence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := snapshotReport()
			tt.mutate(r)
			_, err := ReportFromProto(r)
			var re *ReportError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a *ReportError", err)
			}
			if re.Field != tt.field || re.Sequence != r.Sequence {
				t.Errorf("refused field %q of report %d, want %q of %d (%v)", re.Field, re.Sequence, tt.field, r.Sequence, err)
			}
		})
	}
}
