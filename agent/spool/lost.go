package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"google.golang.org/protobuf/proto"

	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// Loss is a run of consecutive reports that the spool held and lost to
// damage on disk before the collector acknowledged them: bytes that are no
// longer a valid record (a bad sector, flipped bytes, a zeroed or cut
// segment file other than the newest), or a segment file missing between
// two others.
//
// The reports after a loss are intact and are delivered as usual; the first
// of them carries the loss to the collector (Report.lost_before), which
// applies them although their base is missing and records the hole as a
// coverage gap of the host (docs/agent.md, "Spool damage").
type Loss struct {
	// FirstSequence..LastSequence are the sequences lost, both included.
	FirstSequence, LastSequence uint64
	// NextSequence is the first intact report after them: the one that
	// carries the loss to the collector.
	NextSequence uint64
	// Bytes counts the damaged bytes between the intact reports around the
	// loss (0 when a segment file was missing); Segments names the files
	// they were in. Both are known only for losses found by this Open.
	Bytes    int64
	Segments []string
}

// Reports is the number of reports lost.
func (l Loss) Reports() uint64 { return l.LastSequence - l.FirstSequence + 1 }

// lostName is the file that remembers the losses not yet delivered, so that
// a restart before delivery does not forget one whose damaged segment Open
// already removed; lostTemp is the file it is written through.
const (
	lostName = "lost"
	lostTemp = "lost.tmp"
)

var lostMagic = [8]byte{'S', 'A', 'S', 'P', 'L', 'S', '0', '1'}

// The file "lost" (little-endian): magic "SASPLS01", a uint32 count n, n
// entries of three uint64 (first, last and next sequence), and the CRC-32C
// of everything before it.
func marshalLosses(ls []Loss) []byte {
	b := make([]byte, 0, 16+24*len(ls))
	b = append(b, lostMagic[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ls)))
	for _, l := range ls {
		b = binary.LittleEndian.AppendUint64(b, l.FirstSequence)
		b = binary.LittleEndian.AppendUint64(b, l.LastSequence)
		b = binary.LittleEndian.AppendUint64(b, l.NextSequence)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func unmarshalLosses(b []byte) ([]Loss, bool) {
	if len(b) < 16 || !bytes.Equal(b[:8], lostMagic[:]) ||
		binary.LittleEndian.Uint32(b[len(b)-4:]) != crc32.Checksum(b[:len(b)-4], castagnoli) {
		return nil, false
	}
	n := int(binary.LittleEndian.Uint32(b[8:12]))
	if len(b) != 16+24*n {
		return nil, false
	}
	ls := make([]Loss, 0, n)
	for p := 12; p < len(b)-4; p += 24 {
		l := Loss{
			FirstSequence: binary.LittleEndian.Uint64(b[p:]),
			LastSequence:  binary.LittleEndian.Uint64(b[p+8:]),
			NextSequence:  binary.LittleEndian.Uint64(b[p+16:]),
		}
		if l.FirstSequence == 0 || l.LastSequence < l.FirstSequence || l.NextSequence <= l.LastSequence {
			return nil, false
		}
		ls = append(ls, l)
	}
	return ls, true
}

// readLosses reads the losses remembered in dir. A missing file is none; a
// damaged one is none too, with ok false (the damage that caused them is
// found again if it is still on disk).
func readLosses(dir string) (ls []Loss, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, lostName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("spool: read %s: %w", lostName, err)
	}
	ls, ok = unmarshalLosses(b)
	return ls, ok, nil
}

// writeLosses replaces the file of losses in dir atomically (as
// writeState does the state), or removes it when there are none.
func writeLosses(dir string, ls []Loss) error {
	path := filepath.Join(dir, lostName)
	if len(ls) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: remove %s: %w", lostName, err)
		}
		return syncDir(dir)
	}
	tmp := filepath.Join(dir, lostTemp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: write %s: %w", lostName, err)
	}
	_, err = f.Write(marshalLosses(ls))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("spool: write %s: %w", lostName, err)
	}
	return syncDir(dir)
}

// mergeLosses adds the losses found to those remembered: one per
// NextSequence (a loss found again keeps what this Open learnt of it, and
// the wider range), none at or below acked, in NextSequence order. changed
// says whether the result differs from remembered.
func mergeLosses(remembered, found []Loss, acked uint64) (out []Loss, changed bool) {
	byNext := make(map[uint64]Loss, len(remembered)+len(found))
	for _, l := range remembered {
		byNext[l.NextSequence] = l
	}
	for _, l := range found {
		if old, ok := byNext[l.NextSequence]; ok {
			l.FirstSequence = min(l.FirstSequence, old.FirstSequence)
		}
		byNext[l.NextSequence] = l
	}
	for _, l := range byNext {
		if l.NextSequence > acked {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b Loss) int {
		switch {
		case a.NextSequence < b.NextSequence:
			return -1
		case a.NextSequence > b.NextSequence:
			return 1
		}
		return 0
	})
	changed = len(out) != len(remembered)
	for i := 0; !changed && i < len(out); i++ {
		a, b := out[i], remembered[i]
		changed = a.FirstSequence != b.FirstSequence || a.LastSequence != b.LastSequence || a.NextSequence != b.NextSequence
	}
	return out, changed
}

// lossDetector finds the losses while Open reads the segments in order. It
// is told every valid record and every run of damaged bytes, in file
// order.
type lossDetector struct {
	acked uint64 // every report up to it is acknowledged: not lost
	run   uint64 // the newest sequence accepted so far
	// damaged counts the damaged bytes since the last accepted record,
	// in the files named by damagedIn; damageKey is the key of the segment
	// where they began.
	damaged   int64
	damagedIn []string
	damageKey uint64
	found     []Loss
}

// damage records n damaged bytes in seg.
func (d *lossDetector) damage(seg *segment, n int64) {
	if n <= 0 {
		return
	}
	if d.damaged == 0 {
		d.damageKey = seg.key
	}
	d.damaged += n
	if name := filepath.Base(seg.path); !slices.Contains(d.damagedIn, name) {
		d.damagedIn = append(d.damagedIn, name)
	}
}

// accept records r, the next record accepted (its sequence above every one
// before). A loss lies before it when damaged bytes do, or
// when sequences are missing between it and the record before although
// no damage explains it (a segment file gone) and it is not a Snapshot
// (which follows a report the agent failed to append: never spooled, not
// lost by the spool).
func (d *lossDetector) accept(r record) {
	lost := d.damaged > 0 || (d.run > 0 && r.seq > d.run+1 && !isSnapshot(r.payload))
	if lost {
		// Without a record before the damage, the lost reports start at
		// the key of the segment the damage began in (no earlier report
		// was in it; earlier segments were removed whole, acknowledged or
		// dropped on overflow and counted).
		lo := d.run + 1
		if d.run == 0 {
			lo = max(d.damageKey, 1)
		}
		lo = max(lo, d.acked+1)
		if lo < r.seq {
			d.found = append(d.found, Loss{FirstSequence: lo, LastSequence: r.seq - 1, NextSequence: r.seq,
				Bytes: d.damaged, Segments: d.damagedIn})
		}
	}
	d.damaged, d.damagedIn = 0, nil
	d.run = r.seq
}

// isSnapshot says whether payload is a Report holding a Snapshot.
func isSnapshot(payload []byte) bool {
	var rep sessionauditv1.Report
	return proto.Unmarshal(payload, &rep) == nil && rep.GetSnapshot() != nil
}

// lostBefore returns the loss that report seq carries to the collector,
// as the protocol spells it; nil when none.
func (s *Spool) lostBefore(seq uint64) *sessionauditv1.LostReports {
	i, ok := slices.BinarySearchFunc(s.losses, seq, func(l Loss, seq uint64) int {
		switch {
		case l.NextSequence < seq:
			return -1
		case l.NextSequence > seq:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	l := s.losses[i]
	return &sessionauditv1.LostReports{FirstSequence: l.FirstSequence, LastSequence: l.LastSequence,
		Reason: sessionauditv1.LostReportsReason_LOST_REPORTS_REASON_SPOOL_DAMAGE}
}

// pruneLosses forgets the losses whose carrier the collector acknowledged,
// on disk too.
func (s *Spool) pruneLosses() error {
	i := 0
	for i < len(s.losses) && s.losses[i].NextSequence <= s.st.acked {
		i++
	}
	if i == 0 {
		return nil
	}
	kept := slices.Clone(s.losses[i:])
	if err := writeLosses(s.dir, kept); err != nil {
		return err
	}
	s.losses = kept
	return nil
}
