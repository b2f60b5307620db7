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

// Loss is a run of consecutive reports that the spool held and lost before
// the collector acknowledged them, for one of two reasons (Reason):
//
//   - damage on disk (LOST_REPORTS_REASON_SPOOL_DAMAGE), found by Open:
//     bytes that are no longer a valid record (a bad sector, flipped bytes,
//     a zeroed or cut segment file other than the newest), or a segment file
//     missing between two others;
//   - overflow (LOST_REPORTS_REASON_SPOOL_OVERFLOW): the oldest segments
//     deleted, unacknowledged, to stay within Options.MaxBytes.
//
// The reports after a loss are intact and are delivered as usual; the first
// of them carries the loss to the collector (Report.lost_before), which
// applies them although their base is missing and records the hole as a
// coverage gap of the host (docs/agent.md, "Spool damage" and "Reports
// lost: what each loss costs"). Reports the spool could not write at all
// are not a Loss: the next report written carries them itself (Append).
type Loss struct {
	// FirstSequence..LastSequence are the sequences lost, both included.
	FirstSequence, LastSequence uint64
	// NextSequence is the first intact report after them: the one that
	// carries the loss to the collector.
	NextSequence uint64
	// Bytes counts the damaged bytes between the intact reports around the
	// loss (0 when a segment file was missing), or the bytes of the reports
	// dropped on overflow; Segments names the files they were in. Both are
	// known only for losses found by this Open or by this process.
	Bytes    int64
	Segments []string
	// Reason is why they were lost: LOST_REPORTS_REASON_SPOOL_DAMAGE (also
	// when unspecified: the "lost" file of an older agent) or
	// LOST_REPORTS_REASON_SPOOL_OVERFLOW.
	Reason sessionauditv1.LostReportsReason
}

// reason returns l's reason as the protocol spells it.
func (l Loss) reason() sessionauditv1.LostReportsReason {
	if l.Reason == sessionauditv1.LostReportsReason_LOST_REPORTS_REASON_UNSPECIFIED {
		return sessionauditv1.LostReportsReason_LOST_REPORTS_REASON_SPOOL_DAMAGE
	}
	return l.Reason
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

// The file "lost" (little-endian): magic "SASPLS02", a uint32 count n, n
// entries of three uint64 (first, last and next sequence) and a uint32 (the
// reason, a LostReportsReason), and the CRC-32C of everything before it.
// Version 01, written before overflow losses were remembered, has entries
// of the three uint64 only, all damage; it is still read.
var (
	lostMagicV1 = [8]byte{'S', 'A', 'S', 'P', 'L', 'S', '0', '1'}
	lostMagic   = [8]byte{'S', 'A', 'S', 'P', 'L', 'S', '0', '2'}
)

func marshalLosses(ls []Loss) []byte {
	b := make([]byte, 0, 16+28*len(ls))
	b = append(b, lostMagic[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ls)))
	for _, l := range ls {
		b = binary.LittleEndian.AppendUint64(b, l.FirstSequence)
		b = binary.LittleEndian.AppendUint64(b, l.LastSequence)
		b = binary.LittleEndian.AppendUint64(b, l.NextSequence)
		b = binary.LittleEndian.AppendUint32(b, uint32(l.reason()))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func unmarshalLosses(b []byte) ([]Loss, bool) {
	if len(b) < 16 || binary.LittleEndian.Uint32(b[len(b)-4:]) != crc32.Checksum(b[:len(b)-4], castagnoli) {
		return nil, false
	}
	entry := 0
	switch {
	case bytes.Equal(b[:8], lostMagic[:]):
		entry = 28
	case bytes.Equal(b[:8], lostMagicV1[:]):
		entry = 24
	default:
		return nil, false
	}
	n := int(binary.LittleEndian.Uint32(b[8:12]))
	if len(b) != 16+entry*n {
		return nil, false
	}
	ls := make([]Loss, 0, n)
	for p := 12; p < len(b)-4; p += entry {
		l := Loss{
			FirstSequence: binary.LittleEndian.Uint64(b[p:]),
			LastSequence:  binary.LittleEndian.Uint64(b[p+8:]),
			NextSequence:  binary.LittleEndian.Uint64(b[p+16:]),
			Reason:        sessionauditv1.LostReportsReason_LOST_REPORTS_REASON_SPOOL_DAMAGE,
		}
		if entry == 28 {
			l.Reason = sessionauditv1.LostReportsReason(binary.LittleEndian.Uint32(b[p+24:]))
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
	return writeFileAtomic(dir, lostName, lostTemp, marshalLosses(ls))
}

// mergeLosses adds the losses found to those remembered: one per
// NextSequence (a loss found again keeps what this Open learnt of it, the
// wider range and the reason remembered), none at or below acked, in
// NextSequence order. changed says whether the result differs from
// remembered.
func mergeLosses(remembered, found []Loss, acked uint64) (out []Loss, changed bool) {
	byNext := make(map[uint64]Loss, len(remembered)+len(found))
	for _, l := range remembered {
		byNext[l.NextSequence] = l
	}
	for _, l := range found {
		if old, ok := byNext[l.NextSequence]; ok {
			l.FirstSequence = min(l.FirstSequence, old.FirstSequence)
			l.Reason = old.reason()
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
		changed = a.FirstSequence != b.FirstSequence || a.LastSequence != b.LastSequence || a.NextSequence != b.NextSequence ||
			a.reason() != b.reason()
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
// no damage explains it (a segment file gone) and r does not explain it
// either: a Snapshot (which follows a report the agent failed to append:
// never spooled, not lost by the spool), or a report whose own lost_before
// names the missing ones (reports Append could not write).
func (d *lossDetector) accept(r record) {
	lost := d.damaged > 0 || (d.run > 0 && r.seq > d.run+1 && !explainsMissing(r.payload, d.run+1))
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
				Bytes: d.damaged, Segments: d.damagedIn, Reason: sessionauditv1.LostReportsReason_LOST_REPORTS_REASON_SPOOL_DAMAGE})
		}
	}
	d.damaged, d.damagedIn = 0, nil
	d.run = r.seq
}

// explainsMissing says whether payload, the first record after missing
// sequences from first on, accounts for them: a Report holding a Snapshot,
// or one whose lost_before names them from first on.
func explainsMissing(payload []byte, first uint64) bool {
	var rep sessionauditv1.Report
	if proto.Unmarshal(payload, &rep) != nil {
		return false
	}
	lb := rep.GetLostBefore()
	// A later part of a snapshot in parts does not: its first parts are
	// among the missing.
	return (rep.GetSnapshot() != nil && rep.GetSnapshot().GetPart() <= 1) || (lb != nil && lb.GetFirstSequence() <= first)
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
	return &sessionauditv1.LostReports{FirstSequence: l.FirstSequence, LastSequence: l.LastSequence, Reason: l.reason()}
}

// mergeLost returns the loss that a report preceded by the losses a and b
// (either may be nil) carries: one run from the first of either to the
// last of either, with a's reason (the spool's own record of the loss, or
// the older of two).
func mergeLost(a, b *sessionauditv1.LostReports) *sessionauditv1.LostReports {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return &sessionauditv1.LostReports{FirstSequence: min(a.GetFirstSequence(), b.GetFirstSequence()),
		LastSequence: max(a.GetLastSequence(), b.GetLastSequence()), Reason: a.GetReason()}
}

// addOverflowLoss records that the reports first..last, unacknowledged, are
// dropped on overflow with the segment seg (bytes of them), and that next
// is the first report kept after them. Losses whose carrier is among the
// dropped reports, or is next too, are folded into it (their reports are
// lost all the same; the widest range is kept). The losses are written to disk
// before the segment goes, so that a crash in between forgets nothing; the
// caller deletes the segment once this returns nil.
func (s *Spool) addOverflowLoss(first, last, next uint64, bytes int64, seg string) error {
	l := Loss{FirstSequence: first, LastSequence: last, NextSequence: next, Bytes: bytes, Segments: []string{seg},
		Reason: sessionauditv1.LostReportsReason_LOST_REPORTS_REASON_SPOOL_OVERFLOW}
	i := 0
	for i < len(s.losses) && s.losses[i].NextSequence <= next {
		old := s.losses[i]
		l.FirstSequence = min(l.FirstSequence, old.FirstSequence)
		l.LastSequence = max(l.LastSequence, old.LastSequence)
		l.Bytes += old.Bytes
		l.Segments = append(slices.Clone(old.Segments), l.Segments...)
		i++
	}
	kept := append([]Loss{l}, s.losses[i:]...) // the others' carriers come after next
	if err := writeLosses(s.dir, kept); err != nil {
		return err
	}
	s.losses = kept
	return nil
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
