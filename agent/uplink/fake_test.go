package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sessionaudit/sessionaudit/proto/identity"

	"github.com/sessionaudit/sessionaudit/agent/clock"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fakeCollector is a CollectorService over real TLS on loopback that signs
// with a test CA, stores sequences in memory, and lets a test script
// Ingest's answers.
type fakeCollector struct {
	pb.UnimplementedCollectorServiceServer
	pki      *testPKI
	clock    clock.Clock
	validity time.Duration
	addr     string

	mu          sync.Mutex
	enrolls     []*pb.EnrollRequest
	renews      int
	renewErr    error
	refuseProof bool
	batches     [][]uint64 // sequences of each Ingest call
	serials     []string   // client certificate serial of each Ingest call
	stored      []uint64
	hwm         uint64
	script      []func(*pb.IngestRequest) (*pb.IngestResponse, error) // consumed one per call, then the default
	inIngest    func()                                                // called inside every Ingest (blocking tests)
}

func startFake(t *testing.T, p *testPKI, clk clock.Clock, validity time.Duration) *fakeCollector {
	t.Helper()
	f := &fakeCollector{pki: p, clock: clk, validity: validity}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	// The fake does not verify client certificates: the clock of the test
	// moves, the handshake's would not. It records what was presented.
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.serverCert},
		ClientAuth: tls.RequestClientCert, NextProtos: []string{"h2"},
	})))
	pb.RegisterCollectorServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return f
}

func (f *fakeCollector) sign(csr []byte, agentID, guid string) (*pb.EnrollResponse, error) {
	ic, err := f.pki.signAgentCSR(csr, agentID, guid, f.validity, f.clock.Now())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.EnrollResponse{AgentId: agentID, CertificateDer: ic.DER, CaChainDer: [][]byte{ic.CADER},
		NotAfter: timestamppb.New(ic.NotAfter), RenewAfter: timestamppb.New(ic.RenewAfter)}, nil
}

func (f *fakeCollector) Enroll(_ context.Context, req *pb.EnrollRequest) (*pb.EnrollResponse, error) {
	f.mu.Lock()
	f.enrolls = append(f.enrolls, req)
	f.mu.Unlock()
	if req.GetEnrollmentSecret() != "s3cret" && len(req.GetRenewalProof()) == 0 {
		return nil, status.Error(codes.Unauthenticated, "enrollment refused")
	}
	agentID := testAgent
	if len(req.GetRenewalProof()) > 0 {
		f.mu.Lock()
		refuse := f.refuseProof
		f.mu.Unlock()
		if refuse {
			return nil, status.Error(codes.Unauthenticated, "enrollment refused")
		}
		id, err := f.verifyRenewalProof(req)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, "enrollment refused")
		}
		agentID = id
	}
	return f.sign(req.GetCsrDer(), agentID, req.GetHost().GetMachineGuid())
}

// verifyRenewalProof returns the agent id of the request's previous
// certificate when it was issued by the test CA, expired at most
// identity.DefaultRenewalGrace ago, and its key signed the new CSR.
func (f *fakeCollector) verifyRenewalProof(req *pb.EnrollRequest) (string, error) {
	prev, err := x509.ParseCertificate(req.GetPreviousCertificateDer())
	if err != nil {
		return "", err
	}
	if f.clock.Now().Sub(prev.NotAfter) > identity.DefaultRenewalGrace {
		return "", fmt.Errorf("expired beyond the grace")
	}
	agentID, _, err := f.pki.agentNames(prev, time.Time{})
	if err != nil {
		return "", err
	}
	if err := identity.VerifyRenewalSignature(prev.PublicKey, req.GetCsrDer(), req.GetRenewalProof()); err != nil {
		return "", err
	}
	return agentID, nil
}

// agentIdentity is who a verified client certificate speaks for.
type agentIdentity struct{ AgentID, MachineGUID, Serial string }

func (f *fakeCollector) peerIdentity(ctx context.Context) (agentIdentity, error) {
	p, _ := peer.FromContext(ctx)
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return agentIdentity{}, status.Error(codes.Unauthenticated, "a client certificate is required")
	}
	cert := ti.State.PeerCertificates[0]
	agentID, guid, err := f.pki.agentNames(cert, f.clock.Now())
	if err != nil {
		return agentIdentity{}, err
	}
	return agentIdentity{AgentID: agentID, MachineGUID: guid, Serial: cert.SerialNumber.Text(16)}, nil
}

func (f *fakeCollector) Renew(ctx context.Context, req *pb.RenewRequest) (*pb.RenewResponse, error) {
	id, err := f.peerIdentity(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	f.mu.Lock()
	f.renews++
	renewErr := f.renewErr
	f.mu.Unlock()
	if renewErr != nil {
		return nil, renewErr
	}
	r, err := f.sign(req.GetCsrDer(), id.AgentID, id.MachineGUID)
	if err != nil {
		return nil, err
	}
	return &pb.RenewResponse{CertificateDer: r.CertificateDer, CaChainDer: r.CaChainDer, NotAfter: r.NotAfter, RenewAfter: r.RenewAfter}, nil
}

func (f *fakeCollector) Ingest(ctx context.Context, req *pb.IngestRequest) (*pb.IngestResponse, error) {
	id, err := f.peerIdentity(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	f.mu.Lock()
	var seqs []uint64
	for _, r := range req.GetBatch().GetReports() {
		seqs = append(seqs, r.GetSequence())
	}
	f.batches = append(f.batches, seqs)
	f.serials = append(f.serials, id.Serial)
	var step func(*pb.IngestRequest) (*pb.IngestResponse, error)
	if len(f.script) > 0 {
		step, f.script = f.script[0], f.script[1:]
	}
	hook := f.inIngest
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	if step != nil {
		if resp, err := step(req); resp != nil || err != nil {
			return resp, err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range seqs {
		if s > f.hwm {
			f.stored = append(f.stored, s)
			f.hwm = s
		}
	}
	return &pb.IngestResponse{AcknowledgedSequence: f.hwm}, nil
}

func (f *fakeCollector) get() (stored []uint64, batches [][]uint64, serials []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.stored), slices.Clone(f.batches), slices.Clone(f.serials)
}

// memQueue is a Queue in memory with the spool's semantics.
type memQueue struct {
	mu      sync.Mutex
	reports []*pb.Report
	acked   uint64
	dropped uint64
	notify  chan struct{}
}

func newMemQueue() *memQueue { return &memQueue{notify: make(chan struct{}, 1)} }

func (q *memQueue) Append(rs ...*pb.Report) {
	q.mu.Lock()
	q.reports = append(q.reports, rs...)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *memQueue) Peek(maxReports, _ int) ([]*pb.Report, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*pb.Report
	for _, r := range q.reports {
		if r.GetSequence() > q.acked && len(out) < maxReports {
			out = append(out, r)
		}
	}
	return out, nil
}

func (q *memQueue) Dropped() (uint64, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped, 0
}

func (q *memQueue) Ack(seq, dropped uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.acked = max(q.acked, seq)
	q.dropped -= min(q.dropped, dropped)
	return nil
}

func (q *memQueue) Acked() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.acked
}

// waits records the delays the uplink waited; delays of an hour or more
// (the idle poll in tests) block until the context ends or Notify fires,
// shorter ones return at once.
type waits struct {
	mu sync.Mutex
	ds []time.Duration
}

func (w *waits) After(d time.Duration) <-chan time.Time {
	w.mu.Lock()
	w.ds = append(w.ds, d)
	w.mu.Unlock()
	if d >= time.Hour {
		return nil
	}
	ch := make(chan time.Time, 1)
	ch <- time.Now()
	return ch
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ds)
}

func report(seq uint64, kind string) *pb.Report {
	at := timestamppb.New(time.Now())
	switch kind {
	case "S":
		return &pb.Report{Sequence: seq, Content: &pb.Report_Snapshot{Snapshot: &pb.Snapshot{Host: testHost(), TakenAt: at}}}
	case "H":
		return &pb.Report{Sequence: seq, Content: &pb.Report_Heartbeat{Heartbeat: &pb.Heartbeat{BaseSequence: seq - 1, TakenAt: at}}}
	}
	return &pb.Report{Sequence: seq, Content: &pb.Report_Delta{Delta: &pb.Delta{BaseSequence: seq - 1, TakenAt: at}}}
}

// eventually polls cond until it holds or 20 seconds pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
