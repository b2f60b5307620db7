package spool

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// Reports lost for want of room, and room given back: the reports dropped
// on overflow and those Append could not write are named by the first
// report after them (Report.lost_before), so that the collector records a
// coverage gap; Ack frees the space of acknowledged reports before it
// writes the state, so that a full disk recovers.

const (
	reasonOverflow    = sessionauditv1.LostReportsReason_LOST_REPORTS_REASON_SPOOL_OVERFLOW
	reasonWriteFailed = sessionauditv1.LostReportsReason_LOST_REPORTS_REASON_SPOOL_WRITE_FAILED
)

func lostBefore(first, last uint64, reason sessionauditv1.LostReportsReason) *sessionauditv1.LostReports {
	return &sessionauditv1.LostReports{FirstSequence: first, LastSequence: last, Reason: reason}
}

// checkOnlyCarrier checks that, of reps, the report numbered carrier
// carries want and no other carries anything.
func checkOnlyCarrier(t *testing.T, reps []*sessionauditv1.Report, carrier uint64, want *sessionauditv1.LostReports) {
	t.Helper()
	found := false
	for _, r := range reps {
		lb := r.GetLostBefore()
		switch {
		case r.GetSequence() == carrier:
			found = true
			if !proto.Equal(lb, want) {
				t.Errorf("report %d carries lost_before %v; want %v", carrier, lb, want)
			}
		case lb != nil:
			t.Errorf("report %d carries lost_before %v; only %d should", r.GetSequence(), lb, carrier)
		}
	}
	if !found {
		t.Errorf("report %d, the carrier, not returned", carrier)
	}
}

// TestOverflowLossCarried: the spool overflows three times over with
// nothing acknowledged past report 10. The reports dropped are one loss,
// 11 up to the last dropped, reason overflow, that the first report kept
// carries; it is remembered across a restart and forgotten once its
// carrier is acknowledged. (Before: only counted in Dropped, carried by
// nothing, and the collector recorded no gap.)
func TestOverflowLossCarried(t *testing.T) {
	dir := t.TempDir()
	opts := Options{MaxBytes: 4096, SegmentBytes: 1024}
	sp := mustOpen(t, dir, opts)
	if err := sp.Append(report(1, S)); err != nil {
		t.Fatal(err)
	}
	appendRange(t, sp, 2, 10)
	if err := sp.Ack(10, 0); err != nil {
		t.Fatal(err)
	}
	appendRange(t, sp, 11, 200)
	kept := peekAll(t, sp)
	if len(kept) == 0 || kept[0] <= 12 || !slices.Equal(kept, span(kept[0], 200)) {
		t.Fatalf("kept %v: want the newest reports, fewer than 189 of 11..200", kept)
	}
	want := Loss{FirstSequence: 11, LastSequence: kept[0] - 1, NextSequence: kept[0], Reason: reasonOverflow}
	check := func(when string) {
		t.Helper()
		st := sp.Stats()
		if len(st.Lost) != 1 || st.LostReports != want.Reports() {
			t.Fatalf("%s: Lost %+v (%d reports); want one loss %+v", when, st.Lost, st.LostReports, want)
		}
		if l := st.Lost[0]; l.FirstSequence != want.FirstSequence || l.LastSequence != want.LastSequence ||
			l.NextSequence != want.NextSequence || l.Reason != reasonOverflow {
			t.Errorf("%s: Lost[0] = %+v, want %+v", when, l, want)
		}
		if d, _ := sp.Dropped(); d != want.Reports() {
			t.Errorf("%s: Dropped %d, want %d: the count sent in Batch.dropped_reports names the same reports", when, d, want.Reports())
		}
		checkOnlyCarrier(t, peekReports(t, sp), want.NextSequence, lostBefore(want.FirstSequence, want.LastSequence, reasonOverflow))
	}
	check("after the overflow")
	if st := sp.Stats(); st.Lost[0].Bytes == 0 || len(st.Lost[0].Segments) < 2 {
		t.Errorf("Lost[0] = %+v: want the bytes and the files dropped", st.Lost[0])
	}

	sp.Close()
	sp = mustOpen(t, dir, opts)
	check("after a restart")

	if err := sp.Ack(want.NextSequence-1, 0); err != nil {
		t.Fatal(err)
	}
	if len(sp.Stats().Lost) != 1 {
		t.Fatalf("loss forgotten before its carrier was acknowledged")
	}
	if err := sp.Ack(want.NextSequence, want.Reports()); err != nil {
		t.Fatal(err)
	}
	if st := sp.Stats(); len(st.Lost) != 0 {
		t.Errorf("after its carrier was acknowledged: Lost %+v", st.Lost)
	}
	sp.Close()
	sp = mustOpen(t, dir, opts)
	if st := sp.Stats(); len(st.Lost) != 0 {
		t.Errorf("after its carrier was acknowledged and a restart: Lost %+v", st.Lost)
	}
}

// TestOverflowFoldsDamage: a damage loss whose carrier is then dropped on
// overflow is folded into the overflow loss: one run, from the first
// report damaged.
func TestOverflowFoldsDamage(t *testing.T) {
	w := writeSpool(t, 80, 1024)
	if len(w.files) < 6 {
		t.Fatalf("%d segments: the scenario needs a few", len(w.files))
	}
	files := w.copyFiles()
	clear(files[1]) // the second segment zeroed: its reports are lost
	dir := w.install(t, files)
	damaged := w.records[1][0].seq
	// Reopened with a bound that drops the first three segments.
	sp := mustOpen(t, dir, Options{MaxBytes: int64(len(files[3]) + len(files[4])), SegmentBytes: 1024})
	kept := peekAll(t, sp)
	if len(kept) == 0 || kept[0] <= damaged {
		t.Fatalf("kept %v: the damaged segment's carrier should be dropped", kept)
	}
	st := sp.Stats()
	if len(st.Lost) != 1 || st.Lost[0].FirstSequence != 1 || st.Lost[0].LastSequence != kept[0]-1 ||
		st.Lost[0].NextSequence != kept[0] || st.Lost[0].Reason != reasonOverflow {
		t.Fatalf("Lost %+v; want one overflow loss 1..%d carried by %d", st.Lost, kept[0]-1, kept[0])
	}
}

// TestAppendFailureCarried: reports 6 and 7 cannot be written (the segment
// file fails, then a new one cannot be made). They are counted, and report
// 8, the next one written, names them (lost_before, write failed), on disk
// too: after a restart Open takes them for what they are (no damage) and
// Peek still carries them. (Before: 8 carried nothing; the collector
// recorded no gap.)
func TestAppendFailureCarried(t *testing.T) {
	dir := t.TempDir()
	sp := mustOpen(t, dir, Options{})
	if err := sp.Append(report(1, S)); err != nil {
		t.Fatal(err)
	}
	appendRange(t, sp, 2, 5)
	sp.active.Close() // the next write fails
	if err := sp.Append(report(6, D)); err == nil {
		t.Fatal("Append 6 to a closed segment succeeded")
	}
	// The next segment would be 7: a directory in its place.
	if err := os.Mkdir(filepath.Join(dir, "00000000000000000007.seg"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sp.Append(report(7, D)); err == nil {
		t.Fatal("Append 7 succeeded")
	}
	if first, last := sp.Unwritten(); first != 6 || last != 7 || sp.Stats().UnwrittenReports != 2 {
		t.Fatalf("Unwritten %d..%d, UnwrittenReports %d; want 6..7, 2", first, last, sp.Stats().UnwrittenReports)
	}
	r8 := report(8, S)
	if err := sp.Append(r8); err != nil {
		t.Fatal(err)
	}
	want := lostBefore(6, 7, reasonWriteFailed)
	if !proto.Equal(r8.GetLostBefore(), want) {
		t.Errorf("report 8 as appended: lost_before %v, want %v", r8.GetLostBefore(), want)
	}
	if first, _ := sp.Unwritten(); first != 0 {
		t.Errorf("Unwritten after a report was written: %d", first)
	}
	appendRange(t, sp, 9, 10)
	reps := peekReports(t, sp)
	if got := seqs(reps); !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 8, 9, 10}) {
		t.Fatalf("Peek = %v", got)
	}
	checkOnlyCarrier(t, reps, 8, want)

	sp.Close()
	sp = mustOpen(t, dir, Options{})
	if st := sp.Stats(); len(st.Lost) != 0 || st.CorruptBytes != 0 {
		t.Errorf("after a restart: Lost %+v, CorruptBytes %d; want none (the reports were never written)", st.Lost, st.CorruptBytes)
	}
	checkOnlyCarrier(t, peekReports(t, sp), 8, want)

	// A report written again under the number that failed carries
	// nothing: it was not lost.
	sp.active.Close()
	if err := sp.Append(report(11, D)); err == nil {
		t.Fatal("Append 11 to a closed segment succeeded")
	}
	r11 := report(11, D)
	if err := sp.Append(r11); err != nil || r11.GetLostBefore() != nil {
		t.Errorf("Append 11 again: %v, lost_before %v; want nil, none", err, r11.GetLostBefore())
	}
}

// TestAckFreesSpaceWhenStateCannotBeWritten: the state file cannot be
// written (what a full disk does). Ack still frees the acknowledged
// segments, the newest included, and keeps the acknowledgement: nothing
// acknowledged is sent again, which on a full disk was forever (the state
// could not be written because no segment was deleted, and no segment was
// deleted because the state could not be written). After a crash before
// the state is written, Open sends again only what is left and numbers on
// from where the spool was.
func TestAckFreesSpaceWhenStateCannotBeWritten(t *testing.T) {
	dir := t.TempDir()
	sp := mustOpen(t, dir, Options{SegmentBytes: 1024})
	if err := sp.Append(report(1, S)); err != nil {
		t.Fatal(err)
	}
	appendRange(t, sp, 2, 40)
	before := len(segmentFiles(t, dir))
	// writeState creates state.tmp: a directory in its place makes it fail.
	blocker := filepath.Join(dir, stateTemp)
	if err := os.Mkdir(blocker, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sp.Ack(20, 0); err == nil {
		t.Fatal("Ack(20) succeeded although the state cannot be written")
	}
	if got := peekAll(t, sp); !slices.Equal(got, span(21, 40)) {
		t.Fatalf("Peek after Ack(20) = %v; want 21..40: the acknowledged ones are not sent again", got)
	}
	if mid := len(segmentFiles(t, dir)); mid >= before {
		t.Fatalf("after Ack(20): %d segments, had %d: nothing freed", mid, before)
	}
	if err := sp.Ack(40, 0); err == nil {
		t.Fatal("Ack(40) succeeded although the state cannot be written")
	}
	if got := peekAll(t, sp); len(got) != 0 {
		t.Fatalf("Peek after Ack(40) = %v; want nothing", got)
	}
	if n, b := len(segmentFiles(t, dir)), diskBytes(t, dir); n != 1 || b != 0 || sp.Stats().Bytes != 0 {
		t.Fatalf("after acknowledging everything: %d segments of %d bytes; want one empty segment", n, b)
	}
	if sp.NextSequence() != 41 {
		t.Fatalf("NextSequence %d, want 41", sp.NextSequence())
	}

	// A crash now: the state file never recorded an acknowledgement.
	sp.Close()
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateName)); !os.IsNotExist(err) {
		t.Fatalf("state file: %v; the test wants none written", err)
	}
	sp = mustOpen(t, dir, Options{SegmentBytes: 1024})
	if got := peekAll(t, sp); len(got) != 0 {
		t.Errorf("after the crash: Peek = %v; want nothing (every report left was acknowledged and deleted)", got)
	}
	if sp.NextSequence() != 41 {
		t.Errorf("after the crash: NextSequence %d; want 41, not a number the collector already has", sp.NextSequence())
	}
	appendRange(t, sp, 41, 42)
	if err := sp.Ack(42, 0); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	if st, ok, err := readState(dir); err != nil || !ok || st.acked != 42 {
		t.Errorf("state after a later Ack: %+v, %v, %v; want acknowledged 42", st, ok, err)
	}
}

// TestAckStateWrittenLater: an acknowledgement the state file could not
// take is written by the next write of the state; meanwhile, after a crash,
// the reports not deleted are sent again.
func TestAckStateWrittenLater(t *testing.T) {
	dir := t.TempDir()
	sp := mustOpen(t, dir, Options{SegmentBytes: 1024})
	appendRange(t, sp, 1, 40)
	if err := sp.Ack(5, 0); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, stateTemp)
	if err := os.Mkdir(blocker, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sp.Ack(30, 0); err == nil {
		t.Fatal("Ack(30) succeeded although the state cannot be written")
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	// A crash here sends again what was not deleted, from 6 on.
	sp2Dir := t.TempDir()
	for _, p := range append(segmentFiles(t, dir), filepath.Join(dir, stateName)) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sp2Dir, filepath.Base(p)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	crashed := mustOpen(t, sp2Dir, Options{SegmentBytes: 1024})
	got := peekAll(t, crashed)
	if len(got) == 0 || got[0] <= 5 || got[0] > 31 || !slices.Equal(got, span(got[0], 40)) {
		t.Errorf("after a crash: Peek = %v; want the reports left on disk after 5, up to 40", got)
	}
	// The next Append writes the state.
	if err := sp.Append(report(41, D)); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	if st, ok, err := readState(dir); err != nil || !ok || st.acked != 30 {
		t.Errorf("state: %+v, %v, %v; want acknowledged 30", st, ok, err)
	}
}

// TestAckRotatesNewestSegment: once every report of the newest segment is
// acknowledged, Ack replaces it by an empty segment named after the next
// sequence: no acknowledged report stays on disk (a disk with less room
// than a segment recovers), and the numbering survives a restart, also
// when the crash came between the new file and the old one's removal.
func TestAckRotatesNewestSegment(t *testing.T) {
	dir := t.TempDir()
	sp := mustOpen(t, dir, Options{})
	appendRange(t, sp, 1, 3)
	old := segmentFiles(t, dir)
	if len(old) != 1 {
		t.Fatalf("%d segments", len(old))
	}
	saved, err := os.ReadFile(old[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Ack(3, 0); err != nil {
		t.Fatal(err)
	}
	files := segmentFiles(t, dir)
	if len(files) != 1 || filepath.Base(files[0]) != "00000000000000000004.seg" || diskBytes(t, dir) != 0 {
		t.Fatalf("after Ack(3): %v, %d bytes; want one empty segment 00000000000000000004.seg", files, diskBytes(t, dir))
	}
	appendRange(t, sp, 4, 5)
	if got := peekAll(t, sp); !slices.Equal(got, []uint64{4, 5}) {
		t.Fatalf("Peek = %v", got)
	}
	if err := sp.Ack(5, 0); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	sp = mustOpen(t, dir, Options{})
	if sp.NextSequence() != 6 || len(peekAll(t, sp)) != 0 {
		t.Fatalf("after a restart: NextSequence %d, Peek %v", sp.NextSequence(), peekAll(t, sp))
	}
	sp.Close()

	// A crash between the two steps of a rotation, before any state was
	// written: the old segment and the new empty one.
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, filepath.Base(old[0])), saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000004.seg"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sp = mustOpen(t, dir, Options{})
	if got := peekAll(t, sp); !slices.Equal(got, []uint64{1, 2, 3}) || sp.NextSequence() != 4 {
		t.Fatalf("after a crash mid-rotation: Peek %v, NextSequence %d; want 1..3 again, 4", got, sp.NextSequence())
	}
	if st := sp.Stats(); st.CorruptBytes != 0 || len(st.Lost) != 0 {
		t.Errorf("after a crash mid-rotation: %+v", st)
	}
	appendRange(t, sp, 4, 4)
	if got := peekAll(t, sp); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("Peek = %v", got)
	}
}

// TestLostFileVersion1: the file of losses written by an agent before
// overflow losses were remembered (version 01, no reason) is read as
// damage.
func TestLostFileVersion1(t *testing.T) {
	b := append([]byte{}, lostMagicV1[:]...)
	b = binary.LittleEndian.AppendUint32(b, 1)
	for _, v := range []uint64{3, 5, 6} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	ls, ok := unmarshalLosses(b)
	want := Loss{FirstSequence: 3, LastSequence: 5, NextSequence: 6, Reason: sessionauditv1.LostReportsReason_LOST_REPORTS_REASON_SPOOL_DAMAGE}
	if !ok || len(ls) != 1 || ls[0].FirstSequence != 3 || ls[0].LastSequence != 5 || ls[0].NextSequence != 6 || ls[0].Reason != want.Reason {
		t.Fatalf("version 01: %+v, %v; want %+v", ls, ok, want)
	}
	ls, ok = unmarshalLosses(marshalLosses([]Loss{{FirstSequence: 7, LastSequence: 9, NextSequence: 10, Reason: reasonOverflow}}))
	if !ok || len(ls) != 1 || ls[0].Reason != reasonOverflow {
		t.Fatalf("version 02 round trip: %+v, %v", ls, ok)
	}
}
