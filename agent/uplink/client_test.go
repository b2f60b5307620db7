package uplink

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newTestClient returns a Client of a fake collector, with a manual clock
// and recorded waits.
func newTestClient(t *testing.T, f *fakeCollector, clk clock.Clock, dir string, w *waits) *Client {
	t.Helper()
	c, err := New(Options{
		Address: f.addr, ServerName: "localhost", CAPool: f.pki.pool,
		EnrollmentSecret: "s3cret", Host: testHost, StateDir: dir,
		Clock: clk, After: w.After, Logger: testLogger(t),
		Backoff: BackoffConfig{Base: 10 * time.Millisecond, Max: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEnrollRenewSwap: the first start enrolls with the secret and stores
// the identity; a restart reloads it without enrolling; after renew_after
// the certificate is renewed, stored, and used for the next call, while a
// call in flight during the renewal completes on the old connection.
func TestEnrollRenewSwap(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	dir := filepath.Join(t.TempDir(), "state")
	ctx := context.Background()
	c := newTestClient(t, f, clk, dir, &waits{})
	if err := c.EnsureIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	id := c.Identity()
	if id.AgentID != testAgent || len(f.enrolls) != 1 || f.enrolls[0].GetEnrollmentSecret() != "s3cret" {
		t.Fatalf("enrolled %+v after %d Enroll calls", id, len(f.enrolls))
	}
	if _, err := c.Send(ctx, []*pb.Report{report(1, "S")}, 0); err != nil {
		t.Fatal(err)
	}

	// Restart: the identity comes from disk.
	c.Close()
	c = newTestClient(t, f, clk, dir, &waits{})
	if err := c.EnsureIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Identity().Serial() != id.Serial() || len(f.enrolls) != 1 {
		t.Fatalf("after restart: serial %s (want %s), %d enrolls (want 1)", c.Identity().Serial(), id.Serial(), len(f.enrolls))
	}
	if renewed, err := c.MaybeRenew(ctx); renewed || err != nil {
		t.Fatalf("MaybeRenew before renew_after: %v, %v", renewed, err)
	}

	// A call in flight while the certificate is renewed.
	inside, release := make(chan struct{}), make(chan struct{})
	f.mu.Lock()
	f.inIngest = func() { inside <- struct{}{}; <-release }
	f.mu.Unlock()
	sent := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, []*pb.Report{report(2, "D")}, 0)
		sent <- err
	}()
	<-inside
	f.mu.Lock()
	f.inIngest = nil
	f.mu.Unlock()
	clk.Set(id.RenewAfter.Add(time.Second))
	renewed, err := c.MaybeRenew(ctx)
	if !renewed || err != nil {
		t.Fatalf("MaybeRenew after renew_after: %v, %v", renewed, err)
	}
	close(release)
	if err := <-sent; err != nil {
		t.Fatalf("call in flight during the renewal: %v", err)
	}
	newID := c.Identity()
	if newID.Serial() == id.Serial() || newID.AgentID != id.AgentID {
		t.Fatalf("renewed identity %s/%s, want a new serial for %s", newID.AgentID, newID.Serial(), id.AgentID)
	}
	if _, err := c.Send(ctx, []*pb.Report{report(3, "D")}, 0); err != nil {
		t.Fatal(err)
	}
	_, _, serials := f.get()
	if want := []string{id.Serial(), id.Serial(), newID.Serial()}; strings.Join(serials, ",") != strings.Join(want, ",") {
		t.Fatalf("certificates presented %v, want %v", serials, want)
	}
	// And on disk.
	loaded, metaErr, err := identityStore{dir: dir}.load()
	if err != nil || metaErr != nil || loaded.Serial() != newID.Serial() || !loaded.RenewAfter.Equal(newID.RenewAfter) {
		t.Fatalf("stored identity %v (%v, %v), want serial %s", loaded, err, metaErr, newID.Serial())
	}
}

// TestRenewFailureBacksOff: a failed renewal is retried only after a
// backoff, and the current certificate keeps working meanwhile.
func TestRenewFailureBacksOff(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	c := newTestClient(t, f, clk, t.TempDir(), &waits{})
	ctx := context.Background()
	if err := c.EnsureIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	id := c.Identity()
	clk.Set(id.RenewAfter.Add(time.Second))
	f.mu.Lock()
	f.renewErr = status.Error(codes.ResourceExhausted, "renewed too often")
	f.mu.Unlock()
	if renewed, err := c.MaybeRenew(ctx); renewed || err == nil {
		t.Fatalf("MaybeRenew against a refusing collector: %v, %v", renewed, err)
	}
	if renewed, err := c.MaybeRenew(ctx); renewed || err != nil || f.renews != 1 {
		t.Fatalf("MaybeRenew right after a failure: %v, %v, %d calls; want a quiet skip", renewed, err, f.renews)
	}
	if _, err := c.Send(ctx, []*pb.Report{report(1, "S")}, 0); err != nil {
		t.Fatalf("Send with the current certificate while renewal fails: %v", err)
	}
	f.mu.Lock()
	f.renewErr = nil
	f.mu.Unlock()
	clk.Set(clk.Now().Add(2 * time.Second)) // past the backoff (Max 1s)
	if renewed, err := c.MaybeRenew(ctx); !renewed || err != nil || f.renews != 2 {
		t.Fatalf("MaybeRenew after the backoff: %v, %v, %d calls", renewed, err, f.renews)
	}
	if c.Identity().Serial() == id.Serial() {
		t.Fatal("serial unchanged after renewal")
	}
}

// TestExpiredRenewsByProof: a certificate that expired while the host was
// off is replaced through Enroll with a renewal proof and no secret,
// keeping the agent id.
func TestExpiredRenewsByProof(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	dir := t.TempDir()
	c := newTestClient(t, f, clk, dir, &waits{})
	ctx := context.Background()
	if err := c.EnsureIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	old := c.Identity()
	c.Close()
	clk.Set(old.NotAfter.Add(48 * time.Hour))
	c = newTestClient(t, f, clk, dir, &waits{})
	if err := c.EnsureIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.enrolls) != 2 {
		t.Fatalf("%d Enroll calls, want 2", len(f.enrolls))
	}
	req := f.enrolls[1]
	if req.GetEnrollmentSecret() != "" || len(req.GetRenewalProof()) == 0 || string(req.GetPreviousCertificateDer()) != string(old.ChainDER[0]) {
		t.Fatalf("renewal Enroll: secret %q, proof %d bytes, previous certificate sent: %v",
			req.GetEnrollmentSecret(), len(req.GetRenewalProof()), len(req.GetPreviousCertificateDer()) > 0)
	}
	if id := c.Identity(); id.AgentID != old.AgentID || id.Serial() == old.Serial() || !clk.Now().Before(id.NotAfter) {
		t.Fatalf("identity after proof: %s/%s until %v", id.AgentID, id.Serial(), id.NotAfter)
	}
	if _, err := c.Send(ctx, []*pb.Report{report(1, "S")}, 0); err != nil {
		t.Fatal(err)
	}
}

// TestUnusableIdentityReenrolls: a damaged key is moved aside (kept for
// an administrator) and the agent enrolls again with its secret; an
// identity of another machine is treated the same way.
func TestUnusableIdentityReenrolls(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	dir := t.TempDir()
	s := identityStore{dir: dir}
	if err := s.save(p.issue(t, "agent-old", testGUID, time.Hour, clk.Now())); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, KeyFile), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	c := newTestClient(t, f, clk, dir, &waits{})
	if err := c.EnsureIdentity(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c.Identity().AgentID != testAgent || len(f.enrolls) != 1 {
		t.Fatalf("identity %s after %d enrolls, want a new enrollment", c.Identity().AgentID, len(f.enrolls))
	}
	kept, _ := filepath.Glob(filepath.Join(dir, "agent.key.unusable-*"))
	if len(kept) != 1 {
		t.Fatalf("damaged key not kept aside: %v", kept)
	}

	// A disk cloned from another machine.
	dir2 := t.TempDir()
	if err := (identityStore{dir: dir2}).save(p.issue(t, "agent-other", "0a1b2c3d-0000-4000-8000-0000000000bb", time.Hour, clk.Now())); err != nil {
		t.Fatal(err)
	}
	c2 := newTestClient(t, f, clk, dir2, &waits{})
	if err := c2.EnsureIdentity(context.Background()); err != nil {
		t.Fatal(err)
	}
	if c2.Identity().MachineGUID != testGUID || len(f.enrolls) != 2 {
		t.Fatalf("cloned identity kept: %+v", c2.Identity())
	}
}

func TestClassify(t *testing.T) {
	withRetry, _ := status.New(codes.Unavailable, "store down").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(7 * time.Second)})
	for _, tc := range []struct {
		err   error
		check func(error) bool
	}{
		{withRetry.Err(), func(err error) bool {
			pe, ok := errors.AsType[*PushbackError](err)
			return ok && pe.RetryAfter == 7*time.Second && status.Code(err) == codes.Unavailable
		}},
		{status.Error(codes.Unavailable, "connection refused"), func(err error) bool {
			_, ok := errors.AsType[*PushbackError](err)
			return !ok && status.Code(err) == codes.Unavailable
		}},
		{status.Error(codes.ResourceExhausted, "too many in flight"), func(err error) bool {
			pe, ok := errors.AsType[*PushbackError](err)
			return ok && pe.RetryAfter == 0
		}},
		{status.Error(codes.Unauthenticated, "no cert"), func(err error) bool {
			ae, ok := errors.AsType[*AuthError](err)
			return ok && ae.Code == codes.Unauthenticated
		}},
		{status.Error(codes.PermissionDenied, "agent disabled"), func(err error) bool {
			_, ok := errors.AsType[*AuthError](err)
			return ok
		}},
		{status.Error(codes.InvalidArgument, "reports[2].delta.taken_at: before the base"), func(err error) bool {
			re, ok := errors.AsType[*RejectedError](err)
			return ok && strings.Contains(re.Error(), "reports[2].delta.taken_at")
		}},
		{context.DeadlineExceeded, func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
	} {
		if got := classify("ingest", "collector:8443", tc.err); !tc.check(got) {
			t.Errorf("classify(%v) = %T %v", tc.err, got, got)
		}
	}
}

// TestRefusedProofDoesNotUseSecret: when the collector refuses the
// renewal proof (a disabled agent), the agent does not enroll anew with
// its secret, which would bring the disabled agent back.
func TestRefusedProofDoesNotUseSecret(t *testing.T) {
	p := newTestPKI(t)
	clk := clock.NewManual(time.Now())
	f := startFake(t, p, clk, time.Hour)
	c := newTestClient(t, f, clk, t.TempDir(), &waits{})
	ctx := context.Background()
	if err := c.EnsureIdentity(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Set(c.Identity().NotAfter.Add(time.Hour))
	f.mu.Lock()
	f.refuseProof = true
	f.mu.Unlock()
	err := c.EnsureIdentity(ctx)
	if ae, ok := errors.AsType[*AuthError](err); !ok || ae.Code != codes.Unauthenticated {
		t.Fatalf("EnsureIdentity with a refused proof: %v, want an AuthError", err)
	}
	if len(f.enrolls) != 2 || f.enrolls[1].GetEnrollmentSecret() != "" {
		t.Fatalf("%d Enroll calls (second with secret %q), want 2, the second by proof only", len(f.enrolls), f.enrolls[len(f.enrolls)-1].GetEnrollmentSecret())
	}
}
