package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"
)

// Every connection is admitted here before gRPC reads anything from it
// (docs/design/0003-security.md, "Peers without an agent certificate"): the
// collector completes the TLS handshake itself and hands the connection to
// one of two gRPC servers. A peer whose certificate verifies as an agent's
// goes to the agents' server (Config.MaxMessageBytes, AgentMaxStreams);
// every other peer (an agent enrolling, an analyst, a probe, an attacker)
// is a guest: GuestMaxMessageBytes, GuestMaxStreams, GuestMaxHeaderBytes,
// fixed flow-control windows, at most MaxGuestConnections at once. gRPC
// limits are per server, not per call, hence two servers. Per call, the tap
// (tap.go) still refuses an agent method without a valid agent certificate
// before its request is read, and the interceptor checks the rest.
const (
	// AgentMaxStreams is how many calls a connection with an agent
	// certificate may have open at once (an agent makes at most
	// MaxInFlightPerAgent Ingest calls and a Renew; gRPC clients queue
	// further calls rather than fail).
	AgentMaxStreams = 8
	// AgentMaxHeaderBytes bounds the metadata of one call on an agent's
	// connection (gRPC's default is 16 MiB).
	AgentMaxHeaderBytes = 64 << 10
	// GuestMaxMessageBytes bounds one request of a guest: an EnrollRequest
	// (a CSR of at most 16 KiB, an expired certificate, a proof, host facts)
	// or a query request (strings of at most 1 KiB, a page token).
	GuestMaxMessageBytes = 64 << 10
	// GuestMaxStreams is how many calls one guest connection may have open
	// at once.
	GuestMaxStreams = 4
	// GuestMaxHeaderBytes bounds the metadata of one guest call (an
	// authorization token fits many times over).
	GuestMaxHeaderBytes = 16 << 10
	// GuestWindowBytes is the fixed HTTP/2 flow-control window of a guest
	// stream and connection (gRPC's minimum): setting it turns off the
	// window growth gRPC otherwise allows (up to 16 MiB per connection).
	GuestWindowBytes = 64 << 10
	// GuestMaxIdle closes a guest connection without calls for this long;
	// clients reconnect when they need to.
	GuestMaxIdle = 2 * time.Minute
	// MaxGuestConnections bounds the guest connections open at once,
	// within Config.MaxConnections. Beyond it a guest connection is closed
	// right after its handshake; the client retries with backoff.
	MaxGuestConnections = 256
	// HandshakeTimeout bounds a connection's TLS handshake.
	HandshakeTimeout = 10 * time.Second
)

// admittedConn is a connection whose TLS handshake the collector has
// completed (or, with InsecurePlaintextDev, a plain one).
type admittedConn struct {
	net.Conn
	// state is the handshake's result; nil without TLS.
	state *tls.ConnectionState
	// release, when set, is called once when the connection closes.
	release func()
	once    sync.Once
}

func (c *admittedConn) Close() error {
	err := c.Conn.Close()
	if c.release != nil {
		c.once.Do(c.release)
	}
	return err
}

// admittedCreds are the gRPC transport credentials of an admittedConn: the
// handshake is done, so they only report its state to gRPC (peer.AuthInfo
// is a credentials.TLSInfo, as with credentials.NewTLS).
type admittedCreds struct{}

func (admittedCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	ac, ok := c.(*admittedConn)
	if !ok || ac.state == nil {
		return nil, nil, errors.New("server: connection was not admitted through the collector's TLS handshake")
	}
	return c, credentials.TLSInfo{State: *ac.state, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (admittedCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("server: admittedCreds are for the server side only")
}

func (admittedCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

func (admittedCreds) Clone() credentials.TransportCredentials { return admittedCreds{} }

func (admittedCreds) OverrideServerName(string) error { return nil }

// connQueue is the listener one of the gRPC servers serves: the
// connections admitted to it.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// put hands c to the server, or closes it when the queue is closed.
func (q *connQueue) put(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

// guestConns counts the guest connections open.
type guestConns struct {
	max int

	mu   sync.Mutex
	open int

	openGauge prometheus.Gauge
	refused   prometheus.Counter
}

func newGuestConns(max int, reg prometheus.Registerer) *guestConns {
	g := &guestConns{
		max: max,
		openGauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessionaudit_guest_connections_open",
			Help: "Open connections without an agent certificate (enrolling agents, analysts, probes).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionaudit_guest_connections_refused_total",
			Help: "Connections without an agent certificate closed after the handshake because MaxGuestConnections were open.",
		}),
	}
	reg.MustRegister(g.openGauge, g.refused)
	return g
}

func (g *guestConns) acquire() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open >= g.max {
		g.refused.Inc()
		return false
	}
	g.open++
	g.openGauge.Set(float64(g.open))
	return true
}

func (g *guestConns) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open--
	g.openGauge.Set(float64(g.open))
}

// acceptLoop accepts connections from lis until it fails, admitting each
// in a goroutine of its own; it returns lis's error after every admission
// in progress has ended.
func (s *Server) acceptLoop(lis net.Listener, agents, guests *connQueue) error {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	var delay time.Duration
	for {
		c, err := lis.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() && !s.stopping() {
				// Out of file descriptors and the like: wait as gRPC's own
				// Serve does, then go on.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
					continue
				case <-s.stop:
				}
			}
			return err
		}
		delay = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.admit(ctx, c, agents, guests)
		}()
	}
}

// admit completes c's TLS handshake and hands it to the agents' server when
// its certificate is an agent's, to the guests' otherwise.
func (s *Server) admit(ctx context.Context, c net.Conn, agents, guests *connQueue) {
	if s.cfg.InsecurePlaintextDev {
		s.admitGuest(&admittedConn{Conn: c}, guests)
		return
	}
	_ = c.SetDeadline(time.Now().Add(HandshakeTimeout))
	tc := tls.Server(c, s.tlsConfig)
	hctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		s.log.Debug("TLS handshake failed", "peer", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	state := tc.ConnectionState()
	if state.NegotiatedProtocol != "h2" {
		s.log.Debug("connection refused: the client did not negotiate HTTP/2 (ALPN h2)", "peer", c.RemoteAddr().String())
		tc.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	ac := &admittedConn{Conn: tc, state: &state}
	if _, err := s.cfg.Trust.VerifyAgent(state, s.cfg.Now()); err == nil {
		agents.put(ac)
		return
	}
	s.admitGuest(ac, guests)
}

// admitGuest hands c to the guests' server within MaxGuestConnections.
func (s *Server) admitGuest(c *admittedConn, guests *connQueue) {
	if !s.guests.acquire() {
		s.log.Debug("guest connection refused: MaxGuestConnections open", "peer", c.RemoteAddr().String(), "max", s.guests.max)
		c.Close()
		return
	}
	c.release = s.guests.release
	guests.put(c)
}

// track records lis, to be closed by Shutdown; false when Shutdown has
// begun (lis is then closed).
func (s *Server) track(lis net.Listener) bool {
	s.lisMu.Lock()
	defer s.lisMu.Unlock()
	if s.closing {
		lis.Close()
		return false
	}
	s.listeners = append(s.listeners, lis)
	return true
}

// closeListeners stops every Serve from accepting.
func (s *Server) closeListeners() {
	s.lisMu.Lock()
	defer s.lisMu.Unlock()
	s.closing = true
	for _, l := range s.listeners {
		l.Close()
	}
	s.listeners = nil
}

func (s *Server) stopping() bool {
	s.lisMu.Lock()
	defer s.lisMu.Unlock()
	return s.closing
}
