package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// Server is a collector: the CollectorService for agents, the QueryService
// for analysts, and the gRPC health service, on one listener. Behind it are
// two gRPC servers with the same services: one for connections with an
// agent certificate, one with small limits for every other connection
// (peers.go). Several Servers (in one process or many) may share one store.
type Server struct {
	cfg   Config
	store *store.Store
	log   *slog.Logger
	// grpc serves connections with an agent certificate, guestGRPC every
	// other one.
	grpc      *grpc.Server
	guestGRPC *grpc.Server
	tlsConfig *tls.Config
	guests    *guestConns
	tapLog    *rateLimiter
	health    *health.Server
	metrics   *metrics
	reg       *prometheus.Registry

	agents      *agentCache
	active      *activeAgents
	inFlight    *inFlight
	ingestSlots chan struct{}
	// lastCommit is when the store last committed a batch (UnixNano, the
	// collector's clock), for the quarantine (quarantine.go).
	lastCommit  atomic.Int64
	heartbeats  *heartbeatGroups
	enrollBySrc *rateLimiter
	enrollAll   *rateLimiter
	renewLimit  *rateLimiter
	skews       skewCache // the clock skews recorded per agent (clockskew.go)

	stop     chan struct{}
	stopOnce sync.Once
	bg       sync.WaitGroup
	web      webServers

	lisMu     sync.Mutex
	listeners []net.Listener
	closing   bool
}

// New returns a collector serving st with cfg. It fails when cfg lacks what
// it needs (a CA; TLS material unless InsecurePlaintextDev) or has a
// negative limit. It does not migrate the store: run store.Migrate first
// (once, from any one process; it is safe to run concurrently).
func New(cfg Config, st *store.Store) (*Server, error) {
	if st == nil {
		return nil, errors.New("server: New: store is nil")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:         cfg,
		store:       st,
		log:         cfg.Logger,
		health:      health.NewServer(),
		agents:      newAgentCache(cfg.AgentCacheTTL),
		active:      &activeAgents{last: make(map[string]time.Time)},
		inFlight:    newInFlight(cfg.MaxInFlightPerAgent),
		ingestSlots: make(chan struct{}, cfg.MaxConcurrentIngests),
		enrollBySrc: newRateLimiter(cfg.EnrollPerSecond, cfg.EnrollBurst),
		enrollAll:   newRateLimiter(cfg.EnrollPerSecond*DefaultEnrollGlobalFactor, cfg.EnrollBurst*DefaultEnrollGlobalFactor),
		renewLimit:  newRateLimiter(float64(cfg.RenewPerHour)/3600, cfg.RenewPerHour),
		tapLog:      newRateLimiter(10, 10),
		stop:        make(chan struct{}),
	}
	s.heartbeats = newHeartbeatGroups(s)
	s.reg = cfg.Registry
	if s.reg == nil {
		s.reg = newRegistry()
	}
	s.metrics = newMetrics(s.reg, func() float64 {
		return float64(s.active.count(s.cfg.Now(), s.cfg.ActiveAgentWindow))
	})

	s.guests = newGuestConns(MaxGuestConnections, s.reg)

	keep := keepalive.ServerParameters{
		Time:                  cfg.KeepaliveTime,
		Timeout:               cfg.KeepaliveTimeout,
		MaxConnectionAge:      cfg.MaxConnectionAge,
		MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace,
	}
	guestKeep := keep
	guestKeep.MaxConnectionIdle = GuestMaxIdle
	common := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             cfg.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.InTapHandle(s.tapHandle),
		// The TLS handshake is done by then (peers.go): this bounds the
		// wait for the client's HTTP/2 preface (gRPC's default is 120 s).
		grpc.ConnectionTimeout(HandshakeTimeout),
		grpc.ChainUnaryInterceptor(s.recoverInterceptor, s.authInterceptor),
	}
	var creds credentials.TransportCredentials = admittedCreds{}
	if cfg.InsecurePlaintextDev {
		creds = insecure.NewCredentials()
		s.metrics.plaintext.Set(1)
	} else {
		s.tlsConfig = pki.ServerTLSConfig(cfg.ServerCertificate, cfg.Trust)
	}
	s.grpc = grpc.NewServer(slices.Concat(common, []grpc.ServerOption{
		grpc.Creds(creds),
		grpc.KeepaliveParams(keep),
		grpc.MaxRecvMsgSize(cfg.MaxMessageBytes),
		grpc.MaxConcurrentStreams(AgentMaxStreams),
		grpc.MaxHeaderListSize(AgentMaxHeaderBytes),
	})...)
	s.guestGRPC = grpc.NewServer(slices.Concat(common, []grpc.ServerOption{
		grpc.Creds(creds),
		grpc.KeepaliveParams(guestKeep),
		grpc.MaxRecvMsgSize(min(GuestMaxMessageBytes, cfg.MaxMessageBytes)),
		grpc.MaxConcurrentStreams(GuestMaxStreams),
		grpc.MaxHeaderListSize(GuestMaxHeaderBytes),
		grpc.InitialWindowSize(GuestWindowBytes),
		grpc.InitialConnWindowSize(GuestWindowBytes),
	})...)
	for _, g := range []*grpc.Server{s.grpc, s.guestGRPC} {
		pb.RegisterCollectorServiceServer(g, &collectorService{s: s})
		pb.RegisterQueryServiceServer(g, &queryService{s: s})
		healthpb.RegisterHealthServer(g, s.health)
		if cfg.EnableReflection {
			reflection.Register(g)
		}
	}
	s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	return s, nil
}

// Serve accepts connections on lis until Shutdown; it returns nil after
// Shutdown and the listener's error otherwise. With InsecurePlaintextDev it
// refuses a listener that is not on a loopback address.
func (s *Server) Serve(lis net.Listener) error {
	if s.cfg.InsecurePlaintextDev {
		if !IsLoopback(lis.Addr()) {
			return fmt.Errorf("server: InsecurePlaintextDev refuses to listen on %s: only a loopback address is allowed without TLS", lis.Addr())
		}
		s.warnPlaintext(lis.Addr())
	}
	s.bg.Add(1)
	go s.watchStore()
	s.log.Info("collector serving", "addr", lis.Addr().String(), "tls", !s.cfg.InsecurePlaintextDev,
		"max_connections", s.cfg.MaxConnections, "max_message_bytes", s.cfg.MaxMessageBytes,
		"reflection", s.cfg.EnableReflection)
	ll := &limitListener{
		Listener: lis,
		max:      s.cfg.MaxConnections,
		onChange: func(n int) { s.metrics.connections.Set(float64(n)) },
		refused:  s.metrics.refusedConn.Inc,
	}
	if !s.track(ll) {
		return nil
	}
	// Every connection is admitted (its handshake done, its kind decided:
	// peers.go) before one of the two gRPC servers reads from it.
	agents, guests := newConnQueue(lis.Addr()), newConnQueue(lis.Addr())
	served := make(chan error, 2)
	go func() { served <- s.grpc.Serve(agents) }()
	go func() { served <- s.guestGRPC.Serve(guests) }()
	err := s.acceptLoop(ll, agents, guests)
	agents.Close()
	guests.Close()
	for range 2 {
		if e := <-served; e != nil && !errors.Is(e, grpc.ErrServerStopped) && !errors.Is(e, net.ErrClosed) {
			s.log.Error("gRPC server stopped", "err", e)
		}
	}
	if s.stopping() {
		return nil
	}
	return err
}

// IsLoopback reports whether addr is a TCP address on a loopback
// interface: the only kind InsecurePlaintextDev serves on.
func IsLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// ListenAndServe listens on Config.ListenAddress and serves; see Serve.
func (s *Server) ListenAndServe() error {
	lis, err := net.Listen("tcp", s.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", s.cfg.ListenAddress, err)
	}
	return s.Serve(lis)
}

// Shutdown stops accepting connections and calls, marks the health service
// NOT_SERVING, and waits for calls in flight (batches being committed) to
// finish until ctx is done; then it closes every connection, cancelling
// what still runs (an agent whose batch was cut off resends it; nothing
// acknowledged is lost). The HTTP listeners of ServeWeb stop the same way.
// It returns ctx's error if it had to cut calls off.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stop) })
	s.closeListeners()
	s.health.Shutdown()
	webDone := make(chan struct{})
	go func() {
		s.web.shutdown(ctx)
		close(webDone)
	}()
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		wg.Go(s.grpc.GracefulStop)
		wg.Go(s.guestGRPC.GracefulStop)
		wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("collector shutdown: deadline reached, cancelling calls in flight", "err", ctx.Err())
		s.grpc.Stop()
		s.guestGRPC.Stop()
		<-done
		err = ctx.Err()
	}
	<-webDone
	s.bg.Wait()
	s.log.Info("collector stopped")
	return err
}

// MetricsHandler serves the collector's Prometheus metrics (and those of
// Config.Registry's other collectors); mount it on a separate HTTP port.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg})
}

// setHealth sets the status of the overall service and of both APIs.
func (s *Server) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	for _, name := range []string{"", pb.CollectorService_ServiceDesc.ServiceName, pb.QueryService_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(name, st)
	}
}

// watchStore pings the store every HealthInterval and sets the health
// status: SERVING while the store answers.
func (s *Server) watchStore() {
	defer s.bg.Done()
	var serving *bool
	check := func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HealthInterval)
		err := s.store.Pool().Ping(ctx)
		cancel()
		ok := err == nil
		if serving != nil && *serving == ok {
			return
		}
		serving = &ok
		if ok {
			s.log.Info("store reachable: serving")
			s.setHealth(healthpb.HealthCheckResponse_SERVING)
		} else {
			s.log.Error("store unreachable: health NOT_SERVING", "err", err)
			s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
		}
	}
	check()
	t := time.NewTicker(s.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			check()
		}
	}
}

// warnPlaintext logs that the collector runs without TLS, now and every
// minute until Shutdown.
func (s *Server) warnPlaintext(addr net.Addr) {
	warn := func() {
		s.log.Warn("INSECURE: collector serving WITHOUT TLS (InsecurePlaintextDev); agent identities cannot be verified; development only",
			"addr", addr.String())
	}
	warn()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				warn()
			}
		}
	}()
}

// retryDelay returns RetryDelay jittered within ±50%, so that agents pushed
// back together do not come back together.
func (s *Server) retryDelay() time.Duration {
	d := s.cfg.RetryDelay
	return d/2 + rand.N(d)
}
