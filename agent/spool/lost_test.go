package spool

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// The damage report: what Open says was lost (Stats.Lost, CorruptBytes,
// TornBytes, NeedsResync), and what the reports after a loss carry to the
// collector (Report.lost_before).

// checkLost checks sp's damage report against want, ignoring Bytes and
// Segments when want leaves them zero.
func checkLost(t *testing.T, sp *Spool, want []Loss) {
	t.Helper()
	st := sp.Stats()
	var total uint64
	for _, l := range want {
		total += l.Reports()
	}
	if st.LostReports != total {
		t.Errorf("LostReports = %d, want %d", st.LostReports, total)
	}
	if len(st.Lost) != len(want) {
		t.Fatalf("Lost = %+v,\nwant %+v", st.Lost, want)
	}
	for i, l := range st.Lost {
		w := want[i]
		if w.Bytes == 0 {
			w.Bytes = l.Bytes
		}
		if w.Segments == nil {
			w.Segments = l.Segments
		}
		if l.FirstSequence != w.FirstSequence || l.LastSequence != w.LastSequence || l.NextSequence != w.NextSequence ||
			l.Bytes != w.Bytes || !slices.Equal(l.Segments, w.Segments) {
			t.Errorf("Lost[%d] = %+v, want %+v", i, l, w)
		}
	}
}

// checkCarried checks that, of the reports Peek returns, exactly those
// after a loss carry it, as the protocol spells it.
func checkCarried(t *testing.T, got []*sessionauditv1.Report, want []Loss) {
	t.Helper()
	carriers := make(map[uint64]Loss)
	for _, l := range want {
		carriers[l.NextSequence] = l
	}
	for _, r := range got {
		l, ok := carriers[r.GetSequence()]
		lb := r.GetLostBefore()
		switch {
		case !ok && lb != nil:
			t.Errorf("report %d carries lost_before %v; no loss precedes it", r.GetSequence(), lb)
		case ok && !proto.Equal(lb, &sessionauditv1.LostReports{FirstSequence: l.FirstSequence, LastSequence: l.LastSequence,
			Reason: sessionauditv1.LostReportsReason_LOST_REPORTS_REASON_SPOOL_DAMAGE}):
			t.Errorf("report %d carries lost_before %v; want %d..%d, spool damage", r.GetSequence(), lb, l.FirstSequence, l.LastSequence)
		}
		delete(carriers, r.GetSequence())
	}
	for seq := range carriers {
		t.Errorf("report %d, which carries a loss, not returned", seq)
	}
}

// TestLostZeroedMiddleSegment: a segment in the middle of the spool is all
// zeros (the issue: it was reported as torn_bytes=65529 needs_resync=false,
// although hundreds of reports were lost). The damage report names exactly
// the reports lost and the file; the report after them carries the loss;
// the loss survives a restart until the collector acknowledged its carrier.
func TestLostZeroedMiddleSegment(t *testing.T) {
	w := writeSpool(t, 2000, 64<<10)
	if len(w.files) < 3 {
		t.Fatalf("%d segments: the scenario needs a middle one", len(w.files))
	}
	k := len(w.files) / 2
	files := w.copyFiles()
	clear(files[k])
	dir := w.install(t, files)
	sp := mustOpen(t, dir, Options{})

	recs := w.records[k]
	lost := Loss{FirstSequence: recs[0].seq, LastSequence: recs[len(recs)-1].seq, NextSequence: w.records[k+1][0].seq,
		Bytes: int64(len(files[k])), Segments: []string{w.names[k]}}
	if lost.Reports() < 100 || lost.NextSequence != lost.LastSequence+1 {
		t.Fatalf("scenario: %+v", lost)
	}
	st := sp.Stats()
	if st.TornBytes != 0 || st.CorruptBytes != int64(len(files[k])) || !sp.NeedsResync() {
		t.Errorf("TornBytes %d, CorruptBytes %d (want %d), NeedsResync %v (want true)",
			st.TornBytes, st.CorruptBytes, len(files[k]), sp.NeedsResync())
	}
	checkLost(t, sp, []Loss{lost})
	got, err := sp.Peek(1<<30, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkReports(t, got)
	want := slices.Concat(span(1, lost.FirstSequence-1), span(lost.NextSequence, 2000))
	if !slices.Equal(seqs(got), want) {
		t.Fatalf("Peek returns %d reports, want the %d intact ones", len(got), len(want))
	}
	checkCarried(t, got, []Loss{lost})

	// A restart: the zeroed file is gone, the loss is remembered.
	sp.Close()
	if _, err := os.Stat(filepath.Join(dir, w.names[k])); !os.IsNotExist(err) {
		t.Fatalf("zeroed segment still there: %v", err)
	}
	sp = mustOpen(t, dir, Options{})
	remembered := Loss{FirstSequence: lost.FirstSequence, LastSequence: lost.LastSequence, NextSequence: lost.NextSequence}
	checkLost(t, sp, []Loss{remembered})
	if st := sp.Stats(); st.CorruptBytes != 0 || st.TornBytes != 0 {
		t.Errorf("after the restart: %+v", st)
	}
	checkCarried(t, peekReports(t, sp), []Loss{lost})

	// Acknowledged up to the report before the loss: still to be carried.
	if err := sp.Ack(lost.FirstSequence-1, 0); err != nil {
		t.Fatal(err)
	}
	checkLost(t, sp, []Loss{remembered})
	// Acknowledged with its carrier: forgotten, now and after a restart.
	if err := sp.Ack(lost.NextSequence, 0); err != nil {
		t.Fatal(err)
	}
	checkLost(t, sp, nil)
	checkCarried(t, peekReports(t, sp), nil)
	sp.Close()
	sp = mustOpen(t, dir, Options{})
	checkLost(t, sp, nil)
	if _, err := os.Stat(filepath.Join(dir, lostName)); !os.IsNotExist(err) {
		t.Errorf("file %s still there: %v", lostName, err)
	}
}

// TestLostFlippedBytes: 30 bytes flipped in 30 records of 2,000, anywhere
// but the last record of the newest segment (that would be a torn write).
// The 1,970 others come out; the damage report lists exactly the lost
// sequences as ranges (neighbouring records merge), with their bytes and
// files, and the report after each range carries it.
func TestLostFlippedBytes(t *testing.T) {
	w := writeSpool(t, 2000, 64<<10)
	type at struct{ file, rec int }
	where := make(map[uint64]at)
	var all []uint64
	for f, recs := range w.records {
		for i, r := range recs {
			where[r.seq] = at{f, i}
			all = append(all, r.seq)
		}
	}
	for trial := range 5 {
		rng := rand.New(rand.NewPCG(uint64(trial), 7))
		files := w.copyFiles()
		var damaged []uint64
		for len(damaged) < 30 {
			seq := 1 + rng.Uint64N(1999) // not 2000, the newest record
			if trial == 0 && len(damaged) < 3 {
				seq = []uint64{1, 700, 701}[len(damaged)] // the first record; two neighbours
			}
			if slices.Contains(damaged, seq) {
				continue
			}
			damaged = append(damaged, seq)
			a := where[seq]
			r := w.records[a.file][a.rec]
			files[a.file][r.off+rng.Int64N(r.size)] ^= byte(1 + rng.IntN(255))
		}
		slices.Sort(damaged)
		// The expected report: runs of consecutive damaged sequences.
		var want []Loss
		var corrupt int64
		for _, seq := range damaged {
			a := where[seq]
			size := w.records[a.file][a.rec].size
			corrupt += size
			name := w.names[a.file]
			if n := len(want); n > 0 && want[n-1].LastSequence == seq-1 {
				l := &want[n-1]
				l.LastSequence, l.NextSequence, l.Bytes = seq, seq+1, l.Bytes+size
				if !slices.Contains(l.Segments, name) {
					l.Segments = append(l.Segments, name)
				}
				continue
			}
			want = append(want, Loss{FirstSequence: seq, LastSequence: seq, NextSequence: seq + 1, Bytes: size, Segments: []string{name}})
		}

		dir := w.install(t, files)
		sp := mustOpen(t, dir, Options{})
		st := sp.Stats()
		if st.TornBytes != 0 || st.CorruptBytes != corrupt || !sp.NeedsResync() {
			t.Errorf("trial %d: TornBytes %d, CorruptBytes %d (want %d), NeedsResync %v (want true)",
				trial, st.TornBytes, st.CorruptBytes, corrupt, sp.NeedsResync())
		}
		checkLost(t, sp, want)
		got := peekReports(t, sp)
		checkReports(t, got)
		intact := slices.DeleteFunc(slices.Clone(all), func(s uint64) bool { return slices.Contains(damaged, s) })
		if len(got) != 1970 || !slices.Equal(seqs(got), intact) {
			t.Fatalf("trial %d: Peek returns %d reports, want the 1970 intact ones", trial, len(got))
		}
		checkCarried(t, got, want)
		sp.Close()
	}
}

// encodeRecords returns a segment's bytes holding reports of the given
// kinds (S, D, H) numbered from first, and the records' extents.
func encodeRecords(t *testing.T, first uint64, kinds string) ([]byte, []record) {
	t.Helper()
	var b []byte
	var recs []record
	for i, k := range kinds {
		seq := first + uint64(i)
		p, err := proto.Marshal(report(seq, k))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, record{seq: seq, off: int64(len(b)), size: int64(headerSize + len(p))})
		b = appendRecord(b, seq, p)
	}
	return b, recs
}

func segmentPath(dir string, key uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", key, segmentExt))
}

// TestLostCases: what counts as lost and what does not.
func TestLostCases(t *testing.T) {
	type file struct {
		key   uint64
		kinds string
		// damage flips a byte in these records (index in the file); cut
		// keeps only the first cut bytes (-1: all).
		damage []int
		cut    int
	}
	tests := []struct {
		name  string
		acked uint64
		files []file
		want  []Loss // Bytes and Segments not checked when zero
		torn  bool
		peek  []uint64
	}{
		{
			name:  "damage only in acknowledged reports loses nothing",
			acked: 5,
			files: []file{{key: 1, kinds: "SDDDDDDD", damage: []int{2, 4}, cut: -1}},
			peek:  span(6, 8),
		},
		{
			name:  "damage across the acknowledgement loses the unacknowledged part",
			acked: 3,
			files: []file{{key: 1, kinds: "SDDDDDDD", damage: []int{2, 3, 4}, cut: -1}},
			want:  []Loss{{FirstSequence: 4, LastSequence: 5, NextSequence: 6}},
			peek:  span(6, 8),
		},
		{
			name: "a missing segment file",
			files: []file{
				{key: 1, kinds: "SDD", cut: -1},
				{key: 7, kinds: "DDD", cut: -1},
			},
			want: []Loss{{FirstSequence: 4, LastSequence: 6, NextSequence: 7}},
			peek: []uint64{1, 2, 3, 7, 8, 9},
		},
		{
			name: "a report never appended before a Snapshot is not a loss of the spool",
			files: []file{
				{key: 1, kinds: "SDD", cut: -1},
				{key: 5, kinds: "SD", cut: -1},
			},
			peek: []uint64{1, 2, 3, 5, 6},
		},
		{
			name: "the damaged head of the first segment",
			files: []file{
				{key: 1, kinds: "SDD", damage: []int{0, 1}, cut: -1},
				{key: 4, kinds: "DD", cut: -1},
			},
			want: []Loss{{FirstSequence: 1, LastSequence: 2, NextSequence: 3}},
			peek: []uint64{3, 4, 5},
		},
		{
			name: "a cut segment that is not the newest is damage, not a torn write",
			files: []file{
				{key: 1, kinds: "SDDD", cut: 200},
				{key: 5, kinds: "DD", cut: -1},
			},
			want: []Loss{{FirstSequence: 2, LastSequence: 4, NextSequence: 5}},
			peek: []uint64{1, 5, 6},
		},
		{
			name: "a torn end of the newest segment is not a loss",
			files: []file{
				{key: 1, kinds: "SDD", cut: -1},
				{key: 4, kinds: "DD", cut: 150},
			},
			torn: true,
			peek: []uint64{1, 2, 3, 4},
		},
		{
			name: "coalesced heartbeats keep the loss before them",
			files: []file{
				{key: 1, kinds: "SDDHHD", damage: []int{2}, cut: -1},
			},
			want: []Loss{{FirstSequence: 3, LastSequence: 3, NextSequence: 4}},
			peek: []uint64{1, 2, 5, 6},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range tt.files {
				b, recs := encodeRecords(t, f.key, f.kinds)
				for _, i := range f.damage {
					b[recs[i].off+recs[i].size-1] ^= 0x5a
				}
				if f.cut >= 0 {
					b = b[:f.cut]
				}
				if err := os.WriteFile(segmentPath(dir, f.key), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tt.acked > 0 {
				if err := writeState(dir, state{acked: tt.acked}); err != nil {
					t.Fatal(err)
				}
			}
			sp := mustOpen(t, dir, Options{})
			checkLost(t, sp, tt.want)
			if torn := sp.Stats().TornBytes > 0; torn != tt.torn {
				t.Errorf("torn write: %v, want %v (%+v)", torn, tt.torn, sp.Stats())
			}
			got := peekReports(t, sp)
			if !slices.Equal(seqs(got), tt.peek) {
				t.Errorf("Peek = %v, want %v", seqs(got), tt.peek)
			}
			want := slices.Clone(tt.want)
			for i, l := range want {
				// A coalesced Heartbeat's successor carries the loss.
				if !slices.Contains(tt.peek, l.NextSequence) {
					for _, s := range tt.peek {
						if s > l.NextSequence {
							want[i].NextSequence = s
							break
						}
					}
				}
			}
			checkCarried(t, got, want)
		})
	}
}

// TestLostFileDamaged: a damaged file of losses is ignored (and rewritten);
// damage still on disk is found again.
func TestLostFileDamaged(t *testing.T) {
	dir := t.TempDir()
	b, recs := encodeRecords(t, 1, "SDDDD")
	b[recs[2].off+5] ^= 1
	if err := os.WriteFile(segmentPath(dir, 1), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, lostName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	sp := mustOpen(t, dir, Options{})
	checkLost(t, sp, []Loss{{FirstSequence: 3, LastSequence: 3, NextSequence: 4}})
	sp.Close()
	if got, ok, err := readLosses(dir); err != nil || !ok || len(got) != 1 {
		t.Fatalf("file of losses after Open: %+v %v %v", got, ok, err)
	}
}

func peekReports(t *testing.T, sp *Spool) []*sessionauditv1.Report {
	t.Helper()
	got, err := sp.Peek(1<<30, 0)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
