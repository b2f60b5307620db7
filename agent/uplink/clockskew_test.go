package uplink

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// lockedBuffer is a log destination a test reads while the client writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// take returns what was written since the last call.
func (l *lockedBuffer) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	l.b.Reset()
	return s
}

// TestClockSkewLogged: the clock skew the collector measures
// (IngestResponse.clock_skew) reaches the Ack, and the agent warns when it
// is beyond a minute: once, again after an hour or when it moved by a
// minute, and says once when the clocks agree again.
func TestClockSkewLogged(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, 48*time.Hour)
	var logs lockedBuffer
	c, err := New(Options{
		Address: f.addr, ServerName: "localhost", CAPool: f.pki.pool,
		EnrollmentSecret: "s3cret", Host: testHost, StateDir: t.TempDir(),
		Clock: clk, After: (&waits{}).After, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if err := c.EnsureIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	logs.take()

	steps := []struct {
		advance time.Duration
		skew    *durationpb.Duration
		want    string // the log's message, "" for none
	}{
		{0, durationpb.New(3 * time.Hour), `level=WARN msg="uplink: the host's clock is ahead of the collector's by more than 1m0s`},
		{time.Minute, durationpb.New(3*time.Hour + 30*time.Second), ""},
		{time.Minute, nil, ""},
		{time.Hour, durationpb.New(3 * time.Hour), `level=WARN msg="uplink: the host's clock is ahead of`},
		{time.Minute, durationpb.New(-2 * time.Hour), `level=WARN msg="uplink: the host's clock is behind the collector's`},
		{time.Minute, durationpb.New(-2*time.Hour - 59*time.Second), ""},
		{time.Minute, durationpb.New(10 * time.Second), `level=INFO msg="uplink: the host's clock agrees with the collector's again"`},
		{time.Minute, durationpb.New(-30 * time.Second), ""},
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		skew := st.skew
		f.mu.Lock()
		f.script = append(f.script, func(*pb.IngestRequest) (*pb.IngestResponse, error) {
			return &pb.IngestResponse{AcknowledgedSequence: uint64(i + 1), ClockSkew: skew}, nil
		})
		f.mu.Unlock()
		ack, err := c.Send(ctx, []*pb.Report{report(uint64(i+1), "S")}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ack.ClockSkewMeasured != (skew != nil) || ack.ClockSkew != skew.AsDuration() {
			t.Errorf("step %d: Ack skew %v (measured %v), want %v", i, ack.ClockSkew, ack.ClockSkewMeasured, skew)
		}
		got := logs.take()
		switch {
		case st.want == "" && got != "":
			t.Errorf("step %d: logged %q, want nothing", i, got)
		case st.want != "" && (!strings.Contains(got, st.want) || strings.Count(got, "\n") != 1):
			t.Errorf("step %d: logged %q, want one line with %q", i, got, st.want)
		case st.want != "" && !strings.Contains(got, "clock_skew="):
			t.Errorf("step %d: logged %q without clock_skew", i, got)
		}
	}
}
