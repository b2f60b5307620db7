package server_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
	"github.com/sessionaudit/sessionaudit/server"
	"github.com/sessionaudit/sessionaudit/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// syncBuffer is a bytes.Buffer safe for the collector's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestBatchQuarantinedAfterRepeatedFailures: a batch the store fails every
// time (here a trigger refuses one of its sessions) is pushed back until it
// has failed QuarantineAfterFailures times over QuarantineMinSpan while the
// store commits other batches; then it is acknowledged without being stored
// (with a resync, so that the agent sends a Snapshot), kept whole in
// quarantined_batch, counted, alerted on, and the host's later reports are
// stored. Before the quarantine, the agent resent it forever and its host's
// history stopped.
func TestBatchQuarantinedAfterRepeatedFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	c := e.start(nil, func(cfg *server.Config) {
		cfg.QuarantineAfterFailures = 3
		cfg.Registry = reg
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	a, b := e.enroll(c, guidA), e.enroll(c, guidB)
	ac, bc := e.agentClient(c, a), e.agentClient(c, b)
	ingest(t, ac, snapshot(1, guidA, 0, logon("0x1", "alice")))
	ingest(t, bc, snapshot(1, guidB, 0, logon("0x9", "bob")))

	ctx := context.Background()
	if _, err := e.st.Pool().Exec(ctx, `
		CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.logon_id = '0xbad' THEN RAISE EXCEPTION 'poisoned session %', NEW.logon_id; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER poison BEFORE INSERT ON logon_session FOR EACH ROW EXECUTE FUNCTION poison()`); err != nil {
		t.Fatal(err)
	}
	stuck := batch(delta(2, 1, 5, []*pb.LogonSession{logon("0xbad", "mallory")}), heartbeat(3, 2, 6))

	// As the agent does: resend the batch until it is acknowledged, with
	// time passing and other hosts' batches committed in between.
	var resp *pb.IngestResponse
	for try := 1; try <= 3; try++ {
		var err error
		resp, err = ac.Ingest(ctx, stuck)
		if try < 3 {
			wantCode(t, "a batch the store fails", err, codes.Unavailable)
			ingest(t, bc, heartbeat(uint64(1+try), 1, try))
			e.skew.Add(int64(6 * time.Minute))
			continue
		}
		if err != nil {
			t.Fatalf("attempt %d of a batch failed %d times over 12 minutes: %v: the agent is stuck behind it, and its host's history stops", try, try-1, err)
		}
	}
	if resp.GetAcknowledgedSequence() != 3 || !resp.GetResyncRequired() {
		t.Fatalf("quarantined batch: acknowledged %d, resync %v; want 3 and a resync", resp.GetAcknowledgedSequence(), resp.GetResyncRequired())
	}

	// The host's later reports are stored.
	if r := ingest(t, ac, snapshot(4, guidA, 20, logon("0x1", "alice"), logon("0x2", "carol"))); r.GetAcknowledgedSequence() != 4 || r.GetResyncRequired() {
		t.Fatalf("snapshot after the quarantine: %v", r)
	}
	if r := ingest(t, ac, delta(5, 4, 21, []*pb.LogonSession{logon("0x3", "dave")})); r.GetAcknowledgedSequence() != 5 {
		t.Fatalf("delta after the quarantine: %v", r)
	}
	want := []string{guidA + " 0x1 open", guidA + " 0x2 open", guidA + " 0x3 open", guidB + " 0x9 open"}
	if got := e.intervals(); !equal(got, want) {
		t.Fatalf("intervals:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Kept whole, with its failures; a coverage gap, settled by the snapshot.
	var first, last int64
	var failures int
	var lastErr string
	var raw []byte
	if err := e.st.Pool().QueryRow(ctx, `SELECT first_sequence, last_sequence, failures, last_error, batch
		FROM quarantined_batch WHERE agent_id = $1`, a.id).Scan(&first, &last, &failures, &lastErr, &raw); err != nil {
		t.Fatal(err)
	}
	var kept pb.Batch
	if err := proto.Unmarshal(raw, &kept); err != nil {
		t.Fatal(err)
	}
	if first != 2 || last != 3 || failures != 3 || !strings.Contains(lastErr, "poisoned session 0xbad") ||
		!proto.Equal(&kept, &pb.Batch{Reports: stuck.GetBatch().GetReports(), SentAt: stuck.GetBatch().GetSentAt()}) {
		t.Fatalf("quarantined batch: %d..%d, %d failures, %q, %v", first, last, failures, lastErr, &kept)
	}
	gaps, err := e.st.CoverageGaps(ctx, store.CoverageGapsQuery{Host: guidA})
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps.Items) != 1 || gaps.Items[0].Reason != store.GapQuarantined || gaps.Items[0].SettledAt.IsZero() {
		t.Fatalf("coverage gaps: %+v", gaps.Items)
	}

	// Visible: the metric and the alert line.
	if got := counterValue(t, reg, "sessionaudit_batches_quarantined_total", nil); got != 1 {
		t.Fatalf("sessionaudit_batches_quarantined_total = %v", got)
	}
	if got := counterValue(t, reg, "sessionaudit_batches_total", map[string]string{"result": "quarantined"}); got != 1 {
		t.Fatalf(`sessionaudit_batches_total{result="quarantined"} = %v`, got)
	}
	var alert string
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "ALERT batch quarantined") {
			alert = line
		}
	}
	for _, want := range []string{"level=ERROR", "agent=" + a.id, "machine_guid=" + guidA, "first_sequence=2", "last_sequence=3",
		"failures=3", "poisoned session 0xbad", "gap_start="} {
		if !strings.Contains(alert, want) {
			t.Fatalf("alert line %q lacks %q; logs:\n%s", alert, want, logs.String())
		}
	}
}

// TestNoQuarantineWhileTheStoreFailsEverything: a batch that fails while no
// other batch is committed is not quarantined (the store, not the batch,
// is failing), nor one that has not failed for QuarantineMinSpan yet.
func TestNoQuarantineWhileTheStoreFailsEverything(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.start(nil, func(cfg *server.Config) { cfg.QuarantineAfterFailures = 2 })
	a := e.enroll(c, guidA)
	ac := e.agentClient(c, a)
	ingest(t, ac, snapshot(1, guidA, 0, logon("0x1", "alice")))
	ctx := context.Background()
	if _, err := e.st.Pool().Exec(ctx, `
		CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'every write fails'; END $$;
		CREATE TRIGGER poison BEFORE INSERT ON logon_session FOR EACH ROW EXECUTE FUNCTION poison()`); err != nil {
		t.Fatal(err)
	}
	stuck := batch(delta(2, 1, 5, []*pb.LogonSession{logon("0x2", "bob")}))
	for try := 1; try <= 4; try++ {
		_, err := ac.Ingest(ctx, stuck)
		wantCode(t, "a batch failing while nothing else is committed", err, codes.Unavailable)
		e.skew.Add(int64(6 * time.Minute))
	}
	var n int
	if err := e.st.Pool().QueryRow(ctx, `SELECT count(*) FROM quarantined_batch`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d batches quarantined (%v)", n, err)
	}
}

// counterValue returns the value of the counter name with labels (nil: the
// only series) in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
