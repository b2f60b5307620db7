package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessionaudit/sessionaudit/server"
	"github.com/sessionaudit/sessionaudit/server/httpapi"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/server/web"
	"github.com/sessionaudit/sessionaudit/store"
)

// serveOptions are serve's flags beyond server.Config's own.
type serveOptions struct {
	metricsListen   string
	httpListen      string
	pkiDir          string
	agentCACert     string
	agentCAKey      string
	analystCACert   string
	serverCert      string
	serverKey       string
	logLevel        string
	logFormat       string
	retention       time.Duration
	shutdownTimeout time.Duration
	maxMessageBytes int
}

func (c *cli) serveCommand() *command {
	var o serveOptions
	var cfg server.Config
	cmd := newCommand("serve", "", "Run the collector: migrate the database, then serve agents (CollectorService)\n"+
		"and analysts (QueryService) over gRPC with TLS, the gRPC health service, the\n"+
		"HTTP JSON API and web UI over HTTPS (--http-listen), and Prometheus metrics on\n"+
		"a separate HTTP address. SIGTERM or SIGINT stops it\n"+
		"gracefully: batches in flight are finished and acknowledged first.\n"+
		"Certificates come from --pki-dir as 'init-pki' writes them, unless given one by one.")
	c.databaseFlag(cmd)
	cmd.String(&cfg.ListenAddress, "listen", "SESSIONAUDIT_LISTEN", server.DefaultListenAddress, "gRPC address for agents and analysts")
	cmd.String(&o.httpListen, "http-listen", "SESSIONAUDIT_HTTP_LISTEN", ":8444",
		"HTTPS address of the HTTP JSON API (/api/v1/) and the web UI (/), with the server certificate; empty turns it off")
	cmd.Int(&cfg.MaxExportRows, "max-export-rows", "SESSIONAUDIT_MAX_EXPORT_ROWS", httpapi.DefaultMaxExportRows,
		"most rows of one HTTP export; a larger one is cut off")
	cmd.String(&o.metricsListen, "metrics-listen", "SESSIONAUDIT_METRICS_LISTEN", "127.0.0.1:9464", "HTTP address of /metrics (Prometheus); empty turns it off")
	cmd.String(&o.pkiDir, "pki-dir", "SESSIONAUDIT_PKI_DIR", "/etc/sessionaudit/pki", "directory of the files 'init-pki' writes")
	cmd.String(&o.agentCACert, "agent-ca-cert", "SESSIONAUDIT_AGENT_CA_CERT", "", "agent CA certificate (default PKI-DIR/"+agentCACertFile+")")
	cmd.String(&o.agentCAKey, "agent-ca-key", "SESSIONAUDIT_AGENT_CA_KEY", "", "agent CA key, signs agents' certificates (default PKI-DIR/"+agentCAKeyFile+")")
	cmd.String(&o.analystCACert, "analyst-ca-cert", "SESSIONAUDIT_ANALYST_CA_CERT", "", "analyst CA certificate; absent file: API tokens only (default PKI-DIR/"+analystCACertFile+")")
	cmd.String(&o.serverCert, "server-cert", "SESSIONAUDIT_SERVER_CERT", "", "the collector's TLS certificate chain (default PKI-DIR/"+serverCertFile+")")
	cmd.String(&o.serverKey, "server-key", "SESSIONAUDIT_SERVER_KEY", "", "its key (default PKI-DIR/"+serverKeyFile+")")
	cmd.Bool(&cfg.InsecurePlaintextDev, "insecure-plaintext-dev", "SESSIONAUDIT_INSECURE_PLAINTEXT_DEV", false,
		"DEVELOPMENT ONLY: serve without TLS, on a loopback address; logged loudly")
	cmd.Bool(&cfg.EnableReflection, "reflection", "SESSIONAUDIT_REFLECTION", false, "register gRPC reflection, for grpcurl")
	cmd.String(&o.logLevel, "log-level", "SESSIONAUDIT_LOG_LEVEL", "info", "debug, info, warn or error")
	cmd.String(&o.logFormat, "log-format", "SESSIONAUDIT_LOG_FORMAT", "json", "json or text")
	cmd.Duration(&o.retention, "retention", "SESSIONAUDIT_RETENTION", 400*24*time.Hour, "drop whole months of sessions that ended longer ago; 0 keeps everything")
	cmd.Duration(&o.shutdownTimeout, "shutdown-timeout", "SESSIONAUDIT_SHUTDOWN_TIMEOUT", 30*time.Second, "how long a graceful stop may take before calls are cut")
	cmd.Duration(&cfg.AgentCertValidity, "agent-cert-validity", "SESSIONAUDIT_AGENT_CERT_VALIDITY", pki.DefaultAgentValidity, "lifetime of agents' certificates")
	cmd.Int(&o.maxMessageBytes, "max-message-bytes", "SESSIONAUDIT_MAX_MESSAGE_BYTES", server.DefaultMaxMessageBytes, "largest request accepted")
	cmd.Int(&cfg.MaxReportsPerBatch, "max-reports-per-batch", "SESSIONAUDIT_MAX_REPORTS_PER_BATCH", server.DefaultMaxReportsPerBatch, "most reports in one Ingest")
	cmd.Int(&cfg.MaxSessionsPerSnapshot, "max-sessions-per-snapshot", "SESSIONAUDIT_MAX_SESSIONS_PER_SNAPSHOT", server.DefaultMaxSessionsPerSnapshot, "most sessions in one report")
	cmd.Int(&cfg.MaxInFlightPerAgent, "max-in-flight-per-agent", "SESSIONAUDIT_MAX_IN_FLIGHT_PER_AGENT", server.DefaultMaxInFlightPerAgent, "concurrent Ingest calls per agent")
	cmd.Int(&cfg.MaxConcurrentIngests, "max-concurrent-ingests", "SESSIONAUDIT_MAX_CONCURRENT_INGESTS", server.DefaultMaxConcurrentIngests, "Ingest calls in the store at once; beyond it agents are pushed back")
	cmd.Int(&cfg.MaxConnections, "max-connections", "SESSIONAUDIT_MAX_CONNECTIONS", server.DefaultMaxConnections, "open connections (agents connected)")
	cmd.Duration(&cfg.IngestTimeout, "ingest-timeout", "SESSIONAUDIT_INGEST_TIMEOUT", server.DefaultIngestTimeout, "longest store write before pushing back")
	cmd.Int(&cfg.QuarantineAfterFailures, "quarantine-after-failures", "SESSIONAUDIT_QUARANTINE_AFTER_FAILURES", server.DefaultQuarantineAfterFailures,
		"failed store writes of one batch before it is quarantined (acknowledged unstored, kept, a coverage gap recorded); negative: never")
	cmd.Duration(&cfg.QuarantineMinSpan, "quarantine-min-span", "SESSIONAUDIT_QUARANTINE_MIN_SPAN", server.DefaultQuarantineMinSpan,
		"least time a batch must have been failing before it is quarantined")
	cmd.run = func(ctx context.Context, c *cli, args []string) error {
		if err := noArgs(args); err != nil {
			return err
		}
		cfg.MaxMessageBytes = o.maxMessageBytes
		return c.serve(ctx, cfg, o)
	}
	return cmd
}

// newLogger makes the collector's structured logger.
func newLogger(w *os.File, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, usageError{fmt.Sprintf("--log-format %q: want json or text", format)}
	}
}

// orDefault returns path, or PKI-DIR/name when path is empty.
func (o serveOptions) orDefault(path, name string) string {
	if path != "" {
		return path
	}
	return filepath.Join(o.pkiDir, name)
}

// loadPKI reads the CA that signs agents, the trust anchors and the server
// certificate.
func (o serveOptions) loadPKI(cfg *server.Config) error {
	ca, err := pki.LoadCA(o.orDefault(o.agentCACert, agentCACertFile), o.orDefault(o.agentCAKey, agentCAKeyFile))
	if err != nil {
		return err
	}
	cfg.CA = ca
	var analysts []*x509.Certificate
	analystPath := o.orDefault(o.analystCACert, analystCACertFile)
	if _, err := os.Stat(analystPath); err == nil || o.analystCACert != "" {
		if analysts, err = pki.LoadCertificates(analystPath); err != nil {
			return err
		}
	}
	if cfg.Trust, err = pki.NewTrust([]*x509.Certificate{ca.Certificate()}, analysts); err != nil {
		return err
	}
	if cfg.InsecurePlaintextDev {
		return nil
	}
	certPath, keyPath := o.orDefault(o.serverCert, serverCertFile), o.orDefault(o.serverKey, serverKeyFile)
	cfg.ServerCertificate, err = tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return fmt.Errorf("server certificate %s / key %s: %w", certPath, keyPath, err)
	}
	return nil
}

func (c *cli) serve(ctx context.Context, cfg server.Config, o serveOptions) error {
	logger, err := newLogger(os.Stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	if c.databaseURL == "" {
		return usageError{"--database-url (or SESSIONAUDIT_DATABASE_URL) is required"}
	}
	if o.retention < 0 {
		return usageError{fmt.Sprintf("--retention %v: must not be negative", o.retention)}
	}
	if err := o.loadPKI(&cfg); err != nil {
		return err
	}
	logger.Info("migrating the database")
	if err := store.Migrate(ctx, c.databaseURL); err != nil {
		return err
	}
	st, err := store.Open(ctx, c.databaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := server.New(cfg, st)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", cfg.ListenAddress, err)
	}
	var webLis net.Listener
	if o.httpListen != "" {
		if webLis, err = net.Listen("tcp", o.httpListen); err != nil {
			lis.Close()
			return fmt.Errorf("--http-listen %s: %w", o.httpListen, err)
		}
		if cfg.InsecurePlaintextDev {
			if !server.IsLoopback(webLis.Addr()) {
				lis.Close()
				webLis.Close()
				return usageError{fmt.Sprintf("--http-listen %s: --insecure-plaintext-dev serves HTTP only on a loopback address (or turn it off with --http-listen '')", o.httpListen)}
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go maintainPartitions(ctx, st, o.retention, c.now, logger)

	var metrics *http.Server
	if o.metricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", srv.MetricsHandler())
		metrics = &http.Server{Addr: o.metricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		ml, err := net.Listen("tcp", o.metricsListen)
		if err != nil {
			lis.Close()
			if webLis != nil {
				webLis.Close()
			}
			return fmt.Errorf("--metrics-listen %s: %w", o.metricsListen, err)
		}
		go func() {
			if err := metrics.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("metrics server stopped", "address", o.metricsListen, "error", err)
			}
		}()
	}
	webAddr := ""
	webDone := make(chan error, 1)
	if webLis != nil {
		webAddr = webLis.Addr().String()
		go func() { webDone <- srv.ServeWeb(webLis, web.Handler()) }()
	}
	logger.Info("collector serving", "version", version, "address", lis.Addr().String(), "http", webAddr, "metrics", o.metricsListen,
		"tls", !cfg.InsecurePlaintextDev, "reflection", cfg.EnableReflection, "retention", o.retention.String())

	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err := <-done:
		return err
	case err := <-webDone:
		srv.Shutdown(context.Background())
		<-done
		return fmt.Errorf("--http-listen %s: %w", webAddr, err)
	case <-ctx.Done():
	}
	logger.Info("stopping: finishing calls in flight", "timeout", o.shutdownTimeout.String())
	sctx, scancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer scancel()
	err = srv.Shutdown(sctx)
	if metrics != nil {
		metrics.Shutdown(sctx)
	}
	<-done
	if err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// maintainPartitions creates the coming months' partitions and applies
// retention at start and then every 6 hours; several collectors may do it
// at once.
func maintainPartitions(ctx context.Context, st *store.Store, retention time.Duration, now func() time.Time, logger *slog.Logger) {
	for {
		if err := st.EnsurePartitions(ctx, now()); err != nil && ctx.Err() == nil {
			logger.Error("creating partitions failed; sessions will go to the default partition", "error", err)
		}
		if retention > 0 {
			dropped, err := st.DropPartitionsBefore(ctx, now().Add(-retention))
			switch {
			case err != nil && ctx.Err() == nil:
				logger.Error("retention failed", "retention", retention.String(), "error", err)
			case len(dropped) > 0:
				logger.Info("retention dropped partitions", "partitions", strings.Join(dropped, ","), "retention", retention.String())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(6 * time.Hour):
		}
	}
}
