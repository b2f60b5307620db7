package server

import (
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/limits"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestValidateBatchNamesReportAndField: every refusal names the report's
// position, its sequence and the field, in the protocol's names.
func TestValidateBatchNamesReportAndField(t *testing.T) {
	cfg, err := Config{CA: nil}.withDefaults()
	if err == nil {
		t.Fatal("a config without a CA was accepted")
	}
	cfg.MaxReportsPerBatch, cfg.MaxSessionsPerSnapshot, cfg.MaxStringBytes = 3, 2, 16
	cfg.Now = func() time.Time { return t0 }
	s := &Server{cfg: cfg}
	guid := "0b7a6c1e-8d2f-4e55-9a61-3f2b1c0d9e8a"

	snap := func(seq uint64, mod func(*pb.Snapshot)) *pb.Report {
		sn := &pb.Snapshot{TakenAt: timestamppb.New(t0), Host: &pb.Host{MachineGuid: guid}}
		if mod != nil {
			mod(sn)
		}
		return &pb.Report{Sequence: seq, Content: &pb.Report_Snapshot{Snapshot: sn}}
	}
	hb := func(seq, base uint64) *pb.Report {
		return &pb.Report{Sequence: seq, Content: &pb.Report_Heartbeat{Heartbeat: &pb.Heartbeat{BaseSequence: base, TakenAt: timestamppb.New(t0)}}}
	}
	cases := []struct {
		name    string
		reports []*pb.Report
		want    string // "" means valid
	}{
		{"valid", []*pb.Report{snap(1, nil), hb(2, 1)}, ""},
		{"guid in another form", []*pb.Report{snap(1, func(s *pb.Snapshot) { s.Host.MachineGuid = "{" + strings.ToUpper(guid) + "}" })}, ""},
		{"empty", nil, "batch.reports: is empty"},
		{"too many reports", []*pb.Report{snap(1, nil), hb(2, 1), hb(3, 1), hb(4, 1)}, "4 reports, more than the limit of 3"},
		{"order", []*pb.Report{snap(2, nil), snap(1, nil)}, "batch.reports[1]: report 1: sequence: 1 does not follow 2"},
		{"repeated", []*pb.Report{snap(2, nil), snap(2, nil)}, "batch.reports[1]: report 2: sequence"},
		{"huge sequence", []*pb.Report{snap(1<<63, nil)}, "report 9223372036854775808: sequence: "},
		{"no base", []*pb.Report{hb(2, 0)}, "batch.reports[0]: report 2: heartbeat.base_sequence: is required"},
		{"old", []*pb.Report{snap(1, func(s *pb.Snapshot) { s.TakenAt = timestamppb.New(time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)) })},
			"report 1: snapshot.taken_at: 1601-01-01T00:00:00Z is before 1990"},
		// A clock far ahead is the store's to correct, not a refusal: it
		// blocked the host's delivery for good.
		{"future", []*pb.Report{snap(1, func(s *pb.Snapshot) { s.TakenAt = timestamppb.New(t0.Add(2 * time.Hour)) })}, ""},
		{"other host", []*pb.Report{snap(1, func(s *pb.Snapshot) { s.Host.MachineGuid = "00000000-0000-4000-8000-000000000001" })},
			"report 1: snapshot.host.machine_guid: "},
		{"parts", []*pb.Report{snap(1, func(s *pb.Snapshot) { s.Part, s.PartsTotal = 1, 2 }), snap(2, func(s *pb.Snapshot) { s.Part, s.PartsTotal = 2, 2 })}, ""},
		{"part beyond its total", []*pb.Report{snap(1, func(s *pb.Snapshot) { s.Part, s.PartsTotal = 3, 2 })}, "report 1: snapshot.part: part 3 of 2"},
		{"one part", []*pb.Report{snap(1, func(s *pb.Snapshot) { s.Part, s.PartsTotal = 1, 1 })}, "report 1: snapshot.part: part 1 of 1"},
		{"too many sessions", []*pb.Report{snap(1, func(s *pb.Snapshot) {
			s.LogonSessions = []*pb.LogonSession{{LogonId: "1"}, {LogonId: "2"}}
			s.ServerSessions = []*pb.ServerSession{{ComputerName: "x"}}
		})}, "report 1: snapshot: 3 sessions, more than the limit of 2"},
		{"long string", []*pb.Report{snap(1, func(s *pb.Snapshot) {
			s.LogonSessions = []*pb.LogonSession{{LogonId: "1", Account: &pb.Account{Name: strings.Repeat("a", 17)}}}
		})}, "report 1: snapshot.logon_sessions[0].account.name: 17 bytes, more than 16"},
		{"logon id too long for the store", []*pb.Report{snap(1, func(s *pb.Snapshot) {
			s.LogonSessions = []*pb.LogonSession{{LogonId: "1"}, {LogonId: strings.Repeat("9", limits.MaxKeyBytes+1)}}
		})}, "report 1: snapshot.logon_sessions[1].logon_id: 129 bytes, more than 128"},
		{"ended logon id too long for the store", []*pb.Report{{Sequence: 2, Content: &pb.Report_Delta{Delta: &pb.Delta{
			BaseSequence: 1, TakenAt: timestamppb.New(t0),
			LogonSessionsEnded: []*pb.LogonSessionKey{{LogonId: strings.Repeat("9", limits.MaxKeyBytes+1)}}}}}},
			"report 2: delta.logon_sessions_ended[0].logon_id: 129 bytes, more than 128"},
		{"delta fields named as in the proto", []*pb.Report{{Sequence: 2, Content: &pb.Report_Delta{Delta: &pb.Delta{
			BaseSequence: 1, TakenAt: timestamppb.New(t0),
			LogonSessionsUpserted: []*pb.LogonSession{{LogonId: "1", Caption: strings.Repeat("c", 17)}}}}}},
			"report 2: delta.logon_sessions_upserted[0].caption: 17 bytes"},
		{"server session key too long for the store", []*pb.Report{{Sequence: 2, Content: &pb.Report_Delta{Delta: &pb.Delta{
			BaseSequence: 1, TakenAt: timestamppb.New(t0),
			ServerSessionsEnded: []*pb.ServerSessionKey{{ComputerName: "10.0.0.5", UserName: strings.Repeat("u", limits.MaxStringBytes+1)}}}}}},
			"report 2: delta.server_sessions_ended[0].user_name: 1025 bytes, more than 1024"},
		{"long SMB mirror string", []*pb.Report{snap(1, func(s *pb.Snapshot) {
			s.ServerSessions = []*pb.ServerSession{{ComputerName: "x", Smb: &pb.SmbSession{SessionId: 1, Dialect: strings.Repeat("3", 17)}}}
		})}, "report 1: snapshot.server_sessions[0].smb.dialect: 17 bytes"},
		{"long fallback reason", []*pb.Report{{Sequence: 2, Content: &pb.Report_Delta{Delta: &pb.Delta{
			BaseSequence: 1, TakenAt: timestamppb.New(t0),
			ServerSessionBuild: &pb.ServerSessionBuild{Source: "x", FallbackReason: strings.Repeat("r", 17)}}}}},
			"report 2: delta.server_session_build.fallback_reason: 17 bytes"},
		{"server session build", []*pb.Report{snap(1, func(s *pb.Snapshot) {
			s.ServerSessions = []*pb.ServerSession{{ComputerName: "fe80::1", Smb: &pb.SmbSession{SessionId: 7, Dialect: "3.1.1"}}}
			s.ServerSessionBuild = &pb.ServerSessionBuild{Source: "MSFT_SmbSession", Rows: 2, DroppedDuplicateKey: 1}
		})}, ""},
		{"long host string", []*pb.Report{snap(1, func(s *pb.Snapshot) { s.Host.Hostname = strings.Repeat("h", 17) })},
			"report 1: snapshot.host.hostname: 17 bytes"},
		{"enum contradicts raw", []*pb.Report{snap(1, func(s *pb.Snapshot) {
			s.LogonSessions = []*pb.LogonSession{{LogonId: "1", LogonType: pb.LogonType_LOGON_TYPE_NETWORK, LogonTypeRaw: proto.Uint32(2)}}
		})}, "report 1: snapshot.logon_sessions[0].logon_type: "},
	}
	for _, tc := range cases {
		_, err := s.validateBatch(&pb.Batch{Reports: tc.reports}, guid)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && err == nil:
			t.Errorf("%s: accepted", tc.name)
		case tc.want != "" && !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: %q does not contain %q", tc.name, err, tc.want)
		}
	}
}

// TestPageTokens: a token works only for its query and parameters.
func TestPageTokens(t *testing.T) {
	req := &pb.ListOpenSessionsRequest{Host: "fs01", PageSize: 10}
	tok := pageToken("ListOpenSessions", req, "c1:cursor")
	var p params
	if got := p.cursor("ListOpenSessions", &pb.ListOpenSessionsRequest{Host: "fs01", PageSize: 50, PageToken: tok}, tok); got != "c1:cursor" || p.err != nil {
		t.Fatalf("own token: %q, %v", got, p.err)
	}
	for name, try := range map[string]func(*params){
		"other filter": func(p *params) { p.cursor("ListOpenSessions", &pb.ListOpenSessionsRequest{Host: "fs02"}, tok) },
		"other method": func(p *params) { p.cursor("ListHosts", &pb.ListHostsRequest{}, tok) },
		"garbage":      func(p *params) { p.cursor("ListOpenSessions", req, "c1:cursor") },
		"bad base64":   func(p *params) { p.cursor("ListOpenSessions", req, tokenPrefix+"!!!") },
	} {
		var p params
		try(&p)
		if p.err == nil || !strings.Contains(p.err.Error(), "page_token") {
			t.Errorf("%s: %v", name, p.err)
		}
	}
}
