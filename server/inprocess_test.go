package server_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestInProcessQueries checks that Server.Queries authenticates every
// method of the QueryService (none is left UNIMPLEMENTED) and answers as
// the gRPC API does with a valid token.
func TestInProcessQueries(t *testing.T) {
	e := newEnv(t)
	c := e.start(nil, nil)
	q := c.srv.Queries()
	v := reflect.ValueOf(q)
	iface := reflect.TypeFor[pb.QueryServiceServer]()
	for i := range iface.NumMethod() {
		m := iface.Method(i)
		if m.Name == "mustEmbedUnimplementedQueryServiceServer" || !m.IsExported() {
			continue
		}
		req := reflect.New(m.Type.In(1).Elem())
		for _, ctx := range []context.Context{
			context.Background(),
			metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer sat_nope")),
		} {
			out := v.MethodByName(m.Name).Call([]reflect.Value{reflect.ValueOf(ctx), req})
			err, _ := out[1].Interface().(error)
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s without a valid token: %v, want UNAUTHENTICATED", m.Name, err)
			}
		}
	}

	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+e.token))
	now := time.Now()
	res, err := q.ListLogonSessions(ctx, &pb.ListLogonSessionsRequest{StartTime: timestamppb.New(now.Add(-time.Hour)), EndTime: timestamppb.New(now)})
	if err != nil || len(res.GetLogonSessions()) != 0 {
		t.Errorf("ListLogonSessions with a token on an empty store = %v, %v", res, err)
	}
	_, err = q.ListLogonSessions(ctx, &pb.ListLogonSessionsRequest{StartTime: timestamppb.New(now)})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("ListLogonSessions without end_time: %v, want INVALID_ARGUMENT", err)
	}
}
