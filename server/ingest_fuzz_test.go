package server

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/store"
)

// FuzzValidateBatch feeds the collector's batch validation (validateBatch:
// checkReportLimits and ReportFromProto for each report, then the batch's
// own rules) with any bytes that decode as a Batch, as gRPC would hand them
// to Ingest. It must never panic; a refusal must name the batch, the report
// and the field (in the protocol's names); and whatever it accepts the
// store must take: every report passes store.CheckStorable, the store's own
// validation, so that Ingest never refuses what the collector let through.
//
// Seeds: the f.Add batches below (every report kind and field, edge values)
// and testdata/fuzz/FuzzValidateBatch. .ci/fuzz runs it for 60 s in CI.
func FuzzValidateBatch(f *testing.F) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	const guid = "0b7a6c1e-8d2f-4e55-9a61-3f2b1c0d9e8a"
	for _, b := range fuzzBatches(now, guid) {
		raw, err := proto.Marshal(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	// Small limits, so that the fuzzer reaches them.
	s := &Server{cfg: Config{MaxReportsPerBatch: 8, MaxSessionsPerSnapshot: 16, MaxStringBytes: DefaultMaxStringBytes,
		Now: func() time.Time { return now }}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var b pb.Batch
		if err := proto.Unmarshal(raw, &b); err != nil {
			return // gRPC refuses what does not decode, before Ingest
		}
		reports, err := s.validateBatch(&b, guid)
		if err != nil {
			msg := err.Error()
			if reports != nil {
				t.Fatalf("refused (%v) but returned %d reports", err, len(reports))
			}
			if !strings.HasPrefix(msg, "batch") {
				t.Fatalf("the refusal does not name the batch: %q", msg)
			}
			if re, ok := errors.AsType[*ReportError](err); ok && (re.Field == "" || re.Reason == "") {
				t.Fatalf("the refusal names no field or reason: %q", msg)
			}
			if !strings.HasPrefix(msg, "batch:") && !strings.HasPrefix(msg, "batch.reports") {
				t.Fatalf("the refusal names no field of the batch: %q", msg)
			}
			return
		}
		if len(reports) != len(b.GetReports()) {
			t.Fatalf("accepted %d reports of %d: a batch is taken whole or refused whole", len(reports), len(b.GetReports()))
		}
		for i, r := range reports {
			if r.Sequence != b.GetReports()[i].GetSequence() {
				t.Fatalf("report %d: sequence %d became %d", i, b.GetReports()[i].GetSequence(), r.Sequence)
			}
			if err := store.CheckStorable(r, guid, now); err != nil {
				t.Fatalf("batch.reports[%d] accepted by the collector but the store refuses it: %v", i, err)
			}
		}
	})
}

// fuzzBatches are the seeds of FuzzValidateBatch: valid batches of every
// kind, and refused ones next to each rule.
func fuzzBatches(now time.Time, guid string) []*pb.Batch {
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }
	raw := func(n uint32) *uint32 { return &n }
	host := &pb.Host{MachineGuid: guid, Hostname: "FS01", Domain: "CORP", OsCaption: "Microsoft Windows Server 2022",
		OsVersion: "10.0.20348", OsBuild: "20348", LastBootTime: ts(-48 * time.Hour), AgentVersion: "1.0.0"}
	logon := func(id string) *pb.LogonSession {
		return &pb.LogonSession{LogonId: id, LogonType: pb.LogonType_LOGON_TYPE_NETWORK, LogonTypeRaw: raw(3),
			AuthenticationPackage: "Kerberos", StartTime: ts(-time.Hour), Status: "OK",
			Account: &pb.Account{Domain: "CORP", Name: "alice", Sid: "S-1-5-21-1-2-3-1001"}}
	}
	server := func(computer, user string) *pb.ServerSession {
		return &pb.ServerSession{ComputerName: computer, UserName: user, ActiveTime: raw(600), IdleTime: raw(30),
			ClientType: "Windows 10", TransportName: `\Device\NetbiosSmb`, ResourcesOpened: raw(2)}
	}
	snapshot := func(seq uint64, s *pb.Snapshot) *pb.Report {
		return &pb.Report{Sequence: seq, Content: &pb.Report_Snapshot{Snapshot: s}}
	}
	delta := func(seq uint64, d *pb.Delta) *pb.Report {
		return &pb.Report{Sequence: seq, Content: &pb.Report_Delta{Delta: d}}
	}
	heartbeat := func(seq, base uint64, at time.Duration) *pb.Report {
		return &pb.Report{Sequence: seq, Content: &pb.Report_Heartbeat{Heartbeat: &pb.Heartbeat{BaseSequence: base, TakenAt: ts(at)}}}
	}
	full := &pb.Snapshot{Host: host, TakenAt: ts(-10 * time.Minute),
		LogonSessions:  []*pb.LogonSession{logon("0x3e7"), logon("0x1a2b3c"), {LogonId: "0x9", StartTime: ts(-2 * time.Hour)}},
		ServerSessions: []*pb.ServerSession{server("WS0123", "alice"), server("10.0.0.7", "bob")},
		Errors: []*pb.CollectionError{{Kind: pb.CollectionErrorKind_COLLECTION_ERROR_KIND_INVALID_VALUE, WmiClass: "Win32_LogonSession",
			Property: "StartTime", InstanceKey: "0x9", RawValue: "2026", Message: "not a CIM datetime"}}}
	return []*pb.Batch{
		// Valid: a snapshot, a delta and heartbeats, in one batch.
		{Reports: []*pb.Report{
			snapshot(1, full),
			delta(2, &pb.Delta{BaseSequence: 1, TakenAt: ts(-9 * time.Minute),
				LogonSessionsUpserted:  []*pb.LogonSession{logon("0x77")},
				LogonSessionsEnded:     []*pb.LogonSessionKey{{LogonId: "0x1a2b3c"}},
				ServerSessionsUpserted: []*pb.ServerSession{server("WS0200", "carol")},
				ServerSessionsEnded:    []*pb.ServerSessionKey{{ComputerName: "10.0.0.7", UserName: "bob"}}}),
			heartbeat(3, 2, -8*time.Minute), heartbeat(4, 2, -7*time.Minute),
		}, DroppedReports: 2, SentAt: ts(0), Incarnation: 0x1234_5678_9abc_def0},
		// Valid: after lost reports.
		{Reports: []*pb.Report{{Sequence: 9, LostBefore: &pb.LostReports{FirstSequence: 5, LastSequence: 8,
			Reason: pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_DAMAGE},
			Content: &pb.Report_Delta{Delta: &pb.Delta{BaseSequence: 4, TakenAt: ts(-time.Minute), Host: host}}}}},
		// Values the store repairs: NUL bytes, long strings (proto3 strings are
		// valid UTF-8, or they do not decode).
		{Reports: []*pb.Report{snapshot(7, &pb.Snapshot{Host: &pb.Host{MachineGuid: strings.ToUpper(guid), Hostname: "FS\x0001"},
			TakenAt: ts(0), LogonSessions: []*pb.LogonSession{{LogonId: "0x1", AuthenticationPackage: "NTLM\u00a0",
				Caption: strings.Repeat("c", 2000), Account: &pb.Account{Domain: "CORP", Name: "\x00bob"}}}})}},
		// Refused: each next to a rule.
		{},
		{Reports: []*pb.Report{{Sequence: 1}}},
		{Reports: []*pb.Report{heartbeat(2, 1, 0), heartbeat(2, 1, 0)}},
		{Reports: []*pb.Report{heartbeat(3, 3, 0)}},
		{Reports: []*pb.Report{heartbeat(3, 0, 0)}},
		{Reports: []*pb.Report{heartbeat(3, 1, time.Hour)}},
		{Reports: []*pb.Report{snapshot(1, &pb.Snapshot{Host: host})}},
		{Reports: []*pb.Report{snapshot(1, &pb.Snapshot{TakenAt: ts(0)})}},
		{Reports: []*pb.Report{snapshot(1, &pb.Snapshot{Host: &pb.Host{MachineGuid: "11111111-2222-3333-4444-555555555555"}, TakenAt: ts(0)})}},
		{Reports: []*pb.Report{snapshot(1, &pb.Snapshot{Host: host, TakenAt: &timestamppb.Timestamp{Seconds: -1 << 62}})}},
		{Reports: []*pb.Report{snapshot(1, &pb.Snapshot{Host: host, TakenAt: ts(0),
			LogonSessions: []*pb.LogonSession{{LogonId: strings.Repeat("9", 129)}}})}},
		{Reports: []*pb.Report{snapshot(1, &pb.Snapshot{Host: host, TakenAt: ts(0),
			LogonSessions: []*pb.LogonSession{{LogonId: "0x1", LogonType: pb.LogonType_LOGON_TYPE_INTERACTIVE, LogonTypeRaw: raw(3)}}})}},
		{Reports: []*pb.Report{{Sequence: 4, LostBefore: &pb.LostReports{FirstSequence: 3, LastSequence: 4},
			Content: &pb.Report_Heartbeat{Heartbeat: &pb.Heartbeat{BaseSequence: 1, TakenAt: ts(0)}}}}},
		{Reports: []*pb.Report{heartbeat(1<<63, 1, 0)}},
	}
}
