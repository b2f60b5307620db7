package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Defaults of Options.
const (
	// DefaultCallTimeout bounds one Enroll, Renew or Ingest call: above the
	// collector's store timeout (15 s) plus its ingest queue wait (2 s).
	DefaultCallTimeout = 30 * time.Second
	// KeepaliveTime is how long the connection may be idle before the
	// agent pings the collector. The collector's enforcement policy allows
	// pings every 30 s, idle or not; 5 minutes keeps NAT and firewall state
	// alive and finds a dead path without adding load (100,000 agents ≈ 330
	// pings a second fleet-wide).
	KeepaliveTime = 5 * time.Minute
	// KeepaliveTimeout is how long a ping may go unanswered before the
	// connection is closed and redialled.
	KeepaliveTimeout = 20 * time.Second
)

// Options configure a Client. Address, StateDir, Host and a trust anchor
// (CAPool or CAPins) are required.
type Options struct {
	// Address is the collector's host:port (config.Settings.CollectorAddress).
	Address string
	// ServerName is the name the collector's certificate must carry;
	// default the host part of Address.
	ServerName string
	// CAPool holds the CAs the collector's certificate must chain to (the
	// file of config.Settings.CACertificate).
	CAPool *x509.CertPool
	// CAPins are SHA-256s of SubjectPublicKeyInfo (config.Settings.CAPins,
	// SPKIPin): with CAPool, a verified chain must also hold a pinned key;
	// without, a certificate the collector sends must have a pinned key and
	// the leaf must verify to it. The system roots are never used.
	CAPins []string
	// EnrollmentSecret is presented at the first enrollment
	// (config.Settings.EnrollmentSecret.Reveal()); it may be empty once the
	// agent is enrolled.
	EnrollmentSecret string
	// Host returns the host's identity and facts for Enroll; MachineGuid is
	// required.
	Host func() *pb.Host
	// StateDir is the directory of the agent's key and certificate (under
	// ProgramData on Windows). It is created if needed and restricted to
	// SYSTEM and Administrators (mode 0700 on Unix).
	StateDir string
	// Clock tells the time for expiry and renewal; default the system clock.
	Clock clock.Clock
	// After returns a channel that receives after d; default time.After.
	// Tests replace it to wait without sleeping.
	After func(d time.Duration) <-chan time.Time
	// Logger receives the uplink's logs; default slog.Default().
	Logger *slog.Logger
	// Backoff sets the delays between attempts (delivery, enrollment,
	// renewal).
	Backoff BackoffConfig
	// Rand replaces the backoff's random source (tests): a uniform integer
	// in [0, n).
	Rand func(n int64) int64
	// CallTimeout bounds each call; default DefaultCallTimeout.
	CallTimeout time.Duration
	// RenewalGrace is how long after expiry the agent tries a renewal proof
	// before it falls back to its secret; default identity.DefaultRenewalGrace.
	RenewalGrace time.Duration
	// DialOptions are added to the connection's options (a proxy dialer,
	// interceptors).
	DialOptions []grpc.DialOption
}

// Ack is what the collector answered to a batch.
type Ack struct {
	// Sequence is IngestResponse.acknowledged_sequence: every report up to
	// it is stored and may leave the spool.
	Sequence uint64
	// ResyncRequired asks for a Snapshot next.
	ResyncRequired bool
	// MinInterval is the least time before the next Ingest when nothing is
	// urgent; 0 means the agent's own poll interval.
	MinInterval time.Duration
	// ClockSkew is IngestResponse.clock_skew, the host's clock skew the
	// collector measured on the batch (positive: the host's clock is
	// ahead), when ClockSkewMeasured. The Client logs it (clockskew.go).
	ClockSkew         time.Duration
	ClockSkewMeasured bool
}

// Client talks to the collector for one agent: it enrolls, renews, and
// sends batches over one long-lived connection. Its methods are safe for
// concurrent use.
type Client struct {
	opts       Options
	log        *slog.Logger
	store      identityStore
	pins       []string
	identityMu sync.Mutex // serializes identity changes (EnsureIdentity, MaybeRenew)

	id atomic.Pointer[Identity]

	connMu sync.RWMutex
	conn   *connGen
	closed bool

	renewBackoff *Backoff
	nextRenew    time.Time // no renewal attempt before; under identityMu

	skew skewWatch // logs the clock skew the collector measures
}

// connGen is one grpc.ClientConn and the calls running on it, so that a
// replaced connection is closed only once its calls are done.
type connGen struct {
	conn     *grpc.ClientConn
	inFlight sync.WaitGroup
}

// New returns a Client for opts. It does not connect or read the state
// directory; EnsureIdentity does.
func New(opts Options) (*Client, error) {
	if opts.Address == "" {
		return nil, errors.New("uplink: no collector address (CollectorAddress)")
	}
	host, _, err := net.SplitHostPort(opts.Address)
	if err != nil {
		return nil, fmt.Errorf("uplink: collector address %q: %w", opts.Address, err)
	}
	if opts.ServerName == "" {
		opts.ServerName = host
	}
	if opts.StateDir == "" {
		return nil, errors.New("uplink: no state directory for the agent's key and certificate")
	}
	if opts.Host == nil {
		return nil, errors.New("uplink: no Host function (Enroll needs the machine GUID)")
	}
	pins, err := normalizePins(opts.CAPins)
	if err != nil {
		return nil, fmt.Errorf("uplink: %w", err)
	}
	if opts.CAPool == nil && len(pins) == 0 {
		return nil, errors.New("uplink: no trust anchor for the collector: set CACertificate or CAPin " +
			"(the agent never trusts the system roots or a certificate on first use)")
	}
	if opts.Clock == nil {
		opts.Clock = clock.System{}
	}
	if opts.After == nil {
		opts.After = time.After
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.RenewalGrace <= 0 {
		opts.RenewalGrace = identity.DefaultRenewalGrace
	}
	c := &Client{
		opts:         opts,
		log:          opts.Logger.With("collector", opts.Address),
		store:        identityStore{dir: opts.StateDir},
		pins:         pins,
		renewBackoff: NewBackoff(opts.Backoff, opts.Rand),
	}
	g, err := c.dial(true)
	if err != nil {
		return nil, err
	}
	c.conn = g
	return c, nil
}

// dial makes a connection (gRPC connects lazily, at the first call). With
// withCert, the handshake presents the current identity's certificate,
// read at each handshake; without, none (Enroll).
func (c *Client) dial(withCert bool) (*connGen, error) {
	getCert := c.currentCertificate
	if !withCert {
		getCert = func() *tls.Certificate { return nil }
	}
	cfg := clientTLSConfig(c.opts.CAPool, c.pins, c.opts.ServerName, c.opts.Clock.Now, getCert)
	bc := c.renewBackoff.Config()
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: KeepaliveTime, Timeout: KeepaliveTimeout, PermitWithoutStream: true,
		}),
		// gRPC's own reconnection, under the calls: the same growth and
		// cap as Backoff, ±50% jitter.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: bc.Base, Multiplier: bc.Factor, Jitter: 0.5, MaxDelay: bc.Max},
			MinConnectTimeout: 20 * time.Second,
		}),
		grpc.WithUserAgent("sessionaudit-agent"),
	}, c.opts.DialOptions...)
	conn, err := grpc.NewClient(c.opts.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("uplink: connection to collector %s: %w", c.opts.Address, err)
	}
	return &connGen{conn: conn}, nil
}

// acquire returns the current connection, counted as in use until release.
func (c *Client) acquire() (*connGen, error) {
	c.connMu.RLock()
	defer c.connMu.RUnlock()
	if c.closed {
		return nil, errors.New("uplink: client closed")
	}
	c.conn.inFlight.Add(1)
	return c.conn, nil
}

// replaceConn puts a new connection in place, so that the next calls
// handshake with the current certificate; the old one is closed when its
// calls are done.
func (c *Client) replaceConn() error {
	g, err := c.dial(true)
	if err != nil {
		return err
	}
	c.connMu.Lock()
	if c.closed {
		c.connMu.Unlock()
		return g.conn.Close()
	}
	old := c.conn
	c.conn = g
	c.connMu.Unlock()
	go func() {
		old.inFlight.Wait()
		old.conn.Close()
	}()
	return nil
}

// Close closes the connection, cancelling calls in flight.
func (c *Client) Close() error {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.conn.conn.Close()
}

// LoadCAFile reads a PEM file of CA certificates (config.Settings
// .CACertificate) into a pool for Options.CAPool.
func LoadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("uplink: read the collector CA file: %w", err)
	}
	certs, err := parseCertificateChainPEM(data)
	if err != nil {
		return nil, fmt.Errorf("uplink: collector CA file %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// Identity returns the identity in use, or nil before EnsureIdentity
// succeeded.
func (c *Client) Identity() *Identity { return c.id.Load() }

// currentCertificate is the client certificate of the next handshake: the
// identity's, unless there is none or it expired (a handshake with an
// expired certificate fails outright; without one, the collector answers
// UNAUTHENTICATED, which the agent handles by renewing by proof).
func (c *Client) currentCertificate() *tls.Certificate {
	id := c.id.Load()
	if id == nil || !c.opts.Clock.Now().Before(id.NotAfter) {
		return nil
	}
	return id.TLSCertificate()
}

// EnsureIdentity makes sure the agent has a usable identity:
//
//   - loaded from the state directory if not in memory;
//   - none stored: Enroll with the enrollment secret;
//   - stored but unusable (a missing, damaged or mismatched key or
//     certificate) or bound to another machine GUID (a cloned disk): the
//     files are moved aside (kept for an administrator, suffix
//     ".unusable-<time>") and the agent enrolls with the secret;
//   - expired at most RenewalGrace ago: Enroll with the expired
//     certificate and a renewal proof, keeping the agent id. If the
//     collector refuses the proof, the secret is not tried: that would
//     bring back an agent an administrator disabled;
//   - expired longer ago: Enroll with the secret, which the collector
//     refuses until an administrator allows re-enrollment of the machine.
//
// A damaged agent.json alone is rebuilt from the certificate (logged). It
// returns nil with a valid identity in place, or what failed.
func (c *Client) EnsureIdentity(ctx context.Context) error {
	c.identityMu.Lock()
	defer c.identityMu.Unlock()
	id := c.id.Load()
	if id != nil && c.opts.Clock.Now().Before(id.NotAfter) {
		return nil // the common case, on every delivery attempt
	}
	guid := identity.NormalizeMachineGUID(c.opts.Host().GetMachineGuid())
	if id == nil {
		if err := c.store.prepare(); err != nil {
			return err
		}
		loaded, metaErr, err := c.store.load()
		var unusable *UnusableIdentityError
		switch {
		case errors.Is(err, ErrNoIdentity):
			c.log.Info("no agent identity stored: enrolling with the enrollment secret", "state_dir", c.opts.StateDir)
			return c.enrollWithSecret(ctx, guid)
		case errors.As(err, &unusable):
			c.log.Error("stored agent identity is unusable: moving it aside and enrolling again with the enrollment secret",
				"file", unusable.Path, "err", unusable.Err)
			if err := c.store.moveAside(c.opts.Clock.Now()); err != nil {
				return err
			}
			return c.enrollWithSecret(ctx, guid)
		case err != nil:
			return err
		}
		if metaErr != nil {
			c.log.Warn("agent metadata rebuilt from the certificate", "err", metaErr)
		}
		// A clone of a golden image holds a certificate for its clone host
		// key (0003-security.md, "Machine identity that survives cloning").
		smbios, _ := identity.CanonicalSMBIOSUUID(c.opts.Host().GetSmbiosUuid())
		if !identity.BoundHost(loaded.MachineGUID, guid, smbios) {
			c.log.Error("stored agent identity belongs to another machine (a cloned disk or image?): moving it aside and enrolling again",
				"agent", loaded.AgentID, "identity_machine_guid", loaded.MachineGUID, "machine_guid", guid)
			if err := c.store.moveAside(c.opts.Clock.Now()); err != nil {
				return err
			}
			return c.enrollWithSecret(ctx, guid)
		}
		c.id.Store(loaded)
		id = loaded
		c.log.Info("agent identity loaded", "agent", id.AgentID, "serial", id.Serial(),
			"not_after", id.NotAfter, "renew_after", id.RenewAfter)
	}
	now := c.opts.Clock.Now()
	if now.Before(id.NotAfter) {
		return nil
	}
	if now.Sub(id.NotAfter) <= c.opts.RenewalGrace {
		c.log.Warn("agent certificate expired: renewing by proof of the old key", "agent", id.AgentID,
			"serial", id.Serial(), "not_after", id.NotAfter)
		err := c.enrollByProof(ctx, id, guid)
		if ae, ok := errors.AsType[*AuthError](err); ok {
			// Not falling back to the secret: the collector refuses a
			// proof for a disabled agent or a superseded certificate, and
			// enrolling anew would bring back an agent an administrator
			// disabled; for an enabled one it is refused anyway (C4).
			c.log.Error("renewal by proof REFUSED: the agent is disabled, or its certificate was superseded; "+
				"an administrator must allow re-enrollment of this machine", "agent", id.AgentID,
				"serial", id.Serial(), "machine_guid", guid, "code", ae.Code.String())
		}
		return err
	} else {
		c.log.Error("agent certificate expired beyond the renewal grace: enrolling with the enrollment secret "+
			"(an administrator must allow re-enrollment of this machine)", "agent", id.AgentID,
			"not_after", id.NotAfter, "grace", c.opts.RenewalGrace)
	}
	return c.enrollWithSecret(ctx, guid)
}

// enrollWithSecret enrolls as a new agent with the enrollment secret.
func (c *Client) enrollWithSecret(ctx context.Context, guid string) error {
	if c.opts.EnrollmentSecret == "" {
		return errors.New("uplink: cannot enroll: no enrollment secret configured (EnrollmentSecret)")
	}
	if guid == "" {
		return errors.New("uplink: cannot enroll: the host's machine GUID is unknown")
	}
	return c.enroll(ctx, func(req *pb.EnrollRequest, _ []byte) error {
		req.EnrollmentSecret = c.opts.EnrollmentSecret
		return nil
	})
}

// enrollByProof enrolls again as old's agent, proving it holds old's key.
func (c *Client) enrollByProof(ctx context.Context, old *Identity, guid string) error {
	return c.enroll(ctx, func(req *pb.EnrollRequest, csr []byte) error {
		proof, err := identity.SignRenewalProof(old.Key, csr)
		if err != nil {
			return err
		}
		req.PreviousCertificateDer = old.ChainDER[0]
		req.RenewalProof = proof
		return nil
	})
}

// enroll makes a key and CSR, calls Enroll over a connection without a
// client certificate, and stores and installs the identity it gets.
func (c *Client) enroll(ctx context.Context, fill func(req *pb.EnrollRequest, csr []byte) error) error {
	key, csr, err := identity.NewAgentKeyAndCSR()
	if err != nil {
		return err
	}
	host := c.opts.Host()
	req := &pb.EnrollRequest{CsrDer: csr, Host: host}
	if err := fill(req, csr); err != nil {
		return err
	}
	g, err := c.dial(false)
	if err != nil {
		return err
	}
	defer g.conn.Close()
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	resp, err := pb.NewCollectorServiceClient(g.conn).Enroll(cctx, req)
	if err != nil {
		return classify("enroll", c.opts.Address, err)
	}
	id, err := newIdentity(key, resp.GetCertificateDer(), resp.GetCaChainDer(),
		resp.GetNotAfter().AsTime(), resp.GetRenewAfter().AsTime())
	if err != nil {
		return fmt.Errorf("uplink: enroll with collector %s: %w", c.opts.Address, err)
	}
	if id.AgentID != resp.GetAgentId() {
		return fmt.Errorf("uplink: enroll with collector %s: the response names agent %q, its certificate %q", c.opts.Address, resp.GetAgentId(), id.AgentID)
	}
	if err := c.install(id); err != nil {
		return err
	}
	msg := "agent enrolled with the enrollment secret"
	if len(req.GetRenewalProof()) > 0 {
		msg = "expired certificate replaced by renewal proof"
	}
	c.log.Info(msg, "agent", id.AgentID, "machine_guid", id.MachineGUID, "serial", id.Serial(),
		"not_after", id.NotAfter, "renew_after", id.RenewAfter)
	return nil
}

// install stores id, then puts it in use on a fresh connection. An
// identity that cannot be stored is not used: after a restart the agent
// would present an older certificate than the collector saw last, which
// the collector takes for a cloned key.
func (c *Client) install(id *Identity) error {
	if err := c.store.save(id); err != nil {
		return err
	}
	c.id.Store(id)
	c.renewBackoff.Reset()
	c.nextRenew = time.Time{}
	return c.replaceConn()
}

// MaybeRenew renews the certificate when renew_after has passed: a new
// key and CSR, Renew with the current certificate, the result stored and
// put in use on a new connection (calls in flight finish on the old one).
// After a failure it waits with backoff before trying again, returning
// (false, nil) in between. It returns whether it renewed.
func (c *Client) MaybeRenew(ctx context.Context) (bool, error) {
	c.identityMu.Lock()
	defer c.identityMu.Unlock()
	id := c.id.Load()
	if id == nil {
		return false, ErrNoIdentity
	}
	now := c.opts.Clock.Now()
	if now.Before(id.RenewAfter) || now.Before(c.nextRenew) || !now.Before(id.NotAfter) {
		return false, nil // not due, backing off, or expired (EnsureIdentity's job)
	}
	err := c.renew(ctx, id)
	if err != nil {
		wait := c.renewBackoff.Next(retryFloor(err))
		c.nextRenew = now.Add(wait)
		c.log.Warn("certificate renewal failed", "agent", id.AgentID, "serial", id.Serial(),
			"attempt", c.renewBackoff.Attempt(), "next_retry", c.nextRenew, "not_after", id.NotAfter, "err", err)
		return false, err
	}
	return true, nil
}

func (c *Client) renew(ctx context.Context, old *Identity) error {
	key, csr, err := identity.NewAgentKeyAndCSR()
	if err != nil {
		return err
	}
	g, err := c.acquire()
	if err != nil {
		return err
	}
	defer g.inFlight.Done()
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	resp, err := pb.NewCollectorServiceClient(g.conn).Renew(cctx, &pb.RenewRequest{CsrDer: csr})
	if err != nil {
		return classify("renew", c.opts.Address, err)
	}
	id, err := newIdentity(key, resp.GetCertificateDer(), resp.GetCaChainDer(),
		resp.GetNotAfter().AsTime(), resp.GetRenewAfter().AsTime())
	if err != nil {
		return fmt.Errorf("uplink: renew with collector %s: %w", c.opts.Address, err)
	}
	if id.AgentID != old.AgentID || id.MachineGUID != old.MachineGUID {
		return fmt.Errorf("uplink: renew with collector %s: the new certificate is for agent %s on %s, not %s on %s",
			c.opts.Address, id.AgentID, id.MachineGUID, old.AgentID, old.MachineGUID)
	}
	if err := c.install(id); err != nil {
		return err
	}
	c.log.Info("certificate renewed", "agent", id.AgentID, "old_serial", old.Serial(), "serial", id.Serial(),
		"not_after", id.NotAfter, "renew_after", id.RenewAfter)
	return nil
}

// Send delivers reports (consecutive, from the spool) and the count of
// reports the spool dropped in one Ingest call bounded by CallTimeout. On
// error nothing is acknowledged; the error is a *PushbackError,
// *AuthError, *RejectedError, or another (connection) error.
func (c *Client) Send(ctx context.Context, reports []*pb.Report, dropped uint64) (Ack, error) {
	return c.SendBatch(ctx, &pb.Batch{Reports: reports, DroppedReports: dropped})
}

// SendBatch is Send for a whole batch (with its incarnation, say); it sets
// the batch's sent_at when absent.
func (c *Client) SendBatch(ctx context.Context, batch *pb.Batch) (Ack, error) {
	if batch.GetSentAt() == nil {
		batch.SentAt = timestamppb.New(c.opts.Clock.Now())
	}
	g, err := c.acquire()
	if err != nil {
		return Ack{}, err
	}
	defer g.inFlight.Done()
	cctx, cancel := context.WithTimeout(ctx, c.opts.CallTimeout)
	defer cancel()
	resp, err := pb.NewCollectorServiceClient(g.conn).Ingest(cctx, &pb.IngestRequest{Batch: batch})
	if err != nil {
		return Ack{}, classify("ingest", c.opts.Address, err)
	}
	c.skew.observe(c.log, resp.GetClockSkew(), c.opts.Clock.Now())
	return Ack{
		Sequence:          resp.GetAcknowledgedSequence(),
		ResyncRequired:    resp.GetResyncRequired(),
		MinInterval:       resp.GetMinInterval().AsDuration(),
		ClockSkew:         resp.GetClockSkew().AsDuration(),
		ClockSkewMeasured: resp.GetClockSkew() != nil,
	}, nil
}
