package server_test

// Peers without an agent certificate (docs/design/0003-security.md, "Peers
// without an agent certificate"): refused before their request is read,
// small messages, few streams, a bounded number of connections.

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// rawCodec sends a []byte as the request as it is, so that a test can send
// a body the collector could not decode, or one larger than it accepts.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// invokeRaw calls method with body as the encoded request.
func invokeRaw(conn *grpc.ClientConn, method string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []byte
	return conn.Invoke(ctx, method, &body, &out, grpc.ForceCodec(rawCodec{}))
}

// TestUnauthenticatedIngestRefusedBeforeBody: an Ingest without a client
// certificate is refused UNAUTHENTICATED when its headers arrive. Its body
// is neither read nor decoded: a body larger than any message limit is not
// answered RESOURCE_EXHAUSTED (which gRPC answers once it reads the
// message's length), and one that is not protobuf is not answered INTERNAL
// (which gRPC answers when it decodes the request, before any interceptor).
func TestUnauthenticatedIngestRefusedBeforeBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	conn := e.dial(c.addr, nil)
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"larger than MaxMessageBytes", bytes.Repeat([]byte{0xff}, server.DefaultMaxMessageBytes+1<<20)},
		{"not protobuf, 1.9 MB", bytes.Repeat([]byte{0xff}, 1_900_000)},
	} {
		err := invokeRaw(conn, pb.CollectorService_Ingest_FullMethodName, tc.body)
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(status.Convert(err).Message(), "client certificate is required") {
			t.Errorf("Ingest without a certificate, body %s: got %v, want UNAUTHENTICATED before the body is read", tc.name, err)
		}
		err = invokeRaw(conn, pb.CollectorService_Renew_FullMethodName, tc.body)
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("Renew without a certificate, body %s: got %v, want UNAUTHENTICATED before the body is read", tc.name, err)
		}
	}
	// The same connection still serves what a guest may call.
	a := e.enroll(c, guidA)
	q, ctx := e.queryClient(c)
	if _, err := q.ListHosts(ctx, &pb.ListHostsRequest{}); err != nil {
		t.Fatalf("query with a token: %v", err)
	}
	// An agent's connection keeps the full message limit: a batch far
	// above the guests' limit is taken.
	var sessions []*pb.LogonSession
	for i := range 1500 {
		l := logon(fmt.Sprintf("0x%x", 0x1000+i), fmt.Sprintf("user%d", i))
		l.Description = strings.Repeat("d", 100)
		sessions = append(sessions, l)
	}
	big := snapshot(1, guidA, 0, sessions...)
	if n := len(mustMarshal(t, batch(big))); n <= server.GuestMaxMessageBytes {
		t.Fatalf("test batch of %d bytes is not above GuestMaxMessageBytes", n)
	}
	if resp := ingest(t, e.agentClient(c, a), big); resp.GetAcknowledgedSequence() != 1 {
		t.Fatalf("agent's large batch: acknowledged %d, want 1", resp.GetAcknowledgedSequence())
	}
}

// TestGuestLimits: a connection without an agent certificate is offered few
// streams and small headers (the HTTP/2 SETTINGS the collector sends), and
// a request above the guests' message limit is refused RESOURCE_EXHAUSTED
// without reaching a handler; a connection with an agent certificate gets
// the agents' limits.
func TestGuestLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	a := e.enroll(c, guidA)

	guest := http2Settings(t, c.addr, identity.ClientTLSConfig(e.roots, "localhost", nil))
	if got := guest[settingMaxStreams]; got != server.GuestMaxStreams {
		t.Errorf("guest connection: SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d (settings %v)", got, server.GuestMaxStreams, guest)
	}
	if got := guest[settingMaxHeaderList]; got != server.GuestMaxHeaderBytes {
		t.Errorf("guest connection: SETTINGS_MAX_HEADER_LIST_SIZE %d, want %d (settings %v)", got, server.GuestMaxHeaderBytes, guest)
	}
	agent := http2Settings(t, c.addr, identity.ClientTLSConfig(e.roots, "localhost", &a.cert))
	if got := agent[settingMaxStreams]; got != server.AgentMaxStreams {
		t.Errorf("agent connection: SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d (settings %v)", got, server.AgentMaxStreams, agent)
	}

	// An Enroll (which needs no certificate) above the guests' limit.
	conn := e.dial(c.addr, nil)
	err := invokeRaw(conn, pb.CollectorService_Enroll_FullMethodName, make([]byte, server.GuestMaxMessageBytes+1))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("Enroll of %d bytes without a certificate: got %v, want RESOURCE_EXHAUSTED", server.GuestMaxMessageBytes+1, err)
	}
	// Enrollment itself still works on such a connection.
	e.enroll(c, guidB)
}

// TestGuestConnectionCap: at most MaxGuestConnections connections without
// an agent certificate are served at once; the next is closed after its
// handshake, and a place freed is taken again.
func TestGuestConnectionCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, nil)
	a := e.enroll(c, guidA) // its connection stays open: one guest
	cfg := identity.ClientTLSConfig(e.roots, "localhost", nil)
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 1; i < server.MaxGuestConnections; i++ {
		conn, err := openHTTP2(c.addr, cfg)
		if err != nil {
			t.Fatalf("guest connection %d: %v", i+1, err)
		}
		conns = append(conns, conn)
	}
	if conn, err := openHTTP2(c.addr, cfg); err == nil {
		conn.Close()
		t.Fatalf("guest connection %d was served; want it closed (MaxGuestConnections %d)", server.MaxGuestConnections+1, server.MaxGuestConnections)
	}
	// An agent is not a guest.
	if resp := ingest(t, e.agentClient(c, a), snapshot(1, guidA, 0)); resp.GetAcknowledgedSequence() != 1 {
		t.Fatalf("agent with every guest place taken: acknowledged %d", resp.GetAcknowledgedSequence())
	}
	conns[0].Close()
	conns = conns[1:]
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := openHTTP2(c.addr, cfg)
		if err == nil {
			conns = append(conns, conn)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest connection after one closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustMarshal(t *testing.T, m *pb.IngestRequest) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// HTTP/2 settings (RFC 9113, 6.5.2).
const (
	settingMaxStreams    = 0x3
	settingMaxHeaderList = 0x6
)

// openHTTP2 opens a TLS connection speaking HTTP/2 and returns it once the
// server's first frame has arrived: a connection the collector serves. A
// connection it closes after the handshake gives an error.
func openHTTP2(addr string, cfg *tls.Config) (net.Conn, error) {
	conn, _, err := startHTTP2(addr, cfg)
	return conn, err
}

// http2Settings returns the SETTINGS the collector sends on a new
// connection made with cfg.
func http2Settings(t *testing.T, addr string, cfg *tls.Config) map[uint16]uint32 {
	t.Helper()
	conn, settings, err := startHTTP2(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	return settings
}

func startHTTP2(addr string, cfg *tls.Config) (net.Conn, map[uint16]uint32, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	// The client preface, then an empty SETTINGS frame.
	if _, err := conn.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)); err != nil {
		conn.Close()
		return nil, nil, err
	}
	for {
		var h [9]byte
		if _, err := io.ReadFull(conn, h[:]); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("reading the server's frames: %w", err)
		}
		n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		payload := make([]byte, n)
		if _, err := io.ReadFull(conn, payload); err != nil {
			conn.Close()
			return nil, nil, err
		}
		if h[3] != 0x4 || h[4]&0x1 != 0 { // not SETTINGS, or an ACK
			continue
		}
		if n%6 != 0 {
			conn.Close()
			return nil, nil, errors.New("malformed SETTINGS frame")
		}
		settings := map[uint16]uint32{}
		for i := 0; i < n; i += 6 {
			settings[binary.BigEndian.Uint16(payload[i:])] = binary.BigEndian.Uint32(payload[i+2:])
		}
		_ = conn.SetDeadline(time.Time{})
		return conn, settings, nil
	}
}
