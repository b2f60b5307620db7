package server_test

import (
	"context"
	"testing"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestHostClockFarAhead: a host whose clock is 3 h fast (a VM restored
// from a snapshot, a hardware clock read as local time) used to have every
// batch refused, and its spool blocked for good. Its batches are taken:
// the reports are stored at the times the measured skew gives, the answer
// carries the skew, the hosts list shows it, and once the clock is fixed
// the skew recorded follows.
func TestHostClockFarAhead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	a := e.enroll(c, guidA)
	ac := e.agentClient(c, a)
	q, qctx := e.queryClient(c)

	const fast = 3 * time.Hour
	now0 := time.Now()
	host := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now0.Add(d + fast)) }
	send := func(sentAt time.Time, reports ...*pb.Report) *pb.IngestResponse {
		t.Helper()
		resp, err := ac.Ingest(context.Background(), &pb.IngestRequest{Batch: &pb.Batch{Reports: reports, SentAt: timestamppb.New(sentAt)}})
		if err != nil {
			t.Fatalf("Ingest: %v", err)
		}
		return resp
	}
	near := func(what string, got, want, tolerance time.Duration) {
		t.Helper()
		if d := got - want; d > tolerance || d < -tolerance {
			t.Errorf("%s %v, want %v ± %v", what, got, want, tolerance)
		}
	}

	alice := logon("0x1", "alice")
	alice.StartTime = host(-25 * time.Minute)
	first := snapshot(1, guidA, 0, alice)
	first.GetSnapshot().TakenAt = host(-20 * time.Minute)
	ended := delta(2, 1, 0, nil, "0x1")
	ended.GetDelta().TakenAt = host(-10 * time.Minute)
	still := heartbeat(3, 2, 0)
	still.GetHeartbeat().TakenAt = host(-time.Minute)
	resp := send(time.Now().Add(fast), first, ended, still)
	if resp.GetAcknowledgedSequence() != 3 || resp.GetResyncRequired() {
		t.Fatalf("a backlog 3 h ahead: %v; want acknowledged 3", resp)
	}
	if resp.GetClockSkew() == nil {
		t.Fatal("the answer carries no clock skew")
	}
	near("answered clock skew", resp.GetClockSkew().AsDuration(), fast, 30*time.Second)

	// Stored at the host's times minus the skew, not 3 h ahead.
	var start, lastSeen, endBefore time.Time
	if err := e.st.Pool().QueryRow(context.Background(), `SELECT start_time, last_seen, end_before FROM logon_session WHERE logon_id = '0x1'`).
		Scan(&start, &lastSeen, &endBefore); err != nil {
		t.Fatal(err)
	}
	near("alice's last_seen", lastSeen.Sub(now0), -20*time.Minute, 30*time.Second)
	near("alice's end_before", endBefore.Sub(now0), -10*time.Minute, 30*time.Second)
	if !start.Equal(lastSeen) {
		t.Errorf("alice's start %v, want her first observation %v (her start, by the host's clock, is after it)", start, lastSeen)
	}

	// A heartbeat alone, far ahead: not the grouped path, stored corrected.
	hb := heartbeat(4, 2, 0)
	hb.GetHeartbeat().TakenAt = host(0)
	if resp := send(time.Now().Add(fast), hb); resp.GetAcknowledgedSequence() != 4 || resp.GetResyncRequired() {
		t.Fatalf("a heartbeat 3 h ahead: %v", resp)
	}

	hosts, err := q.ListHosts(qctx, &pb.ListHostsRequest{})
	if err != nil || len(hosts.GetHosts()) != 1 {
		t.Fatalf("ListHosts: %v, %v", hosts, err)
	}
	h := hosts.GetHosts()[0]
	if h.GetClockSkew() == nil || h.GetClockSkewMeasuredAt() == nil {
		t.Fatalf("HostStatus without the clock skew: %v", h)
	}
	near("recorded clock skew", h.GetClockSkew().AsDuration(), fast, 30*time.Second)
	near("skew measured", time.Since(h.GetClockSkewMeasuredAt().AsTime()), 0, time.Minute)
	if ls := h.GetLastSeen().AsTime(); ls.After(time.Now()) || time.Since(ls) > time.Minute {
		t.Errorf("host last_seen %v: want about now, not 3 h ahead", ls)
	}

	// The clock is fixed: the next report is stored as stamped, and the
	// recorded skew follows.
	fixed := heartbeat(5, 2, 0)
	fixed.GetHeartbeat().TakenAt = timestamppb.Now()
	resp = send(time.Now(), fixed)
	if resp.GetAcknowledgedSequence() != 5 {
		t.Fatalf("after the clock was fixed: %v", resp)
	}
	near("answered clock skew after the fix", resp.GetClockSkew().AsDuration(), 0, 30*time.Second)
	hosts, err = q.ListHosts(qctx, &pb.ListHostsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	near("recorded clock skew after the fix", hosts.GetHosts()[0].GetClockSkew().AsDuration(), 0, 30*time.Second)
	if ls := hosts.GetHosts()[0].GetLastSeen().AsTime(); !ls.Equal(fixed.GetHeartbeat().GetTakenAt().AsTime().Truncate(time.Microsecond)) {
		t.Errorf("host last_seen %v, want the fixed report's %v (live, not late)", ls, fixed.GetHeartbeat().GetTakenAt().AsTime())
	}

	// A batch without sent_at: nothing measured, nothing answered.
	none := heartbeat(6, 2, 0)
	none.GetHeartbeat().TakenAt = timestamppb.Now()
	r, err := ac.Ingest(context.Background(), &pb.IngestRequest{Batch: &pb.Batch{Reports: []*pb.Report{none}}})
	if err != nil || r.GetClockSkew() != nil {
		t.Errorf("a batch without sent_at: %v, %v; want no clock skew", r, err)
	}
}
