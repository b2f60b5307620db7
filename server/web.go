package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/sessionaudit/sessionaudit/server/httpapi"
)

// Timeouts and limits of the HTTP listener (ServeWeb).
const (
	webReadHeaderTimeout = 10 * time.Second
	webReadTimeout       = 30 * time.Second
	webIdleTimeout       = 2 * time.Minute
	webMaxHeaderBytes    = 64 << 10
	// webWriteMargin is added to QueryTimeout for the write timeout; an
	// export extends it page by page.
	webWriteMargin = 30 * time.Second
)

// HTTPHandler returns the handler of the collector's HTTP listener: the
// HTTP JSON API (server/httpapi) over Queries under /api/, and ui (the web
// UI; nil for none) at /, with the security headers on every answer.
func (s *Server) HTTPHandler(ui http.Handler) http.Handler {
	api := httpapi.New(s.Queries(), httpapi.Options{Now: s.cfg.Now, MaxExportRows: s.cfg.MaxExportRows, Logger: s.log,
		WhoAmI: s.WhoAmI})
	return httpapi.Site(api, ui)
}

// WebTLSConfig returns the TLS configuration of the HTTP listener: the
// collector's server certificate, TLS 1.2 or later (browsers and scripts
// that cannot do 1.3 yet), forward-secret AEAD cipher suites only, HTTP/2
// and HTTP/1.1. It asks for no client certificate: the API takes tokens.
func WebTLSConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// ServeWeb serves HTTPHandler(ui) on lis over HTTPS (WebTLSConfig) until
// Shutdown, which stops it with the gRPC server; it returns nil after
// Shutdown and the listener's error otherwise. With InsecurePlaintextDev it
// serves plain HTTP, and refuses a listener that is not on a loopback
// address.
func (s *Server) ServeWeb(lis net.Listener, ui http.Handler) error {
	if s.cfg.InsecurePlaintextDev {
		if !IsLoopback(lis.Addr()) {
			lis.Close()
			return fmt.Errorf("server: InsecurePlaintextDev refuses to serve HTTP on %s: only a loopback address is allowed without TLS", lis.Addr())
		}
		s.log.Warn("INSECURE: HTTP API and web UI served WITHOUT TLS (InsecurePlaintextDev); tokens travel in clear; development only",
			"addr", lis.Addr().String())
	}
	hs := &http.Server{
		Handler:           s.HTTPHandler(ui),
		ReadHeaderTimeout: webReadHeaderTimeout,
		ReadTimeout:       webReadTimeout,
		WriteTimeout:      s.cfg.QueryTimeout + webWriteMargin,
		IdleTimeout:       webIdleTimeout,
		MaxHeaderBytes:    webMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if !s.cfg.InsecurePlaintextDev {
		hs.TLSConfig = WebTLSConfig(s.cfg.ServerCertificate)
	}
	if !s.web.add(hs) {
		lis.Close()
		return nil // Shutdown came first
	}
	s.log.Info("HTTP API and web UI serving", "addr", lis.Addr().String(), "tls", !s.cfg.InsecurePlaintextDev)
	var err error
	if s.cfg.InsecurePlaintextDev {
		err = hs.Serve(lis)
	} else {
		err = hs.ServeTLS(lis, "", "")
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// webServers are the running HTTP servers of ServeWeb.
type webServers struct {
	mu      sync.Mutex
	servers []*http.Server
	stopped bool
}

// add registers hs; false after shutdown.
func (w *webServers) add(hs *http.Server) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	w.servers = append(w.servers, hs)
	return true
}

// shutdown stops every server gracefully until ctx is done, then closes
// their connections.
func (w *webServers) shutdown(ctx context.Context) {
	w.mu.Lock()
	w.stopped = true
	servers := w.servers
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, hs := range servers {
		wg.Go(func() {
			if hs.Shutdown(ctx) != nil {
				hs.Close()
			}
		})
	}
	wg.Wait()
}
