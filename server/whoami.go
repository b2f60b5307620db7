package server

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// WhoAmI authenticates the caller of ctx as Queries does (gRPC incoming
// metadata "authorization: Bearer <token>", or an analyst certificate) and
// returns its name and role, for the web UI's sign-in; it is logged and
// counted as a query called WhoAmI. Errors are gRPC statuses.
func (s *Server) WhoAmI(ctx context.Context) (name, role string, err error) {
	start := time.Now()
	a, err := s.authenticateAnalyst(ctx)
	code := status.Code(err)
	s.metrics.queries.WithLabelValues("WhoAmI", code.String()).Inc()
	if err != nil {
		return "", "", err
	}
	s.log.Info("query", "method", "WhoAmI", "analyst", a.Name, "via", a.Via, "role", string(a.Role),
		"peer", peerAddr(ctx), "code", codes.OK.String(), "seconds", time.Since(start).Seconds())
	return a.Name, string(a.Role), nil
}
