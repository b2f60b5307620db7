package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/server"
)

// TestServeWebPlaintextOnlyOnLoopback: without TLS the HTTP listener is
// refused on an address that is not loopback, serves on loopback, and
// stops with Shutdown.
func TestServeWebPlaintextOnlyOnLoopback(t *testing.T) {
	e := newEnv(t)
	c := e.start(nil, func(cfg *server.Config) { cfg.InsecurePlaintextDev = true })

	wild, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.srv.ServeWeb(wild, nil); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("ServeWeb without TLS on %s: %v, want a refusal naming loopback", wild.Addr(), err)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.srv.ServeWeb(lis, nil) }()
	req, _ := http.NewRequest(http.MethodGet, "http://"+lis.Addr().String()+"/api/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	var resp *http.Response
	for i := 0; ; i++ {
		if resp, err = http.DefaultClient.Do(req); err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"name":"alice"`) {
		t.Errorf("whoami over plaintext loopback: %s %s", resp.Status, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeWeb after Shutdown: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("ServeWeb did not return after Shutdown")
	}
}
