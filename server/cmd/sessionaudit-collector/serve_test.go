package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	"github.com/sessionaudit/sessionaudit/server/pki"
	"github.com/sessionaudit/sessionaudit/store"
	"github.com/sessionaudit/sessionaudit/store/storetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestServe(t *testing.T) {
	url := storetest.NewDatabase(t, nil) // serve migrates it itself
	dir := t.TempDir()
	mustRun(t, "init-pki", "--pki-dir", dir, "--dns", "localhost", "--ip", "127.0.0.1")
	addr, metricsAddr, httpAddr := freeAddr(t), freeAddr(t), freeAddr(t)

	ctx, stop := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() {
		var out, errOut strings.Builder
		code := run(ctx, []string{"serve", "--database-url", url, "--pki-dir", dir, "--listen", addr,
			"--metrics-listen", metricsAddr, "--http-listen", httpAddr, "--log-format", "text"}, &out, &errOut)
		if code != exitOK {
			t.Errorf("serve exited %d: %s", code, errOut.String())
		}
		exited <- code
	}()

	caCerts, err := pki.LoadCertificates(filepath.Join(dir, agentCACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCerts[0])
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(identity.ClientTLSConfig(pool, "localhost", nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector not serving over TLS after 30s: %v %v", resp, err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "sessionaudit_") {
		t.Errorf("/metrics has no sessionaudit metric:\n%.500s", body)
	}

	// The HTTP API answers over HTTPS with the server certificate, with
	// the security headers, and wants a token.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	resp, err = hc.Get("https://" + httpAddr + "/api/v1/hosts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Security-Policy") == "" || resp.TLS == nil {
		t.Errorf("GET /api/v1/hosts without a token: %s, CSP %q, TLS %v; want 401 with a CSP over TLS",
			resp.Status, resp.Header.Get("Content-Security-Policy"), resp.TLS != nil)
	}

	// serve migrated the database.
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := st.SchemaVersion(ctx); err != nil || v < 3 {
		t.Errorf("schema version after serve: %d, %v", v, err)
	}
	st.Close()

	stop() // SIGTERM's path: graceful stop
	select {
	case <-exited:
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop within 40s of the signal")
	}
}

func TestServeRefusesBadSetup(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve", "--pki-dir", dir}, exitUsage, "--database-url"},
		{[]string{"serve", "--database-url=postgres://x", "--pki-dir", dir}, exitFailure, "agent-ca.crt"},
		{[]string{"serve", "--database-url=postgres://x", "--log-level", "loud"}, exitUsage, `--log-level "loud"`},
	}
	for _, tt := range tests {
		code, out, errOut := collector(t, tt.args...)
		if code != tt.code || !strings.Contains(out+errOut, tt.want) {
			t.Errorf("%q: exit %d, want %d with %q\n%s%s", tt.args, code, tt.code, tt.want, out, errOut)
		}
	}
}
