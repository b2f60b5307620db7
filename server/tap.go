package server

import (
	"context"
	"strings"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// tapHandle runs when a call's headers arrive, before gRPC reads or
// decodes its request (grpc.InTapHandle): a CollectorService call other
// than Enroll without a valid agent certificate is refused there, with the
// status authenticateAgent would give, so that its body is never read
// (docs/design/0003-security.md, "Peers without an agent certificate").
// It runs on the connection's reading goroutine: it only looks at the
// connection's TLS state, never at the store; authInterceptor checks the
// agent's row once the call is admitted.
func (s *Server) tapHandle(ctx context.Context, info *tap.Info) (context.Context, error) {
	m := info.FullMethodName
	if !strings.HasPrefix(m, collectorPrefix) || m == pb.CollectorService_Enroll_FullMethodName {
		return ctx, nil
	}
	var err error
	if state, ok := tlsState(ctx); !ok {
		err = status.Error(codes.Unauthenticated, "a client certificate is required (this collector serves without TLS)")
	} else if _, verr := s.cfg.Trust.VerifyAgent(state, s.cfg.Now()); verr != nil {
		err = pkiStatus(verr)
		if s.tapLog.allow("", s.cfg.Now()) {
			s.log.Warn("agent call refused before its request was read: certificate", "method", m, "peer", peerAddr(ctx), "err", verr)
		}
	} else {
		return ctx, nil
	}
	if m == pb.CollectorService_Ingest_FullMethodName {
		s.metrics.batches.WithLabelValues(batchResult(err)).Inc()
	}
	return nil, err
}
