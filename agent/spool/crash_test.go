package spool

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// written is a spool written whole and closed: its segment files' bytes
// and where every record lies.
type written struct {
	names   []string   // segment file names, in order
	files   [][]byte   // their bytes
	records [][]record // per file, in order
}

// writeSpool appends reports 1..n (a Snapshot, then Deltas, with a few
// Heartbeats between) with the given segment size and reads the result.
func writeSpool(t *testing.T, n uint64, segmentBytes int64) *written {
	t.Helper()
	dir := t.TempDir()
	sp := mustOpen(t, dir, Options{SegmentBytes: segmentBytes})
	for seq := uint64(1); seq <= n; seq++ {
		kind := D
		if seq == 1 {
			kind = S
		}
		if err := sp.Append(report(seq, rune(kind))); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	w := &written{}
	for _, p := range segmentFiles(t, dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var recs []record
		res := scan(b, 0, func(r record) bool { recs = append(recs, r); return true })
		if res.corrupt != 0 || res.tail != 0 {
			t.Fatalf("%s as written: %+v", p, res)
		}
		w.names = append(w.names, filepath.Base(p))
		w.files = append(w.files, b)
		w.records = append(w.records, recs)
	}
	return w
}

// install writes files (under w's names) into a new directory.
func (w *written) install(t *testing.T, files [][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for i, b := range files {
		if err := os.WriteFile(filepath.Join(dir, w.names[i]), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (w *written) copyFiles() [][]byte {
	out := make([][]byte, len(w.files))
	for i, b := range w.files {
		out[i] = slices.Clone(b)
	}
	return out
}

// checkReports checks that got is strictly increasing and that each report
// is the one appended with its sequence: nothing is invented. (The loss a
// report carries, lost_before, is the spool's, not the report's: lost_test.go
// checks it.)
func checkReports(t *testing.T, got []*sessionauditv1.Report) {
	t.Helper()
	var last uint64
	for _, r := range got {
		if r.GetLostBefore() != nil {
			r = proto.CloneOf(r)
			r.LostBefore = nil
		}
		seq := r.GetSequence()
		if seq <= last {
			t.Fatalf("sequence %d after %d", seq, last)
		}
		last = seq
		kind := D
		if r.GetSnapshot() != nil {
			kind = S
		}
		if want := report(seq, rune(kind)); !proto.Equal(r, want) {
			t.Fatalf("report %d = %v, want %v", seq, r, want)
		}
	}
}

// checkAppendAfter checks that the spool in dir takes new reports after
// the damage and gives them back after a restart.
func checkAppendAfter(t *testing.T, dir string, sp *Spool, before []uint64) {
	t.Helper()
	next := sp.NextSequence()
	if len(before) > 0 && next != before[len(before)-1]+1 {
		t.Fatalf("NextSequence = %d after %v", next, before)
	}
	appendRange(t, sp, next, next+2)
	sp.Close()
	sp = mustOpen(t, dir, Options{})
	got, err := sp.Peek(1<<30, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkReports(t, got)
	if want := append(slices.Clone(before), span(next, next+2)...); !slices.Equal(seqs(got), want) {
		t.Fatalf("after appending past the damage and reopening: %v, want %v", seqs(got), want)
	}
}

// TestTornTail cuts the last segment at every offset within its last
// record: the records before survive, nothing after the cut is invented,
// and appends go on.
func TestTornTail(t *testing.T) {
	for _, segBytes := range []int64{1 << 20, 900} {
		w := writeSpool(t, 12, segBytes)
		lastFile := len(w.files) - 1
		recs := w.records[lastFile]
		lastRec := recs[len(recs)-1]
		var want []uint64
		for i := range w.files {
			for _, r := range w.records[i] {
				want = append(want, r.seq)
			}
		}
		want = want[:len(want)-1]
		for cut := lastRec.off; cut < lastRec.off+lastRec.size; cut++ {
			files := w.copyFiles()
			files[lastFile] = files[lastFile][:cut]
			dir := w.install(t, files)
			sp := mustOpen(t, dir, Options{})
			got, err := sp.Peek(1<<30, 0)
			if err != nil {
				t.Fatalf("cut at %d: %v", cut, err)
			}
			checkReports(t, got)
			if !slices.Equal(seqs(got), want) {
				t.Fatalf("segments %d, cut at %d: Peek = %v, want %v", segBytes, cut, seqs(got), want)
			}
			st := sp.Stats()
			if st.TornBytes != cut-lastRec.off || st.CorruptBytes != 0 || sp.NeedsResync() {
				t.Fatalf("cut at %d: Stats %+v, NeedsResync %v", cut, st, sp.NeedsResync())
			}
			if len(recs) > 1 {
				fi, err := os.Stat(filepath.Join(dir, w.names[lastFile]))
				if err != nil || fi.Size() != lastRec.off {
					t.Fatalf("cut at %d: segment not cut back to %d: %v %v", cut, lastRec.off, fi.Size(), err)
				}
			}
			checkAppendAfter(t, dir, sp, want)
		}
	}
}

// TestTruncatedAtRandom cuts the last segment anywhere.
func TestTruncatedAtRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, segBytes := range []int64{1 << 20, 900} {
		w := writeSpool(t, 20, segBytes)
		lastFile := len(w.files) - 1
		for range 60 {
			cut := rng.Int64N(int64(len(w.files[lastFile])))
			var want []uint64
			for i := range w.files {
				for _, r := range w.records[i] {
					if i < lastFile || r.off+r.size <= cut {
						want = append(want, r.seq)
					}
				}
			}
			files := w.copyFiles()
			files[lastFile] = files[lastFile][:cut]
			dir := w.install(t, files)
			sp := mustOpen(t, dir, Options{})
			got, err := sp.Peek(1<<30, 0)
			if err != nil {
				t.Fatal(err)
			}
			checkReports(t, got)
			if !slices.Equal(seqs(got), want) {
				t.Fatalf("segments %d, cut at %d: Peek = %v, want %v", segBytes, cut, seqs(got), want)
			}
			checkAppendAfter(t, dir, sp, want)
		}
	}
}

// TestCorruptRecord damages one record in the middle of a segment: it is
// skipped and counted, and every other record survives.
func TestCorruptRecord(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	w := writeSpool(t, 20, 1<<20)
	recs := w.records[0]
	for trial := range 200 {
		k := rng.IntN(len(recs) - 1) // not the last: that would be a torn tail
		victim := recs[k]
		files := w.copyFiles()
		for range 1 + rng.IntN(4) {
			i := victim.off + rng.Int64N(victim.size)
			files[0][i] ^= byte(1 + rng.IntN(255))
		}
		dir := w.install(t, files)
		sp := mustOpen(t, dir, Options{})
		got, err := sp.Peek(1<<30, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkReports(t, got)
		want := slices.Delete(span(1, 20), k, k+1)
		if !slices.Equal(seqs(got), want) {
			t.Fatalf("trial %d, record %d damaged: Peek = %v, want %v", trial, victim.seq, seqs(got), want)
		}
		if st := sp.Stats(); st.CorruptBytes != victim.size || st.TornBytes != 0 {
			t.Fatalf("trial %d: Stats %+v, want %d corrupt bytes", trial, st, victim.size)
		}
		if !sp.NeedsResync() {
			t.Fatalf("trial %d: NeedsResync false after losing a report", trial)
		}
		checkAppendAfter(t, dir, sp, want)
	}
}

// TestDamagedAtRandom flips bytes and overwrites ranges anywhere in any
// segment: every record the damage did not touch survives, and nothing is
// invented.
func TestDamagedAtRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	w := writeSpool(t, 40, 1000)
	for trial := range 150 {
		files := w.copyFiles()
		touched := make([][]bool, len(files))
		for i := range files {
			touched[i] = make([]bool, len(files[i]))
		}
		for range 1 + rng.IntN(6) {
			f := rng.IntN(len(files))
			at := rng.IntN(len(files[f]))
			n := 1
			if rng.IntN(3) == 0 {
				n = 1 + rng.IntN(64)
			}
			for i := at; i < min(at+n, len(files[f])); i++ {
				files[f][i] ^= byte(1 + rng.IntN(255))
				touched[f][i] = true
			}
		}
		var want []uint64
		for f, recs := range w.records {
			for _, r := range recs {
				if !slices.Contains(touched[f][r.off:r.off+r.size], true) {
					want = append(want, r.seq)
				}
			}
		}
		dir := w.install(t, files)
		sp := mustOpen(t, dir, Options{})
		got, err := sp.Peek(1<<30, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkReports(t, got)
		if !slices.Equal(seqs(got), want) {
			t.Fatalf("trial %d: Peek = %v, want %v", trial, seqs(got), want)
		}
		// Appends continue after the newest surviving sequence (or
		// after a lost one, if the newest was lost: never below).
		if next := sp.NextSequence(); len(want) > 0 && next <= want[len(want)-1] {
			t.Fatalf("trial %d: NextSequence %d not above %d", trial, next, want[len(want)-1])
		}
		next := sp.NextSequence()
		appendRange(t, sp, next, next)
		sp.Close()
		sp = mustOpen(t, dir, Options{})
		again := peekAll(t, sp)
		if w := append(slices.Clone(want), next); !slices.Equal(again, w) {
			t.Fatalf("trial %d: after append and reopen: %v, want %v", trial, again, w)
		}
	}
}

// TestStaleSequences: duplicate and lower sequences on disk are skipped.
func TestStaleSequences(t *testing.T) {
	enc := func(seqs ...uint64) []byte {
		var b []byte
		for _, s := range seqs {
			p, err := proto.Marshal(report(s, D))
			if err != nil {
				t.Fatal(err)
			}
			b = appendRecord(b, s, p)
		}
		return b
	}
	tests := []struct {
		name      string
		files     map[string][]byte
		want      []uint64
		wantStale uint64
	}{
		{"within a segment", map[string][]byte{"00000000000000000001.seg": enc(1, 2, 3, 2, 4, 4, 5)}, span(1, 5), 2},
		{"overlapping segments", map[string][]byte{
			"00000000000000000001.seg": enc(1, 2, 3, 4, 5),
			"00000000000000000003.seg": enc(3, 4, 5, 6, 7, 8),
		}, span(1, 8), 3},
		{"a segment of stale records only", map[string][]byte{
			"00000000000000000001.seg": enc(1, 2, 3, 4, 5),
			"00000000000000000002.seg": enc(2, 3),
			"00000000000000000006.seg": enc(6),
		}, span(1, 6), 2},
		{"garbage segment", map[string][]byte{
			"00000000000000000001.seg": enc(1, 2),
			"00000000000000000003.seg": []byte("not a segment at all"),
		}, span(1, 2), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, b := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			sp := mustOpen(t, dir, Options{})
			got := peekAll(t, sp)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Peek = %v, want %v", got, tt.want)
			}
			if st := sp.Stats(); st.StaleRecords != tt.wantStale {
				t.Fatalf("StaleRecords = %d, want %d", st.StaleRecords, tt.wantStale)
			}
			checkAppendAfter(t, dir, sp, tt.want)
		})
	}
}

// FuzzOpenCorrupt opens a spool whose only segment holds arbitrary bytes:
// Open, Peek and Append never panic, reports come out in strictly
// increasing order, and the spool takes new reports.
func FuzzOpenCorrupt(f *testing.F) {
	var valid []byte
	for seq := uint64(1); seq <= 4; seq++ {
		p, _ := proto.Marshal(report(seq, D))
		valid = appendRecord(valid, seq, p)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)-3])
	f.Add(append(slices.Clone(valid[:30]), valid...))
	f.Add(appendRecord(nil, 7, []byte{0xff, 0xff})) // checks out, does not decode
	f.Add([]byte{})
	f.Add(recordMagic[:])
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "00000000000000000001.seg"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		sp, err := Open(dir, Options{MaxBytes: 1 << 20, SegmentBytes: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		got, err := sp.Peek(1<<30, 0)
		if err != nil {
			t.Fatal(err)
		}
		var last uint64
		for _, r := range got {
			if r.GetSequence() <= last {
				t.Fatalf("sequence %d after %d", r.GetSequence(), last)
			}
			last = r.GetSequence()
		}
		next := sp.NextSequence()
		if next == 0 { // the fuzzer found sequence 2^64-1
			return
		}
		if err := sp.Append(report(next, D)); err != nil {
			t.Fatal(err)
		}
		got, err = sp.Peek(1<<30, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 || got[len(got)-1].GetSequence() != next {
			t.Fatalf("appended %d, Peek = %v", next, seqs(got))
		}
	})
}

// TestScanLinear: a damaged region full of magics (each claiming a long
// payload) is scanned in linear time, thanks to the header checksum.
func TestScanLinear(t *testing.T) {
	unit := append(recordMagic[:], 0xff, 0xff, 0xff, 0x03) // ~64 MiB claimed
	var buf []byte
	for len(buf) < 8<<20 {
		buf = append(buf, unit...)
	}
	p, _ := proto.Marshal(report(9, D))
	buf = appendRecord(buf, 9, p)
	start := time.Now()
	var got []uint64
	res := scan(buf, 0, func(r record) bool { got = append(got, r.seq); return true })
	if !slices.Equal(got, []uint64{9}) || res.corrupt != 8<<20 {
		t.Fatalf("scan: records %v, %+v", got, res)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("scanning 8 MiB of false magics took %v", d)
	}
}
