package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRecordIngestFailureCounts: failures of calls that start at the same
// report add up; a call that starts elsewhere (the agent got past the
// earlier batch) starts the count again.
func TestRecordIngestFailureCounts(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	mustIngest(t, s, "agent-1", full(1, at(0), at(-time.Hour), []LogonSession{logon("0x1", at(-time.Minute), "C", "alice")}, nil))
	rec := func(first, last uint64, when time.Duration) IngestFailure {
		t.Helper()
		f, err := s.RecordIngestFailure(ctx, IngestFailure{AgentID: "agent-1", FirstSequence: first, LastSequence: last,
			LastFailedAt: at(when), LastError: "boom"})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if f := rec(2, 3, time.Minute); f.Failures != 1 || !f.FirstFailedAt.Equal(at(time.Minute)) || !f.PreviousFailedAt.IsZero() {
		t.Fatalf("first failure: %+v", f)
	}
	if f := rec(2, 4, 2*time.Minute); f.Failures != 2 || !f.FirstFailedAt.Equal(at(time.Minute)) || !f.PreviousFailedAt.Equal(at(time.Minute)) {
		t.Fatalf("second failure of the batch (grown by a report): %+v", f)
	}
	if f := rec(5, 5, 3*time.Minute); f.Failures != 1 || !f.FirstFailedAt.Equal(at(3*time.Minute)) {
		t.Fatalf("failure of another batch: %+v", f)
	}
	if _, err := s.RecordIngestFailure(ctx, IngestFailure{AgentID: "agent-1", FirstSequence: 3, LastSequence: 2}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("a range backwards: %v", err)
	}
}

// TestQuarantineBatch: a quarantined batch is acknowledged without being
// applied, kept whole, and leaves a coverage gap; the agent's Delta based
// on it asks for a resync, and its next Snapshot is stored and settles the
// gap.
func TestQuarantineBatch(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()
	boot := at(-time.Hour)
	mustIngest(t, s, "agent-1", full(1, at(0), boot, []LogonSession{logon("0x1", at(-time.Minute), "C", "alice")}, nil))
	if _, err := s.RecordIngestFailure(ctx, IngestFailure{AgentID: "agent-1", FirstSequence: 2, LastSequence: 3,
		LastFailedAt: at(time.Minute), LastError: "boom"}); err != nil {
		t.Fatal(err)
	}
	held := []Report{
		{Sequence: 2, Kind: KindDelta, BaseSequence: 1, TakenAt: at(time.Minute), LogonSessions: []LogonSession{logon("0x2", at(30*time.Second), "C", "bob")}},
		{Sequence: 3, Kind: KindHeartbeat, BaseSequence: 2, TakenAt: at(2 * time.Minute)},
	}
	raw := []byte("the batch as received")
	q := QuarantinedBatch{AgentID: "agent-1", MachineGUID: guid, Reports: held, Raw: raw, Failures: 5,
		FirstFailedAt: at(time.Minute), LastError: "ERROR: boom (SQLSTATE P0001)"}
	res, err := s.QuarantineBatch(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if res.ID == 0 || res.FirstSequence != 2 || res.LastSequence != 3 || res.Acknowledged != 3 {
		t.Fatalf("quarantine: %+v", res)
	}
	if g := res.Gap; g == nil || g.Reason != GapQuarantined || !g.StartTime.Equal(at(0)) || !g.EndTime.Equal(at(2*time.Minute)) ||
		g.FirstSequence != 2 || g.LastSequence != 3 {
		t.Fatalf("gap: %+v", res.Gap)
	}
	var applied, state int64
	var stored []byte
	var failures, left int
	if err := s.pool.QueryRow(ctx, `SELECT a.applied_sequence, a.state_sequence, q.batch, q.failures,
			(SELECT count(*) FROM ingest_failure)
		FROM agent a JOIN quarantined_batch q USING (agent_id) WHERE a.agent_id = 'agent-1'`).
		Scan(&applied, &state, &stored, &failures, &left); err != nil {
		t.Fatal(err)
	}
	if applied != 3 || state != 1 || !bytes.Equal(stored, raw) || failures != 5 || left != 0 {
		t.Fatalf("after the quarantine: applied %d, state %d, batch %q, failures %d, failure records %d", applied, state, stored, failures, left)
	}
	assertRows(t, "logon intervals after the quarantine", logonRows(t, s), []row{
		{Key: bootKey(boot, "0x1"), Start: at(-time.Minute), Account: `C\alice`},
	})

	// Quarantining again changes nothing: the store has the reports.
	if again, err := s.QuarantineBatch(ctx, q); err != nil || again.ID != 0 || again.Acknowledged != 3 {
		t.Fatalf("second quarantine: %+v, %v", again, err)
	}
	// The agent's next Delta, based on a quarantined report, asks for a
	// resync; the Snapshot it then sends is stored and settles the gap.
	_, err = s.Ingest(ctx, "agent-1", guid, []Report{{Sequence: 4, Kind: KindDelta, BaseSequence: 2, TakenAt: at(3 * time.Minute)}})
	if !errors.Is(err, ErrResyncRequired) {
		t.Fatalf("Delta based on a quarantined report: %v", err)
	}
	mustIngest(t, s, "agent-1", full(5, at(4*time.Minute), boot, []LogonSession{
		logon("0x1", at(-time.Minute), "C", "alice"), logon("0x3", at(3*time.Minute), "C", "carol")}, nil))
	assertRows(t, "logon intervals after the next snapshot", logonRows(t, s), []row{
		{Key: bootKey(boot, "0x1"), Start: at(-time.Minute), Account: `C\alice`},
		{Key: bootKey(boot, "0x3"), Start: at(3 * time.Minute), Account: `C\carol`},
	})
	gaps, err := s.CoverageGaps(ctx, CoverageGapsQuery{Host: guid})
	if err != nil {
		t.Fatal(err)
	}
	if len(gaps.Items) != 1 || gaps.Items[0].Reason != GapQuarantined || !gaps.Items[0].SettledAt.Equal(at(4*time.Minute)) {
		t.Fatalf("coverage gaps: %+v", gaps.Items)
	}
	var note string
	if err := s.pool.QueryRow(ctx, `SELECT note FROM ingest_note WHERE field = 'Batch' AND sequence = 2`).Scan(&note); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(note, "quarantined after 5 failed attempts") || !strings.Contains(note, "boom") {
		t.Fatalf("note: %q", note)
	}
}
