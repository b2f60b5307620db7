package server

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/server/pki"
)

func TestRateLimiter(t *testing.T) {
	l := newRateLimiter(1, 2)
	now := time.Unix(1000, 0)
	if !l.allow("a", now) || !l.allow("a", now) {
		t.Fatal("burst of 2 refused")
	}
	if l.allow("a", now) {
		t.Fatal("third call in the same instant allowed")
	}
	if !l.allow("b", now) {
		t.Fatal("another key is limited by the first")
	}
	if !l.allow("a", now.Add(time.Second)) {
		t.Fatal("no token after a second at 1/s")
	}
	// Full buckets are forgotten after a sweep.
	l.allow("c", now.Add(time.Hour))
	if len(l.buckets) != 1 {
		t.Fatalf("%d buckets kept, want only the one just used", len(l.buckets))
	}
}

func TestInFlight(t *testing.T) {
	f := newInFlight(2)
	if !f.acquire("a") || !f.acquire("a") {
		t.Fatal("two slots refused")
	}
	if f.acquire("a") {
		t.Fatal("third slot granted")
	}
	if !f.acquire("b") {
		t.Fatal("other agent refused")
	}
	f.release("a")
	if !f.acquire("a") {
		t.Fatal("slot not given back")
	}
	f.release("a")
	f.release("a")
	f.release("b")
	if len(f.count) != 0 {
		t.Fatalf("counts left: %v", f.count)
	}
}

func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var open, refused atomic.Int32
	l := &limitListener{Listener: inner, max: 1,
		onChange: func(n int) { open.Store(int32(n)) }, refused: func() { refused.Add(1) }}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	s1 := <-accepted
	if open.Load() != 1 {
		t.Fatalf("open %d, want 1", open.Load())
	}
	// Beyond the limit a connection is closed at once.
	c2 := dial()
	c2.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil || refused.Load() != 1 {
		t.Fatalf("the connection beyond the limit was not closed (%v, %d refused)", err, refused.Load())
	}
	// Once the first closes, the next is accepted.
	s1.Close()
	if open.Load() != 0 {
		t.Fatalf("open %d after close, want 0", open.Load())
	}
	dial()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted after one closed")
	}
}

func TestConfigDefaultsAndRefusals(t *testing.T) {
	if _, err := (Config{}).withDefaults(); err == nil {
		t.Error("a config without a CA was accepted")
	}
	// withDefaults only checks that a CA is given: an empty one stands in.
	base := Config{InsecurePlaintextDev: true}
	base.CA = new(pki.CA)
	c, err := base.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxMessageBytes != DefaultMaxMessageBytes || c.MaxInFlightPerAgent != DefaultMaxInFlightPerAgent ||
		c.AgentCertValidity != pki.DefaultAgentValidity || c.ListenAddress != DefaultListenAddress || c.Logger == nil || c.Now == nil {
		t.Errorf("defaults not filled in: %+v", c)
	}
	bad := base
	bad.RetryDelay = -time.Second
	if _, err := bad.withDefaults(); err == nil || !strings.Contains(err.Error(), "RetryDelay") {
		t.Errorf("negative RetryDelay: %v", err)
	}
	bad = base
	bad.MaxSessionsPerSnapshot = -1
	if _, err := bad.withDefaults(); err == nil || !strings.Contains(err.Error(), "MaxSessionsPerSnapshot") {
		t.Errorf("negative MaxSessionsPerSnapshot: %v", err)
	}
	bad = base
	bad.InsecurePlaintextDev = false
	if _, err := bad.withDefaults(); err == nil || !strings.Contains(err.Error(), "Trust") {
		t.Errorf("TLS without Trust: %v", err)
	}
}
