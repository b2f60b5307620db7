package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/store"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// agentCaller is the verified agent of a call: identity from its
// certificate, checked against its row in the store.
type agentCaller struct {
	pki.AgentIdentity
}

// analystCaller is the verified analyst of a query: by API token or
// analyst certificate.
type analystCaller struct {
	// Name is the token's name or the certificate's analyst name.
	Name string
	// Via is "token" or "certificate".
	Via  string
	Role pki.Role
}

type agentKey struct{}
type analystKey struct{}

func agentFrom(ctx context.Context) (agentCaller, bool) {
	a, ok := ctx.Value(agentKey{}).(agentCaller)
	return a, ok
}

func analystFrom(ctx context.Context) (analystCaller, bool) {
	a, ok := ctx.Value(analystKey{}).(analystCaller)
	return a, ok
}

const (
	collectorPrefix = "/" + "sessionaudit.v1.CollectorService" + "/"
	queryPrefix     = "/" + "sessionaudit.v1.QueryService" + "/"
)

// authInterceptor authenticates every call of the two APIs before its
// handler runs: Enroll needs nothing (its handler checks the secret); every
// other CollectorService call needs an enabled agent's certificate; every
// QueryService call a token or an analyst certificate. Health and
// reflection are open.
func (s *Server) authInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	switch {
	case info.FullMethod == pb.CollectorService_Enroll_FullMethodName:
		return handler(ctx, req)
	case strings.HasPrefix(info.FullMethod, collectorPrefix):
		a, err := s.authenticateAgent(ctx, info.FullMethod)
		if err != nil {
			if info.FullMethod == pb.CollectorService_Ingest_FullMethodName {
				s.metrics.batches.WithLabelValues(batchResult(err)).Inc()
			}
			return nil, err
		}
		return handler(context.WithValue(ctx, agentKey{}, a), req)
	case strings.HasPrefix(info.FullMethod, queryPrefix):
		return s.serveQuery(ctx, req, info, handler)
	default:
		return handler(ctx, req)
	}
}

// recoverInterceptor turns a panic in a handler into INTERNAL, so that one
// bad call does not take the collector down.
func (s *Server) recoverInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	return handler(ctx, req)
}

// tlsState returns the TLS state of the call's connection; false without
// TLS.
func tlsState(ctx context.Context) (tls.ConnectionState, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return tls.ConnectionState{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return tls.ConnectionState{}, false
	}
	return info.State, true
}

// peerAddr returns the caller's network address, for logs.
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// authenticateAgent verifies the caller's agent certificate (C1) and its
// row in the store (C2): enrolled, enabled, bound to the certificate's
// machine GUID.
func (s *Server) authenticateAgent(ctx context.Context, method string) (agentCaller, error) {
	state, ok := tlsState(ctx)
	if !ok {
		return agentCaller{}, status.Error(codes.Unauthenticated, "a client certificate is required (this collector serves without TLS)")
	}
	id, err := s.cfg.Trust.VerifyAgent(state, s.cfg.Now())
	if err != nil {
		s.log.Warn("agent call refused: certificate", "method", method, "peer", peerAddr(ctx), "err", err)
		return agentCaller{}, pkiStatus(err)
	}
	agent, err := s.agents.get(ctx, s.store, id.AgentID, s.cfg.Now())
	if err == nil && !latestSerial(agent, id.Serial) {
		// Not the latest certificate: another collector may have renewed the
		// agent, or seen the latest used, within the cache's lifetime; look
		// again before deciding (rare: a lost Renew response, or a thief).
		s.agents.forget(id.AgentID)
		agent, err = s.agents.get(ctx, s.store, id.AgentID, s.cfg.Now())
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.log.Warn("agent call refused: agent not enrolled", "method", method, "agent", id.AgentID, "peer", peerAddr(ctx))
		return agentCaller{}, status.Errorf(codes.PermissionDenied, "agent %s is not enrolled with this collector", id.AgentID)
	case err != nil && ctx.Err() != nil:
		return agentCaller{}, status.FromContextError(ctx.Err()).Err()
	case err != nil:
		s.metrics.storeErrors.Inc()
		s.log.Error("agent lookup failed", "method", method, "agent", id.AgentID, "err", err)
		return agentCaller{}, s.unavailable("the store is unavailable")
	case agent.Disabled:
		s.log.Warn("agent call refused: agent disabled", "method", method, "agent", id.AgentID, "peer", peerAddr(ctx))
		return agentCaller{}, status.Errorf(codes.PermissionDenied, "agent %s is disabled", id.AgentID)
	case !knownSerial(agent, id.Serial):
		// C6: only the latest certificate speaks for the agent, and the one
		// before it (whose holder may have lost the Renew response) until
		// the latest has been used: then two parties hold the agent's key.
		s.keyReuse(ctx, method, agent, id)
		return agentCaller{}, status.Errorf(codes.PermissionDenied, "certificate %s of agent %s has been superseded; enroll again", id.Serial, id.AgentID)
	case !strings.EqualFold(agent.MachineGUID, id.MachineGUID):
		s.log.Error("agent call refused: certificate's machine GUID is not the agent's", "method", method,
			"agent", id.AgentID, "cert_guid", id.MachineGUID, "agent_guid", agent.MachineGUID, "peer", peerAddr(ctx))
		return agentCaller{}, status.Errorf(codes.PermissionDenied, "agent %s is not bound to machine %s", id.AgentID, id.MachineGUID)
	}
	if latestSerial(agent, id.Serial) && agent.CertSerial != "" && agent.CertUsedAt.IsZero() {
		// The first call with the latest certificate: from now on the
		// previous one is refused (C6). Recorded before the call goes on, so
		// that no call with the latest is accepted unrecorded.
		if _, err := s.store.MarkAgentCertificateUsed(ctx, id.AgentID, id.Serial); err != nil {
			if ctx.Err() != nil {
				return agentCaller{}, status.FromContextError(ctx.Err()).Err()
			}
			s.metrics.storeErrors.Inc()
			s.log.Error("agent lookup failed: recording the use of its latest certificate", "method", method, "agent", id.AgentID, "err", err)
			return agentCaller{}, s.unavailable("the store is unavailable")
		}
		s.agents.forget(id.AgentID)
	}
	s.active.seen(id.AgentID, s.cfg.Now())
	return agentCaller{id}, nil
}

// keyReuse raises the alert of a call with a superseded certificate of
// agent (C6): an ERROR line, sessionaudit_agent_key_reuse_total, and the
// agent's flag in the store (agent list, hosts list).
func (s *Server) keyReuse(ctx context.Context, method string, agent store.Agent, id pki.AgentIdentity) {
	s.metrics.keyReuse.WithLabelValues(path.Base(method)).Inc()
	s.log.Error("ALERT agent call refused: superseded certificate after its successor was used (agent key in use twice: copied key or cloned machine); agent flagged",
		"method", method, "agent", id.AgentID, "machine_guid", agent.MachineGUID, "hostname", agent.Hostname,
		"serial", id.Serial, "latest", agent.CertSerial, "previous", agent.PreviousCertSerial,
		"latest_used_at", agent.CertUsedAt, "peer", peerAddr(ctx))
	if err := s.store.FlagAgentKeyReuse(ctx, id.AgentID, id.Serial); err != nil {
		s.metrics.storeErrors.Inc()
		s.log.Error("flagging the agent failed", "agent", id.AgentID, "err", err)
	}
	s.agents.forget(id.AgentID)
}

// authenticateAnalyst accepts an API token ("authorization: Bearer ...")
// or, without one, an analyst certificate. A token that is present but
// wrong is refused even if a certificate would do: the caller meant the
// token.
func (s *Server) authenticateAnalyst(ctx context.Context) (analystCaller, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if vals := md.Get("authorization"); len(vals) > 0 {
			if len(vals) > 1 {
				// As the HTTP API: which one would the caller mean?
				return analystCaller{}, status.Errorf(codes.Unauthenticated, "authorization metadata given %d times; send one \"Bearer <token>\"", len(vals))
			}
			scheme, token, found := strings.Cut(vals[0], " ")
			if !found || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
				return analystCaller{}, status.Error(codes.Unauthenticated, `authorization metadata must be "Bearer <token>"`)
			}
			t, err := s.store.VerifyAPIToken(ctx, strings.TrimSpace(token))
			switch {
			case errors.Is(err, store.ErrBadToken) || errors.Is(err, store.ErrNotFound):
				s.log.Warn("query refused: API token not valid", "peer", peerAddr(ctx))
				return analystCaller{}, status.Error(codes.Unauthenticated, "API token not valid")
			case err != nil && ctx.Err() != nil:
				return analystCaller{}, status.FromContextError(ctx.Err()).Err()
			case err != nil:
				s.metrics.storeErrors.Inc()
				s.log.Error("API token check failed", "err", err)
				return analystCaller{}, s.unavailable("the store is unavailable")
			}
			return analystCaller{Name: t.Name, Via: "token", Role: pki.Role(t.Role)}, nil
		}
	}
	state, ok := tlsState(ctx)
	if !ok {
		return analystCaller{}, status.Error(codes.Unauthenticated, "an API token or an analyst certificate is required")
	}
	id, err := s.cfg.Trust.VerifyAnalyst(state, s.cfg.Now())
	if err != nil {
		s.log.Warn("query refused: certificate", "peer", peerAddr(ctx), "err", err)
		if errors.Is(err, pki.ErrNoClientCertificate) {
			return analystCaller{}, status.Error(codes.Unauthenticated, "an API token or an analyst certificate is required")
		}
		return analystCaller{}, pkiStatus(err)
	}
	return analystCaller{Name: id.Name, Via: "certificate", Role: id.Role}, nil
}

// pkiStatus maps server/pki's errors to a status, as docs/design/0003-security.md C1 says.
func pkiStatus(err error) error {
	switch {
	case errors.Is(err, pki.ErrAnalystCertificate):
		return status.Error(codes.PermissionDenied, "an analyst certificate cannot call the collector service")
	case errors.Is(err, pki.ErrAgentCertificate):
		return status.Error(codes.PermissionDenied, "an agent certificate cannot query")
	case errors.Is(err, pki.ErrNoClientCertificate):
		return status.Error(codes.Unauthenticated, "a client certificate is required")
	case errors.Is(err, pki.ErrBadIdentity):
		return status.Error(codes.Unauthenticated, "the client certificate's identity is malformed")
	default:
		return status.Error(codes.Unauthenticated, "the client certificate is not trusted (unknown CA, expired, or not for client authentication)")
	}
}

// unavailable is UNAVAILABLE with a google.rpc.RetryInfo of a jittered
// delay: the caller keeps its data and retries after it.
func (s *Server) unavailable(msg string) error {
	st := status.New(codes.Unavailable, msg)
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(s.retryDelay())}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// agentCache keeps agent rows for a few seconds, so that an agent's calls
// do not each cost a lookup, while a disabled agent is refused within ttl.
type agentCache struct {
	ttl time.Duration

	mu      sync.Mutex
	entries map[string]cachedAgent
}

type cachedAgent struct {
	agent store.Agent
	at    time.Time
}

func newAgentCache(ttl time.Duration) *agentCache {
	return &agentCache{ttl: ttl, entries: make(map[string]cachedAgent)}
}

func (c *agentCache) get(ctx context.Context, st *store.Store, id string, now time.Time) (store.Agent, error) {
	if c.ttl > 0 {
		c.mu.Lock()
		e, ok := c.entries[id]
		c.mu.Unlock()
		if ok && now.Sub(e.at) < c.ttl && now.Sub(e.at) >= 0 {
			return e.agent, nil
		}
	}
	a, err := st.Agent(ctx, id)
	if err != nil {
		return a, err
	}
	if c.ttl > 0 {
		c.mu.Lock()
		if len(c.entries) > 100000 {
			clear(c.entries)
		}
		c.entries[id] = cachedAgent{agent: a, at: now}
		c.mu.Unlock()
	}
	return a, nil
}

// forget drops id's entry, after this collector changed the agent.
func (c *agentCache) forget(id string) {
	c.mu.Lock()
	delete(c.entries, id)
	c.mu.Unlock()
}

// batchResult is the batches_total result of an authentication failure.
func batchResult(err error) string {
	switch status.Code(err) {
	case codes.PermissionDenied:
		return resultDenied
	case codes.Unavailable:
		return resultUnavailable
	default:
		return resultUnauth
	}
}

// knownSerial reports whether serial may speak for the agent (C6): its
// latest certificate, or the one before it while the latest has not been
// used (a holder that lost the Renew response). An agent without a
// recorded certificate (not enrolled through a collector) is not checked.
func knownSerial(a store.Agent, serial string) bool {
	return latestSerial(a, serial) ||
		(a.PreviousCertSerial != "" && strings.EqualFold(a.PreviousCertSerial, serial) && a.CertUsedAt.IsZero())
}

// latestSerial reports whether serial is the agent's latest certificate
// (true for an agent without a recorded certificate).
func latestSerial(a store.Agent, serial string) bool {
	return a.CertSerial == "" || strings.EqualFold(a.CertSerial, serial)
}
