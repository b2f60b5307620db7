package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sessionaudit/sessionaudit/server/pki"
)

// Defaults of Config's limits and timings. docs/design/0004-collector.md says why
// each is what it is.
const (
	// DefaultMaxMessageBytes bounds one request (an Ingest batch): 4 MiB.
	DefaultMaxMessageBytes = 4 << 20
	// DefaultMaxReportsPerBatch bounds the reports of one Ingest call.
	DefaultMaxReportsPerBatch = 1000
	// DefaultMaxSessionsPerSnapshot bounds the sessions one report carries
	// (logon and server sessions, upserted and ended, together).
	DefaultMaxSessionsPerSnapshot = 20000
	// DefaultMaxStringBytes bounds any one string of a report; longer ones
	// refuse the batch. The store truncates strings above limits.MaxStringBytes
	// (and notes it), so this limit only stops abuse.
	DefaultMaxStringBytes = 4096
	// DefaultMaxInFlightPerAgent is how many Ingest calls of one agent may
	// run at once.
	DefaultMaxInFlightPerAgent = 2
	// DefaultMaxConcurrentIngests is how many Ingest calls may be in the
	// store at once, collector-wide.
	DefaultMaxConcurrentIngests = 16
	// DefaultIngestQueueWait is how long an Ingest call waits for a store
	// slot before the collector pushes back.
	DefaultIngestQueueWait = 2 * time.Second
	// DefaultMaxConnections bounds the open connections (one per agent or
	// analyst tool).
	DefaultMaxConnections = 20000
	// DefaultIngestTimeout bounds one store write.
	DefaultIngestTimeout = 15 * time.Second
	// DefaultQueryTimeout bounds one query.
	DefaultQueryTimeout = 30 * time.Second
	// DefaultRetryDelay is the base delay of the RetryInfo the collector
	// sends with UNAVAILABLE; the delay sent is jittered within ±50%.
	DefaultRetryDelay = 5 * time.Second
	// DefaultAgentCacheTTL is how long an agent's row (enabled, machine
	// GUID) is reused without a store lookup.
	DefaultAgentCacheTTL = 2 * time.Second
	// DefaultEnrollPerSecond and DefaultEnrollBurst limit enrollments per
	// source address; the collector-wide limit is DefaultEnrollGlobalFactor
	// times that.
	DefaultEnrollPerSecond    = 1.0
	DefaultEnrollBurst        = 5
	DefaultEnrollGlobalFactor = 50
	// DefaultRenewPerHour limits renewals per agent.
	DefaultRenewPerHour = 4
	// DefaultKeepaliveTime is how long a connection may be silent before the
	// collector pings the agent.
	DefaultKeepaliveTime = 2 * time.Minute
	// DefaultKeepaliveTimeout is how long the collector waits for the ping's
	// answer before closing the connection.
	DefaultKeepaliveTimeout = 20 * time.Second
	// DefaultKeepaliveMinTime is the shortest ping interval the collector
	// tolerates from a client; agents must ping less often.
	DefaultKeepaliveMinTime = 30 * time.Second
	// DefaultMaxConnectionAge makes agents reconnect (and a balancer
	// rebalance) at least this often.
	DefaultMaxConnectionAge = 30 * time.Minute
	// DefaultMaxConnectionAgeGrace lets calls in flight finish after
	// MaxConnectionAge.
	DefaultMaxConnectionAgeGrace = time.Minute
	// DefaultHealthInterval is how often the store is pinged for the health
	// service.
	DefaultHealthInterval = 5 * time.Second
	// DefaultActiveAgentWindow is how recently an agent must have called to
	// count in sessionaudit_agents_connected.
	DefaultActiveAgentWindow = 5 * time.Minute
)

// DefaultListenAddress is where ListenAndServe listens unless told.
const DefaultListenAddress = ":8443"

// Config is everything a collector needs besides its store. The zero value
// of each limit or timing means its documented default; New fills them in.
type Config struct {
	// ListenAddress is the gRPC address ListenAndServe listens on; default
	// DefaultListenAddress. Serve takes a listener instead.
	ListenAddress string
	// CA signs agent certificates at Enroll and Renew. Required (its
	// certificate should also be among Trust's agent CAs).
	CA *pki.CA
	// ServerCertificate is the collector's TLS certificate
	// (pki.CA.IssueServerCert or the enterprise PKI). Required unless
	// InsecurePlaintextDev.
	ServerCertificate tls.Certificate
	// Trust holds the agent and analyst CAs client certificates are checked
	// against. Required unless InsecurePlaintextDev.
	Trust *pki.Trust
	// InsecurePlaintextDev serves without TLS, for development only: Serve
	// refuses a listener that is not on a loopback address, and the collector
	// logs a warning at start and every minute and exports
	// sessionaudit_insecure_plaintext 1. Without TLS there are no client
	// certificates: Renew and Ingest answer UNAUTHENTICATED, queries work
	// with API tokens only.
	InsecurePlaintextDev bool

	// AgentCertValidity is the lifetime of agent certificates; default
	// pki.DefaultAgentValidity (7 days).
	AgentCertValidity time.Duration
	// RenewalGrace is how long after expiry an agent may still renew by
	// proof at Enroll; default identity.DefaultRenewalGrace (30 days).
	RenewalGrace time.Duration

	// MaxMessageBytes bounds a request; larger ones get RESOURCE_EXHAUSTED
	// from gRPC itself. Default DefaultMaxMessageBytes.
	MaxMessageBytes int
	// MaxReportsPerBatch; default DefaultMaxReportsPerBatch.
	MaxReportsPerBatch int
	// MaxSessionsPerSnapshot; default DefaultMaxSessionsPerSnapshot.
	MaxSessionsPerSnapshot int
	// MaxStringBytes; default DefaultMaxStringBytes.
	MaxStringBytes int
	// MaxInFlightPerAgent; beyond it Ingest answers RESOURCE_EXHAUSTED.
	// Default DefaultMaxInFlightPerAgent.
	MaxInFlightPerAgent int
	// MaxConcurrentIngests; beyond it Ingest waits up to IngestQueueWait,
	// then answers UNAVAILABLE with a RetryInfo. Default
	// DefaultMaxConcurrentIngests; keep it below the store's pool size.
	MaxConcurrentIngests int
	// IngestQueueWait; default DefaultIngestQueueWait.
	IngestQueueWait time.Duration
	// MaxConnections bounds open connections (agents connected); further
	// connections are closed at once, and the agent retries with backoff.
	// Default DefaultMaxConnections.
	MaxConnections int
	// IngestTimeout bounds one store write; default DefaultIngestTimeout.
	IngestTimeout time.Duration
	// QueryTimeout bounds one query; default DefaultQueryTimeout.
	QueryTimeout time.Duration
	// MaxExportRows bounds one export of the HTTP API; default
	// httpapi.DefaultMaxExportRows.
	MaxExportRows int
	// RetryDelay is the base of the delay sent with UNAVAILABLE; default
	// DefaultRetryDelay.
	RetryDelay time.Duration
	// NoHeartbeatGroups turns off heartbeat grouping (server/heartbeats.go):
	// every heartbeat gets a store transaction of its own. For comparison
	// in benchmarks.
	NoHeartbeatGroups bool
	// QuarantineAfterFailures is how many failed store writes of one batch
	// (counted from its first report, in the store) quarantine it: its
	// reports acknowledged without being stored, kept for inspection, a
	// coverage gap recorded (quarantine.go). Default
	// DefaultQuarantineAfterFailures; negative: never.
	QuarantineAfterFailures int
	// QuarantineMinSpan is how long a batch must have been failing, at
	// least, to be quarantined; default DefaultQuarantineMinSpan.
	QuarantineMinSpan time.Duration
	// MinIngestInterval, when positive, is sent to agents as
	// IngestResponse.min_interval.
	MinIngestInterval time.Duration
	// AgentCacheTTL is how long an agent lookup is reused; default
	// DefaultAgentCacheTTL; negative disables the cache.
	AgentCacheTTL time.Duration
	// EnrollPerSecond and EnrollBurst limit Enroll per source address;
	// defaults DefaultEnrollPerSecond and DefaultEnrollBurst. The
	// collector-wide limit is DefaultEnrollGlobalFactor times both.
	EnrollPerSecond float64
	EnrollBurst     int
	// RenewPerHour limits Renew per agent; default DefaultRenewPerHour.
	RenewPerHour int

	// KeepaliveTime, KeepaliveTimeout, KeepaliveMinTime, MaxConnectionAge and
	// MaxConnectionAgeGrace are the keepalive policy; defaults
	// DefaultKeepaliveTime and so on.
	KeepaliveTime         time.Duration
	KeepaliveTimeout      time.Duration
	KeepaliveMinTime      time.Duration
	MaxConnectionAge      time.Duration
	MaxConnectionAgeGrace time.Duration

	// HealthInterval is how often the store is pinged; default
	// DefaultHealthInterval.
	HealthInterval time.Duration
	// ActiveAgentWindow; default DefaultActiveAgentWindow.
	ActiveAgentWindow time.Duration

	// EnableReflection registers the gRPC reflection service (for grpcurl).
	EnableReflection bool
	// Logger receives structured logs; default slog.Default().
	Logger *slog.Logger
	// Registry receives the collector's metrics; default a new registry
	// with the Go and process collectors. MetricsHandler serves it.
	Registry *prometheus.Registry
	// Now is the clock; default time.Now. For tests.
	Now func() time.Time
}

// withDefaults returns c with every zero limit and timing replaced by its
// default, or an error naming what is missing or out of range.
func (c Config) withDefaults() (Config, error) {
	if c.CA == nil {
		return c, errors.New("server: config: CA is required (it signs agent certificates)")
	}
	if !c.InsecurePlaintextDev {
		if c.Trust == nil {
			return c, errors.New("server: config: Trust is required with TLS")
		}
		if len(c.ServerCertificate.Certificate) == 0 {
			return c, errors.New("server: config: ServerCertificate is required with TLS")
		}
	}
	setDur := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	setInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	if c.ListenAddress == "" {
		c.ListenAddress = DefaultListenAddress
	}
	setDur(&c.AgentCertValidity, pki.DefaultAgentValidity)
	setDur(&c.RenewalGrace, identity.DefaultRenewalGrace)
	setInt(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	setInt(&c.MaxReportsPerBatch, DefaultMaxReportsPerBatch)
	setInt(&c.MaxSessionsPerSnapshot, DefaultMaxSessionsPerSnapshot)
	setInt(&c.MaxStringBytes, DefaultMaxStringBytes)
	setInt(&c.MaxInFlightPerAgent, DefaultMaxInFlightPerAgent)
	setInt(&c.MaxConcurrentIngests, DefaultMaxConcurrentIngests)
	setDur(&c.IngestQueueWait, DefaultIngestQueueWait)
	setInt(&c.MaxConnections, DefaultMaxConnections)
	setDur(&c.IngestTimeout, DefaultIngestTimeout)
	setDur(&c.QueryTimeout, DefaultQueryTimeout)
	setDur(&c.RetryDelay, DefaultRetryDelay)
	setInt(&c.QuarantineAfterFailures, DefaultQuarantineAfterFailures)
	setDur(&c.QuarantineMinSpan, DefaultQuarantineMinSpan)
	setDur(&c.AgentCacheTTL, DefaultAgentCacheTTL)
	if c.EnrollPerSecond == 0 {
		c.EnrollPerSecond = DefaultEnrollPerSecond
	}
	setInt(&c.EnrollBurst, DefaultEnrollBurst)
	setInt(&c.RenewPerHour, DefaultRenewPerHour)
	setDur(&c.KeepaliveTime, DefaultKeepaliveTime)
	setDur(&c.KeepaliveTimeout, DefaultKeepaliveTimeout)
	setDur(&c.KeepaliveMinTime, DefaultKeepaliveMinTime)
	setDur(&c.MaxConnectionAge, DefaultMaxConnectionAge)
	setDur(&c.MaxConnectionAgeGrace, DefaultMaxConnectionAgeGrace)
	setDur(&c.HealthInterval, DefaultHealthInterval)
	setDur(&c.ActiveAgentWindow, DefaultActiveAgentWindow)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	for name, v := range map[string]int{
		"MaxMessageBytes": c.MaxMessageBytes, "MaxReportsPerBatch": c.MaxReportsPerBatch,
		"MaxSessionsPerSnapshot": c.MaxSessionsPerSnapshot, "MaxStringBytes": c.MaxStringBytes,
		"MaxInFlightPerAgent": c.MaxInFlightPerAgent, "MaxConcurrentIngests": c.MaxConcurrentIngests,
		"MaxConnections": c.MaxConnections, "EnrollBurst": c.EnrollBurst, "RenewPerHour": c.RenewPerHour,
	} {
		if v < 0 {
			return c, fmt.Errorf("server: config: %s is %d; it must be positive (0 means the default)", name, v)
		}
	}
	for name, v := range map[string]time.Duration{
		"IngestQueueWait": c.IngestQueueWait, "IngestTimeout": c.IngestTimeout, "QueryTimeout": c.QueryTimeout,
		"RetryDelay": c.RetryDelay, "QuarantineMinSpan": c.QuarantineMinSpan, "HealthInterval": c.HealthInterval, "ActiveAgentWindow": c.ActiveAgentWindow,
		"KeepaliveTime": c.KeepaliveTime, "KeepaliveTimeout": c.KeepaliveTimeout, "KeepaliveMinTime": c.KeepaliveMinTime,
		"MaxConnectionAge": c.MaxConnectionAge, "MaxConnectionAgeGrace": c.MaxConnectionAgeGrace, "RenewalGrace": c.RenewalGrace,
	} {
		if v < 0 {
			return c, fmt.Errorf("server: config: %s is %v; it must be positive (0 means the default)", name, v)
		}
	}
	if c.EnrollPerSecond < 0 {
		return c, fmt.Errorf("server: config: EnrollPerSecond is %v; it must be positive", c.EnrollPerSecond)
	}
	if c.AgentCertValidity < pki.MinValidity || c.AgentCertValidity > pki.MaxAgentValidity {
		return c, fmt.Errorf("server: config: AgentCertValidity %v is outside [%v, %v]", c.AgentCertValidity, pki.MinValidity, pki.MaxAgentValidity)
	}
	return c, nil
}
