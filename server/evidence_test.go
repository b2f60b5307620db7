package server_test

// Where the collector and the store disagreed about what a record says:
// an acknowledgement that did not acknowledge, times taken for absent, the
// future answered with the present, and credentials given twice.

import (
	"context"
	"strings"
	"testing"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestStoreRejectedReportAcknowledged is in rejected_test.go: its scenario
// here (the store's clock two hours behind the collector's, so that a
// report was "more than an hour ahead" for the store only) no longer makes
// the store reject anything, since the store corrects such a report
// (store/clockskew.go).

// year1 is 0001-01-01T00:00:00Z, the first moment a Timestamp names, and
// Go's zero time.
var year1 = &timestamppb.Timestamp{Seconds: -62135596800}

// TestQueryYearOneIsATime: a range or moment at 0001-01-01T00:00:00Z is a
// time like any other, not "required" (it is Go's zero time).
func TestQueryYearOneIsATime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	a := e.enroll(c, guidA)
	ingest(t, e.agentClient(c, a), snapshot(1, guidA, 0, logon("0x1", "alice")))
	q, ctx := e.queryClient(c)
	day := timestamppb.New(year1.AsTime().Add(24 * time.Hour))

	lr, err := q.ListLogonSessions(ctx, &pb.ListLogonSessionsRequest{StartTime: year1, EndTime: day})
	if err != nil || len(lr.GetLogonSessions()) != 0 {
		t.Errorf("ListLogonSessions over the first day of year 1: %v, %v; want no sessions", lr, err)
	}
	if _, err := q.ListServerSessions(ctx, &pb.ListServerSessionsRequest{StartTime: year1, EndTime: day}); err != nil {
		t.Errorf("ListServerSessions over the first day of year 1: %v", err)
	}
	if _, err := q.AccountTimeline(ctx, &pb.AccountTimelineRequest{Account: `CORP\alice`, StartTime: year1, EndTime: day}); err != nil {
		t.Errorf("AccountTimeline over the first day of year 1: %v", err)
	}
	wr, err := q.WhoWasOn(ctx, &pb.WhoWasOnRequest{Host: guidA, At: year1})
	if err != nil || len(wr.GetLogonSessions())+len(wr.GetServerSessions()) != 0 {
		t.Errorf("WhoWasOn at year 1: %v, %v; want no sessions", wr, err)
	}
	// From year 1 to now: too long, and said so.
	_, err = q.ListLogonSessions(ctx, &pb.ListLogonSessionsRequest{StartTime: year1, EndTime: timestamppb.Now()})
	if msg := status.Convert(err).Message(); status.Code(err) != codes.InvalidArgument || strings.Contains(msg, "required") || !strings.Contains(msg, "longer than") {
		t.Errorf("ListLogonSessions from year 1 to now: %v; want INVALID_ARGUMENT saying the range is too long", err)
	}
}

// TestQueryAboutTheFutureRefused: a range that starts, or a moment, after
// the collector's clock (beyond the clock skew allowed) is refused naming
// the field, rather than answered with the sessions open now as if they
// were known to be open then. A range that starts before now and ends in
// the future is a question about now, and answered.
func TestQueryAboutTheFutureRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	a := e.enroll(c, guidA)
	ingest(t, e.agentClient(c, a), snapshot(1, guidA, 0, logon("0x1", "alice")))
	q, ctx := e.queryClient(c)
	y9999 := timestamppb.New(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
	y9999b := timestamppb.New(time.Date(9999, 1, 2, 0, 0, 0, 0, time.UTC))
	want := func(what string, err error, field string) {
		t.Helper()
		msg := status.Convert(err).Message()
		if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(msg, field+": ") || !strings.Contains(msg, "future") {
			t.Errorf("%s: %v; want INVALID_ARGUMENT %q saying it is in the future", what, err, field)
		}
	}
	_, err := q.ListLogonSessions(ctx, &pb.ListLogonSessionsRequest{StartTime: y9999, EndTime: y9999b})
	want("ListLogonSessions in 9999", err, "start_time")
	_, err = q.ListServerSessions(ctx, &pb.ListServerSessionsRequest{StartTime: y9999, EndTime: y9999b})
	want("ListServerSessions in 9999", err, "start_time")
	_, err = q.AccountTimeline(ctx, &pb.AccountTimelineRequest{Account: `CORP\alice`, StartTime: y9999, EndTime: y9999b})
	want("AccountTimeline in 9999", err, "start_time")
	_, err = q.WhoWasOn(ctx, &pb.WhoWasOnRequest{Host: guidA, At: y9999})
	want("WhoWasOn at 9999", err, "at")

	now := time.Now()
	lr, err := q.ListLogonSessions(ctx, &pb.ListLogonSessionsRequest{StartTime: timestamppb.New(now.Add(-time.Hour)), EndTime: timestamppb.New(now.Add(time.Hour))})
	if err != nil || len(lr.GetLogonSessions()) != 1 {
		t.Errorf("ListLogonSessions from an hour ago to an hour ahead: %v, %v; want alice's session", lr, err)
	}
	if _, err := q.WhoWasOn(ctx, &pb.WhoWasOnRequest{Host: guidA, At: timestamppb.New(now.Add(time.Minute))}); err != nil {
		t.Errorf("WhoWasOn a minute ahead (within the clock skew): %v", err)
	}
}

// TestQueryTwoAuthorizationValuesRefused: several authorization values are
// refused UNAUTHENTICATED, as the HTTP API refuses several Authorization
// headers, instead of the first being used.
func TestQueryTwoAuthorizationValuesRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	q, _ := e.queryClient(c)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.token, "authorization", "Bearer "+e.token)
	_, err := q.ListHosts(ctx, &pb.ListHostsRequest{})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "2 times") {
		t.Errorf("two authorization values: %v; want UNAUTHENTICATED saying it was given twice", err)
	}
}
