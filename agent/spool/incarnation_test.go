package spool

import (
	"os"
	"path/filepath"
	"testing"
)

// TestIncarnation: a new spool makes an incarnation and keeps it across
// restarts; a spool deleted and made again, or whose incarnation file is
// damaged, has a new one.
func TestIncarnation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	sp := mustOpen(t, dir, Options{})
	first := sp.Incarnation()
	if first == 0 || !sp.IncarnationCreated() {
		t.Fatalf("new spool: incarnation %x, created %v; want one made", first, sp.IncarnationCreated())
	}
	if err := sp.Append(report(1, S)); err != nil {
		t.Fatal(err)
	}
	sp.Close()

	sp = mustOpen(t, dir, Options{})
	if sp.Incarnation() != first || sp.IncarnationCreated() {
		t.Errorf("reopened: incarnation %x (created %v); want %x kept", sp.Incarnation(), sp.IncarnationCreated(), first)
	}
	sp.Close()

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	sp = mustOpen(t, dir, Options{})
	second := sp.Incarnation()
	if second == 0 || second == first || !sp.IncarnationCreated() || sp.NextSequence() != 1 {
		t.Errorf("spool deleted: incarnation %x (created %v), next sequence %d; want a new one, 1", second, sp.IncarnationCreated(), sp.NextSequence())
	}
	sp.Close()

	path := filepath.Join(dir, incarnationName)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[9] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sp = mustOpen(t, dir, Options{})
	defer sp.Close()
	if sp.Incarnation() == second || sp.Incarnation() == 0 || !sp.IncarnationCreated() {
		t.Errorf("damaged incarnation file: incarnation %x (created %v); want a new one", sp.Incarnation(), sp.IncarnationCreated())
	}
}

// TestRebase: when the collector acknowledged a sequence above every one
// the spool numbered (a spool restored from an older copy), Rebase drops
// the unacknowledged reports, counted as dropped, and numbers the next
// report above that sequence, also after a restart.
func TestRebase(t *testing.T) {
	dir := t.TempDir()
	sp := mustOpen(t, dir, Options{SegmentBytes: 1 << 10})
	for seq := uint64(1); seq <= 12; seq++ {
		kind := rune(H)
		if seq == 1 {
			kind = S
		}
		if err := sp.Append(report(seq, kind)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Ack(4, 0); err != nil {
		t.Fatal(err)
	}
	if n, err := sp.Rebase(12); n != 0 || err != nil || sp.NextSequence() != 13 {
		t.Fatalf("Rebase at the newest sequence: %d, %v, next %d; want a no-op", n, err, sp.NextSequence())
	}
	n, err := sp.Rebase(500)
	if err != nil || n != 8 {
		t.Fatalf("Rebase(500) = %d, %v; want the 8 unacknowledged reports dropped", n, err)
	}
	if sp.NextSequence() != 501 {
		t.Errorf("next sequence %d; want 501", sp.NextSequence())
	}
	if rs, err := sp.Peek(100, 0); err != nil || len(rs) != 0 {
		t.Errorf("Peek after Rebase: %d reports, %v; want none", len(rs), err)
	}
	if d, _ := sp.Dropped(); d != 8 {
		t.Errorf("Dropped = %d; want 8, for Batch.dropped_reports", d)
	}
	if err := sp.Append(report(13, S)); err == nil {
		t.Error("Append(13) after Rebase(500) succeeded; want refused")
	}
	sp.Close()

	sp = mustOpen(t, dir, Options{SegmentBytes: 1 << 10})
	defer sp.Close()
	if sp.NextSequence() != 501 {
		t.Errorf("after a restart: next sequence %d; want 501", sp.NextSequence())
	}
	if err := sp.Append(report(501, S)); err != nil {
		t.Fatal(err)
	}
	rs, err := sp.Peek(100, 0)
	if err != nil || len(rs) != 1 || rs[0].GetSequence() != 501 {
		t.Errorf("Peek = %v, %v; want report 501", rs, err)
	}
	if st := sp.Stats(); st.DroppedReports != 8 {
		t.Errorf("Stats.DroppedReports = %d; want 8", st.DroppedReports)
	}
}
