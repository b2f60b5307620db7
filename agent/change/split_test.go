package change

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sessionaudit/sessionaudit/proto/limits"
	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// A file server with 50,000 SMB sessions: the tracker's snapshot is split in
// parts within the collector's limits (20,000 sessions and 4 MiB per
// report), with consecutive sequences, and the parts applied in order give
// the snapshot's state; the next report is based on the last part.
func TestNextReportsSplitsLargeSnapshot(t *testing.T) {
	s := newScenario(t, Options{})
	var ss []*sessionauditv1.ServerSession
	for i := range 50000 {
		ss = append(ss, server(fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255), fmt.Sprintf("user%05d", i), 600, 5, 3))
	}
	snap := s.snap([]*sessionauditv1.LogonSession{logon("999", 2, "alice")}, ss)
	reps, err := s.tracker.NextReports(snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) < 3 {
		t.Fatalf("%d reports, want at least 3 parts", len(reps))
	}
	for i, r := range reps {
		p := r.GetSnapshot()
		n := len(p.GetLogonSessions()) + len(p.GetServerSessions())
		if r.GetSequence() != 41+uint64(i) || p.GetPart() != uint32(i+1) || p.GetPartsTotal() != uint32(len(reps)) {
			t.Fatalf("report %d: sequence %d part %d/%d", i, r.GetSequence(), p.GetPart(), p.GetPartsTotal())
		}
		if n > limits.MaxPartSessions || proto.Size(r) > limits.MaxPartBytes+64<<10 {
			t.Errorf("part %d: %d sessions, %d bytes", i+1, n, proto.Size(r))
		}
		if !proto.Equal(p.GetTakenAt(), snap.GetTakenAt()) || p.GetHost() == nil {
			t.Errorf("part %d lacks the snapshot's taken_at or host", i+1)
		}
		if err := s.collector.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	if !proto.Equal(s.collector.Snapshot(), s.tracker.state.Snapshot()) {
		t.Fatal("the parts applied in order do not give the snapshot's state")
	}
	if got := len(s.collector.Snapshot().GetServerSessions()); got != 50000 {
		t.Fatalf("%d server sessions after the parts, want 50000", got)
	}
	s.clock.Advance(time.Minute)
	for _, sv := range ss {
		sv.ActiveTime = u32(660) // the same sessions, a minute older
	}
	r := s.next(s.snap([]*sessionauditv1.LogonSession{logon("999", 2, "alice")}, ss))
	s.want(r, "heartbeat")
	if last := reps[len(reps)-1].GetSequence(); r.GetHeartbeat().GetBaseSequence() != last || r.GetSequence() != last+1 {
		t.Errorf("heartbeat %d on base %d, want %d on %d", r.GetSequence(), r.GetHeartbeat().GetBaseSequence(), last+1, last)
	}
}

// A snapshot within the limits is one report, not split.
func TestNextReportsSmallSnapshotIsOneReport(t *testing.T) {
	s := newScenario(t, Options{})
	reps, err := s.tracker.NextReports(s.snap([]*sessionauditv1.LogonSession{logon("999", 2, "alice")}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].GetSnapshot().GetPartsTotal() != 0 {
		t.Fatalf("%d reports, parts_total %d; want one, unsplit", len(reps), reps[0].GetSnapshot().GetPartsTotal())
	}
}

// Parts are bounded by encoded size as well as by count.
func TestSplitByBytes(t *testing.T) {
	s := newScenario(t, Options{})
	var ss []*sessionauditv1.ServerSession
	for i := range 3000 {
		sv := server(fmt.Sprintf("host%d", i), strings.Repeat("u", 900), 600, 5, 3)
		ss = append(ss, sv)
	}
	r, err := s.tracker.Next(s.snap(nil, ss))
	if err != nil {
		t.Fatal(err)
	}
	parts := Split(r, PartLimits{})
	if len(parts) < 3 {
		t.Fatalf("%d parts for about 2.8 MB of sessions, want at least 3", len(parts))
	}
	for _, p := range parts {
		if sz := proto.Size(p); sz > limits.MaxPartBytes+64<<10 {
			t.Errorf("part %d: %d bytes", p.GetSnapshot().GetPart(), sz)
		}
	}
}

// More than limits.MaxCollectionErrors errors are capped: the errors that
// make a list incomplete are kept, and one summary says how many more of
// which kinds.
func TestCapErrors(t *testing.T) {
	s := newScenario(t, Options{})
	var errs []*sessionauditv1.CollectionError
	for i := range 250 {
		errs = append(errs, &sessionauditv1.CollectionError{Kind: invalid, WmiClass: "Win32_LogonSession",
			Property: "StartTime", InstanceKey: fmt.Sprint(i), Message: "bad datetime"})
	}
	errs = append(errs, classError("Win32_ServerSession", timeout))
	r := s.next(s.snap([]*sessionauditv1.LogonSession{logon("999", 2, "alice")}, nil, errs...))
	got := r.GetSnapshot().GetErrors()
	if len(got) != limits.MaxCollectionErrors {
		t.Fatalf("%d errors, want %d", len(got), limits.MaxCollectionErrors)
	}
	if got[0].GetKind() != timeout {
		t.Errorf("the error that makes a list incomplete is not kept first: %v", got[0])
	}
	sum := got[len(got)-1]
	if sum.GetKind() != invalid || sum.GetMessage() != "152 more errors of kinds INVALID_VALUE Win32_LogonSession: 152" {
		t.Errorf("summary = %v", sum)
	}
	if len(CapErrors(errs[:100])) != 100 {
		t.Error("100 errors were capped")
	}
}

// A change too large for one report (every SMB session of a big file server
// reconnecting) is sent as a full snapshot, in parts.
func TestLargeDeltaIsSentAsSnapshotInParts(t *testing.T) {
	s := newScenario(t, Options{})
	s.next(s.snap(nil, nil))
	s.clock.Advance(time.Minute)
	var ss []*sessionauditv1.ServerSession
	for i := range 25000 {
		ss = append(ss, server(fmt.Sprintf("10.0.%d.%d", i>>8, i&255), "bob", 10, 5, 3))
	}
	reps, err := s.tracker.NextReports(s.snap(nil, ss))
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 3 || kind(reps[0]) != "snapshot" || reps[2].GetSnapshot().GetPart() != 3 {
		t.Fatalf("%d reports, the first a %s; want a snapshot in 3 parts", len(reps), kind(reps[0]))
	}
}
