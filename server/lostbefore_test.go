package server

import (
	"errors"
	"testing"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/store"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestReportFromProtoLostBefore: Report.lost_before reaches the store with
// its reason; one that names no reports before its report is refused,
// naming the field.
func TestReportFromProtoLostBefore(t *testing.T) {
	delta := func(lb *pb.LostReports) *pb.Report {
		return &pb.Report{Sequence: 10, LostBefore: lb, Content: &pb.Report_Delta{Delta: &pb.Delta{
			BaseSequence: 9, TakenAt: timestamppb.New(t0)}}}
	}
	got, err := ReportFromProto(delta(&pb.LostReports{FirstSequence: 4, LastSequence: 9,
		Reason: pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_DAMAGE}))
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.LostReports{FirstSequence: 4, LastSequence: 9, Reason: store.GapSpoolDamage}); got.LostBefore == nil || *got.LostBefore != want {
		t.Fatalf("LostBefore = %+v, want %+v", got.LostBefore, want)
	}
	for reason, want := range map[pb.LostReportsReason]store.GapReason{
		pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_OVERFLOW:     store.GapSpoolOverflow,
		pb.LostReportsReason_LOST_REPORTS_REASON_SPOOL_WRITE_FAILED: store.GapSpoolWriteFailed,
		pb.LostReportsReason_LOST_REPORTS_REASON_UNSPECIFIED:        store.GapLostReports,
		pb.LostReportsReason(99):                                    store.GapLostReports, // a newer agent's
	} {
		got, err = ReportFromProto(delta(&pb.LostReports{FirstSequence: 4, LastSequence: 9, Reason: reason}))
		if err != nil || got.LostBefore.Reason != want {
			t.Errorf("reason %v: %+v %v; want %s", reason, got.LostBefore, err, want)
		}
	}
	if got, err := ReportFromProto(delta(nil)); err != nil || got.LostBefore != nil {
		t.Fatalf("without lost_before: %+v %v", got.LostBefore, err)
	}
	for _, tt := range []struct {
		lb    *pb.LostReports
		field string
	}{
		{&pb.LostReports{FirstSequence: 0, LastSequence: 3}, "lost_before.first_sequence"},
		{&pb.LostReports{FirstSequence: 5, LastSequence: 4}, "lost_before.last_sequence"},
		{&pb.LostReports{FirstSequence: 5, LastSequence: 10}, "lost_before.last_sequence"},
	} {
		_, err := ReportFromProto(delta(tt.lb))
		var re *ReportError
		if !errors.As(err, &re) || re.Field != tt.field || re.Sequence != 10 {
			t.Errorf("%v: err %v, want a ReportError naming %s", tt.lb, err, tt.field)
		}
	}
}
