package server

import (
	"context"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/grpc"
)

// Queries returns the QueryService as an in-process API, for the HTTP API
// and the web UI: each call is authenticated, bounded by QueryTimeout,
// logged and counted exactly as the same call over gRPC. The caller puts
// the credentials in ctx as gRPC incoming metadata ("authorization:
// Bearer <token>") and its address as a grpc/peer.Peer; errors are gRPC
// statuses.
func (s *Server) Queries() pb.QueryServiceServer { return authorizedQueries{s: s} }

// authorizedQueries runs each method of queryService through serveQuery.
// A method added to the service but not here answers UNIMPLEMENTED (a test
// calls them all).
type authorizedQueries struct {
	pb.UnimplementedQueryServiceServer
	s *Server
}

// call runs q's method through the collector's analyst authentication.
func call[Req, Resp any](ctx context.Context, s *Server, method string, req Req, h func(context.Context, Req) (Resp, error)) (Resp, error) {
	var zero Resp
	resp, err := s.serveQuery(ctx, req, &grpc.UnaryServerInfo{FullMethod: method}, func(ctx context.Context, req any) (any, error) {
		return h(ctx, req.(Req))
	})
	if err != nil {
		return zero, err
	}
	return resp.(Resp), nil
}

func (a authorizedQueries) q() *queryService { return &queryService{s: a.s} }

// WhoWasOn implements pb.QueryServiceServer.
func (a authorizedQueries) WhoWasOn(ctx context.Context, req *pb.WhoWasOnRequest) (*pb.WhoWasOnResponse, error) {
	return call(ctx, a.s, pb.QueryService_WhoWasOn_FullMethodName, req, a.q().WhoWasOn)
}

// AccountTimeline implements pb.QueryServiceServer.
func (a authorizedQueries) AccountTimeline(ctx context.Context, req *pb.AccountTimelineRequest) (*pb.AccountTimelineResponse, error) {
	return call(ctx, a.s, pb.QueryService_AccountTimeline_FullMethodName, req, a.q().AccountTimeline)
}

// ListLogonSessions implements pb.QueryServiceServer.
func (a authorizedQueries) ListLogonSessions(ctx context.Context, req *pb.ListLogonSessionsRequest) (*pb.ListLogonSessionsResponse, error) {
	return call(ctx, a.s, pb.QueryService_ListLogonSessions_FullMethodName, req, a.q().ListLogonSessions)
}

// ListServerSessions implements pb.QueryServiceServer.
func (a authorizedQueries) ListServerSessions(ctx context.Context, req *pb.ListServerSessionsRequest) (*pb.ListServerSessionsResponse, error) {
	return call(ctx, a.s, pb.QueryService_ListServerSessions_FullMethodName, req, a.q().ListServerSessions)
}

// ListOpenSessions implements pb.QueryServiceServer.
func (a authorizedQueries) ListOpenSessions(ctx context.Context, req *pb.ListOpenSessionsRequest) (*pb.ListOpenSessionsResponse, error) {
	return call(ctx, a.s, pb.QueryService_ListOpenSessions_FullMethodName, req, a.q().ListOpenSessions)
}

// ListHosts implements pb.QueryServiceServer.
func (a authorizedQueries) ListHosts(ctx context.Context, req *pb.ListHostsRequest) (*pb.ListHostsResponse, error) {
	return call(ctx, a.s, pb.QueryService_ListHosts_FullMethodName, req, a.q().ListHosts)
}
