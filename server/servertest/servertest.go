// Package servertest runs a real collector on loopback for other packages'
// tests (server/e2e: the agent's uplink, its run loop, the fleet simulator;
// the HTTP API, the web UI, the CLI): TLS from a test CA, the store the test
// gives, and timings short enough for tests.
// It is imported by tests only.
package servertest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/server"
	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/store"
)

// Collector is a collector serving on a loopback address.
type Collector struct {
	// Server is the running collector.
	Server *server.Server
	// Addr is the address it listens on; pass it to Start again to restart
	// the collector on the same port.
	Addr string

	// WebURL is the base URL of the HTTP API and web UI
	// ("https://127.0.0.1:port"), when Options.Web asked for them.
	WebURL string
	// WebClient is an HTTP client that trusts the collector's certificate,
	// when Options.Web asked for the HTTP listener.
	WebClient *http.Client

	done     chan error
	webDone  chan error
	stopOnce sync.Once
}

// Options adjust the collector a test starts.
type Options struct {
	// CertTime is when the server certificate (for "localhost" and
	// 127.0.0.1, valid 24 hours) starts to be valid; zero means now.
	CertTime time.Time
	// Adjust, when not nil, changes the configuration before the collector
	// is made. The defaults are CA, ServerCertificate and Trust from the
	// arguments, no agent cache, a 100 ms retry delay, a 200 ms health
	// interval and no logging.
	Adjust func(*server.Config)
	// Web also serves the HTTP API on another loopback port (HTTPS, or
	// HTTP with InsecurePlaintextDev), with UI at / when not nil.
	Web bool
	UI  http.Handler
}

// Start serves a collector over st on addr ("127.0.0.1:0" the first time;
// a previous Collector's Addr to come back on the same port, retried for up
// to two seconds while the old socket is released). The collector is
// stopped at the end of the test.
func Start(t testing.TB, st *store.Store, ca *pki.CA, trust *pki.Trust, addr string, opts Options) *Collector {
	t.Helper()
	certTime := opts.CertTime
	if certTime.IsZero() {
		certTime = time.Now()
	}
	sc, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 24*time.Hour, certTime)
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		CA: ca, ServerCertificate: sc, Trust: trust, AgentCacheTTL: -1,
		RetryDelay: 100 * time.Millisecond, HealthInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if opts.Adjust != nil {
		opts.Adjust(&cfg)
	}
	srv, err := server.New(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	var lis net.Listener
	for i := 0; ; i++ {
		if lis, err = net.Listen("tcp", addr); err == nil || i == 100 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("servertest: listen on %s: %v", addr, err)
	}
	c := &Collector{Server: srv, Addr: lis.Addr().String(), done: make(chan error, 1)}
	go func() { c.done <- srv.Serve(lis) }()
	if opts.Web {
		c.startWeb(t, ca, cfg.InsecurePlaintextDev, opts.UI)
	}
	t.Cleanup(func() { c.Stop(t, 5*time.Second) })
	return c
}

// Stop shuts the collector down, waiting up to grace for calls in flight
// (0: cut them off at once). Later calls do nothing.
func (c *Collector) Stop(t testing.TB, grace time.Duration) {
	c.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		_ = c.Server.Shutdown(ctx)
		if err := <-c.done; err != nil {
			t.Errorf("servertest: Serve: %v", err)
		}
		if c.webDone != nil {
			if err := <-c.webDone; err != nil {
				t.Errorf("servertest: ServeWeb: %v", err)
			}
		}
	})
}

// startWeb serves the HTTP listener on a loopback port and makes a client
// that trusts ca.
func (c *Collector) startWeb(t testing.TB, ca *pki.CA, plaintext bool, ui http.Handler) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("servertest: listen for HTTP: %v", err)
	}
	c.webDone = make(chan error, 1)
	go func() { c.webDone <- c.Server.ServeWeb(lis, ui) }()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	c.WebClient = &http.Client{Transport: tr, Timeout: time.Minute}
	c.WebURL = "https://" + lis.Addr().String()
	if plaintext {
		c.WebURL = "http://" + lis.Addr().String()
	}
}
