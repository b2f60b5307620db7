package spool

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	sessionauditv1 "github.com/sessionaudit/sessionaudit/proto/sessionaudit/v1"
)

// DefaultMaxBytes is the bound of a spool's segments on disk when
// Options.MaxBytes is zero: at a typical 3 KB per snapshot and a few hundred
// bytes per delta, days of a busy host's reports.
const DefaultMaxBytes = 256 << 20

// DefaultSegmentBytes is the size at which a segment is closed and the next
// one started, when Options.SegmentBytes is zero (or a quarter of MaxBytes,
// if that is smaller).
const DefaultSegmentBytes = 4 << 20

// segmentExt ends the name of every segment file; the name before it is
// the segment's key, 20 decimal digits.
const segmentExt = ".seg"

// ErrClosed is returned by the methods of a Spool after Close.
var ErrClosed = errors.New("spool: closed")

// Options configures a Spool.
type Options struct {
	// MaxBytes bounds the bytes of the spool's segments. When an Append
	// goes over it, the oldest segments are deleted, acknowledged or not,
	// until the spool fits again (the segment being written is always
	// kept, so the bound may be exceeded by up to one segment). Zero means
	// DefaultMaxBytes.
	MaxBytes int64
	// SegmentBytes is the size at which a segment file is closed and a new
	// one started; a report larger than it gets a segment of its own. Zero
	// means DefaultSegmentBytes or MaxBytes/4, whichever is smaller. It must
	// not exceed MaxBytes.
	SegmentBytes int64
}

// Stats describes a spool. The counts of damage are those found by Open.
type Stats struct {
	// Segments is the number of segment files, Bytes their total size.
	Segments int
	Bytes    int64
	// LastSequence is the sequence of the newest report kept (0 if none
	// was ever appended); Acknowledged the sequence up to which the
	// collector acknowledged.
	LastSequence uint64
	Acknowledged uint64
	// DroppedReports and DroppedBytes count the unacknowledged reports
	// deleted on overflow over the spool's life.
	DroppedReports uint64
	DroppedBytes   int64
	// CorruptBytes counts the damaged bytes Open skipped: between valid
	// records, before the first one of a segment, after the last one of a
	// segment other than the newest, and whole segments other than the
	// newest with no valid record. The reports in them are lost (Lost).
	CorruptBytes int64
	// TornBytes counts the bytes Open found after the last valid record of
	// the newest segment (a write that did not complete: a report never
	// confirmed to the agent) and cut off.
	TornBytes int64
	// Lost lists the runs of reports lost to damage on disk or dropped on
	// overflow, and not yet delivered, oldest first: found by this Open or
	// made by this process, or by an earlier one and remembered (file
	// "lost"). LostReports is their total count.
	Lost        []Loss
	LostReports uint64
	// StaleRecords counts valid records Open skipped because their
	// sequence was not above the record before them.
	StaleRecords uint64
	// StateDamaged is true when Open found the state file damaged and
	// started from an empty state (every report on disk is sent again).
	StateDamaged bool
	// UnwrittenReports counts the reports Append could not write (a full
	// disk, a write error) since Open: they are lost, and the next report
	// written names them (Report.lost_before, SPOOL_WRITE_FAILED).
	UnwrittenReports uint64
}

// KeptError is returned by Append when the report is written, and will be
// delivered, but a step after the write failed (recording the state,
// keeping the spool within its bound); Err says which. The step is tried
// again at the next Append or Ack.
type KeptError struct {
	Sequence uint64
	Err      error
}

// Error says that the report is kept and what failed.
func (e *KeptError) Error() string {
	return fmt.Sprintf("spool: report %d is written, but: %v", e.Sequence, e.Err)
}

// Unwrap returns the failure.
func (e *KeptError) Unwrap() error { return e.Err }

// segment is one segment file.
type segment struct {
	key   uint64 // from the file name; orders the segments
	path  string
	size  int64  // bytes of the file that the spool reads
	first uint64 // first and last sequence accepted in it; 0 if none
	last  uint64
	count int // records accepted in it
}

// Spool is a durable, bounded queue of reports on disk: the agent appends
// every report before it sends it, and deletes it only when the collector
// has acknowledged it. It survives restarts, reboots and power loss: a
// report is on disk when Append returns, a torn or damaged record is
// skipped without harming those after it, and reports come out in strictly
// increasing sequence order.
//
// A Spool is safe for concurrent use; it is meant for one writer (the poll
// loop) and one reader (the uplink). One process at a time may open a
// directory.
type Spool struct {
	mu     sync.Mutex
	dir    string
	opts   Options
	segs   []*segment // in key order; never empty after the first Append
	active *os.File   // open for writing the last segment; nil: the next Append starts a segment
	bytes  int64      // total size of segs
	last   uint64     // newest sequence appended or found
	// lastSnapshot is the sequence of the newest Snapshot appended since
	// Open (0: none): dropping reports older than it needs no resync.
	lastSnapshot uint64
	st           state
	// stateDirty says that st holds changes the state file does not have
	// (its write failed): the next write of the state carries them.
	stateDirty bool
	stats      Stats // damage found by Open
	// unwrittenFirst..unwrittenLast are the reports Append could not write
	// since the last report it wrote (0, 0: none): the next report written
	// carries them (lost_before, SPOOL_WRITE_FAILED).
	unwrittenFirst, unwrittenLast uint64
	// incarnation is the spool's (incarnation.go); incarnationCreated
	// says whether Open made it.
	incarnation        uint64
	incarnationCreated bool
	// losses are the losses not yet delivered, in NextSequence order
	// (lost.go).
	losses []Loss
	// cursor is where Peek starts: every record before it, in the segment
	// keyed cursorKey, is acknowledged (or damaged). A key no longer in
	// segs means the start of the first segment.
	cursorKey uint64
	cursorOff int64
	closed    bool
}

// Open opens the spool in dir, creating the directory if needed. It reads
// every segment, skips what is damaged (counted in Stats), cuts a torn
// write off the end of the last segment, deletes segments whose reports
// are all acknowledged, and applies the size bound.
//
// The caller restricts access to dir (on Windows, a directory under
// ProgramData readable by SYSTEM and Administrators only).
func Open(dir string, opts Options) (*Spool, error) {
	if opts.MaxBytes < 0 || opts.SegmentBytes < 0 {
		return nil, fmt.Errorf("spool: open %s: negative size in options %+v", dir, opts)
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SegmentBytes == 0 {
		opts.SegmentBytes = min(DefaultSegmentBytes, max(opts.MaxBytes/4, 1))
	}
	if opts.SegmentBytes > opts.MaxBytes {
		return nil, fmt.Errorf("spool: open %s: SegmentBytes %d exceeds MaxBytes %d", dir, opts.SegmentBytes, opts.MaxBytes)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: open: %w", err)
	}
	s := &Spool{dir: dir, opts: opts}
	if err := s.openIncarnation(); err != nil {
		return nil, err
	}
	st, ok, err := readState(dir)
	if err != nil {
		return nil, err
	}
	dirty := false
	if !ok {
		st = state{resync: true}
		s.stats.StateDamaged = true
		dirty = true
	}
	s.st = st
	for _, tmp := range []string{stateTemp, lostTemp} {
		if err := os.Remove(filepath.Join(dir, tmp)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("spool: open: %w", err)
		}
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	if (s.stats.CorruptBytes > 0 || len(s.losses) > 0) && !s.st.resync {
		// Reports were lost: the collector's chain has a hole.
		s.st.resync = true
		dirty = true
	}
	if dirty {
		if err := writeState(dir, s.st); err != nil {
			return nil, err
		}
	}
	if err := s.removeAcked(); err != nil {
		return nil, err
	}
	if err := s.enforceBound(); err != nil {
		return nil, err
	}
	if n := len(s.segs); n > 0 && s.segs[n-1].size < opts.SegmentBytes {
		seg := s.segs[n-1]
		f, err := os.OpenFile(seg.path, os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("spool: open: %w", err)
		}
		s.active = f
	}
	return s, nil
}

// load reads the segments of s.dir.
func (s *Spool) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: open: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, segmentExt) {
			continue
		}
		key, err := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 10, 64)
		if err != nil {
			continue
		}
		s.segs = append(s.segs, &segment{key: key, path: filepath.Join(s.dir, name)})
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmp.Compare(a.key, b.key) })

	// Damage is any byte that is not a valid record, except after the last
	// valid record of the newest segment: only there can a write have been
	// torn (Append writes only at the end of the newest segment, and a
	// failed Append is cut back or followed by a new segment and a
	// Snapshot). The detector turns damage into sequences lost.
	det := lossDetector{acked: s.st.acked}
	kept := s.segs[:0]
	var unreadable []*segment
	var lastEnd int64 // end of the last valid record of the newest kept segment
	var floor uint64  // from an empty newest segment: a sequence the spool numbered
	for i, seg := range s.segs {
		buf, err := os.ReadFile(seg.path)
		if err != nil {
			return fmt.Errorf("spool: open: %w", err)
		}
		if i == len(s.segs)-1 && len(buf) == 0 {
			// An empty newest segment, made to follow acknowledged ones
			// (Ack deletes them, rotateAcked) or by an Append whose write
			// failed: it is where the next report goes, and its name says
			// that the spool numbered up to the sequence before it, which
			// the state file may not say yet (Ack frees space before it
			// records the acknowledgement).
			floor = seg.key - 1
			kept = append(kept, seg)
			lastEnd = 0
			continue
		}
		var end int64 // end of the last valid record so far
		res := scan(buf, 0, func(r record) bool {
			s.stats.CorruptBytes += r.off - end
			det.damage(seg, r.off-end)
			end = r.off + r.size
			if r.seq <= det.run {
				s.stats.StaleRecords++
				return true
			}
			det.accept(r)
			if seg.count == 0 {
				seg.first = r.seq
			}
			seg.last = r.seq
			seg.count++
			return true
		})
		if i == len(s.segs)-1 {
			s.stats.TornBytes += res.tail
		} else {
			s.stats.CorruptBytes += res.tail
			det.damage(seg, res.tail)
		}
		seg.size = int64(len(buf))
		if seg.count == 0 {
			// Nothing readable: the file only takes room (and its name).
			unreadable = append(unreadable, seg)
			continue
		}
		kept = append(kept, seg)
		lastEnd = res.end
	}
	s.segs = kept
	s.last = max(det.run, floor)
	// The losses are on disk before the damaged files go: a restart in
	// between would otherwise forget a loss it can no longer see.
	remembered, ok, err := readLosses(s.dir)
	if err != nil {
		return err
	}
	losses, changed := mergeLosses(remembered, det.found, s.st.acked)
	if changed || !ok {
		if err := writeLosses(s.dir, losses); err != nil {
			return err
		}
	}
	s.losses = losses
	removed := false
	for _, seg := range unreadable {
		if err := os.Remove(seg.path); err != nil {
			return fmt.Errorf("spool: open: remove unreadable segment: %w", err)
		}
		removed = true
	}
	if n := len(kept); n > 0 && kept[n-1].size > lastEnd {
		// A torn write at the end of the segment Append continues: cut
		// it off, so that new records follow the last valid one.
		if err := truncateFile(kept[n-1].path, lastEnd); err != nil {
			return err
		}
		kept[n-1].size = lastEnd
	}
	for _, seg := range kept {
		s.bytes += seg.size
	}
	if removed {
		return syncDir(s.dir)
	}
	return nil
}

// truncateFile cuts the file at path to size bytes and flushes it.
func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("spool: cut torn write: %w", err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: cut torn write off %s at offset %d: %w", path, size, err)
	}
	return nil
}

// Append writes r to the spool and flushes it to disk: when Append returns
// nil, or a *KeptError, r survives a crash or power loss. r's sequence must
// be above every sequence the spool holds or has acknowledged (see
// NextSequence), and r must have content.
//
// When Append returns another error, r is not kept: it is lost, counted
// (Stats.UnwrittenReports, Unwritten), and the next report Append writes
// carries it, with any others lost the same way since the last report
// written (Append sets that report's lost_before, reason
// SPOOL_WRITE_FAILED), so that the collector records the hole as a
// coverage gap. The caller asks its tracker for a resync so that the next
// report is a Snapshot. An Append that takes the spool over MaxBytes
// deletes the oldest segments: check NeedsResync afterwards.
func (s *Spool) Append(r *sessionauditv1.Report) error {
	if r == nil || r.GetContent() == nil {
		return errors.New("spool: append: report without content")
	}
	seq := r.GetSequence()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if floor := max(s.last, s.st.acked); seq <= floor {
		return fmt.Errorf("spool: append report %d: sequence not above %d, the spool's newest", seq, floor)
	}
	if first, last := s.unwrittenFirst, min(s.unwrittenLast, seq-1); first != 0 && first <= last {
		r.LostBefore = mergeLost(&sessionauditv1.LostReports{FirstSequence: first, LastSequence: last,
			Reason: sessionauditv1.LostReportsReason_LOST_REPORTS_REASON_SPOOL_WRITE_FAILED}, r.GetLostBefore())
	}
	if err := s.write(r); err != nil {
		// Lost: the next report written says so.
		if s.unwrittenFirst == 0 || seq < s.unwrittenFirst {
			s.unwrittenFirst = seq
		}
		s.unwrittenLast = max(s.unwrittenLast, seq)
		s.stats.UnwrittenReports++
		return err
	}
	s.unwrittenFirst, s.unwrittenLast = 0, 0
	if err := s.afterWrite(r); err != nil {
		return &KeptError{Sequence: seq, Err: err}
	}
	return nil
}

// write writes r at the end of the newest segment (or of a new one) and
// flushes it: r is kept when it returns nil, not kept otherwise.
func (s *Spool) write(r *sessionauditv1.Report) error {
	seq := r.GetSequence()
	payload, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("spool: append report %d: %w", seq, err)
	}
	size := int64(headerSize + len(payload))
	if len(payload) > maxPayload || size > s.opts.MaxBytes {
		return fmt.Errorf("spool: append report %d: %d bytes, more than the spool holds", seq, size)
	}
	var seg *segment
	if n := len(s.segs); s.active != nil && n > 0 {
		seg = s.segs[n-1]
		if seg.size > 0 && seg.size+size > s.opts.SegmentBytes {
			seg = nil
		}
	}
	if seg == nil {
		if seg, err = s.startSegment(seq); err != nil {
			return err
		}
	}
	// Records are written at the offset the spool knows (not in append
	// mode), so that a failed write can be cut off on every platform.
	buf := appendRecord(make([]byte, 0, size), seq, payload)
	_, err = s.active.WriteAt(buf, seg.size)
	if err == nil {
		err = s.active.Sync()
	}
	if err != nil {
		// Take back what may have reached the file. If the cut fails too,
		// write the next report to a new segment (Open will find a torn
		// write, or damage, here); else the next report goes where this
		// one failed, so that a full disk does not leave a new empty file
		// at every attempt.
		if terr := s.active.Truncate(seg.size); terr != nil {
			_ = s.active.Close()
			s.active = nil
		}
		return fmt.Errorf("spool: append report %d to %s at offset %d: %w", seq, seg.path, seg.size, err)
	}
	seg.size += size
	s.bytes += size
	if seg.count == 0 {
		seg.first = seq
	}
	seg.last = seq
	seg.count++
	s.last = seq
	return nil
}

// afterWrite does what follows the write of r: it closes a full segment,
// records that a Snapshot needs no resync any more, and applies the bound.
// r is kept whatever it returns.
func (s *Spool) afterWrite(r *sessionauditv1.Report) error {
	var errs []error
	if seg := s.segs[len(s.segs)-1]; seg.size >= s.opts.SegmentBytes && s.active != nil {
		err := s.active.Close()
		s.active = nil
		if err != nil {
			errs = append(errs, fmt.Errorf("spool: close %s: %w", seg.path, err))
		}
	}
	if r.GetSnapshot() != nil && r.GetSnapshot().GetPart() <= 1 { // a snapshot in parts starts at part 1
		s.lastSnapshot = r.GetSequence()
		if s.st.resync {
			// Kept in memory if the write fails: after a crash the state
			// file still asks for a Snapshot, which costs one more.
			s.st.resync = false
			s.stateDirty = true
		}
	}
	if s.stateDirty {
		if err := s.saveState(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.enforceBound(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// saveState writes s.st to the state file; s.stateDirty stays true when it
// fails.
func (s *Spool) saveState() error {
	if err := writeState(s.dir, s.st); err != nil {
		s.stateDirty = true
		return err
	}
	s.stateDirty = false
	return nil
}

// startSegment closes the active segment and creates the next, named by
// seq (or one above the newest name, if that is larger).
func (s *Spool) startSegment(seq uint64) (*segment, error) {
	if s.active != nil {
		err := s.active.Close()
		s.active = nil
		if err != nil {
			return nil, fmt.Errorf("spool: close segment: %w", err)
		}
	}
	key := seq
	if n := len(s.segs); n > 0 && s.segs[n-1].key >= key {
		key = s.segs[n-1].key + 1
	}
	path := filepath.Join(s.dir, fmt.Sprintf("%020d%s", key, segmentExt))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: start segment: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		_ = f.Close()
		_ = os.Remove(path)
		return nil, err
	}
	seg := &segment{key: key, path: path}
	s.segs = append(s.segs, seg)
	s.active = f
	return seg, nil
}

// enforceBound deletes the oldest segments while the spool is over
// MaxBytes, counting the unacknowledged reports in them as dropped and
// recording them as a Loss (reason SPOOL_OVERFLOW) that the first report
// kept after them carries to the collector. The newest segment is always
// kept.
func (s *Spool) enforceBound() error {
	removed := false
	for s.bytes > s.opts.MaxBytes && len(s.segs) > 1 {
		seg := s.segs[0]
		if seg.last > s.st.acked {
			n, b, first, err := s.countUnacked(seg)
			if err != nil {
				return err
			}
			// The loss and the state are written first: after a crash
			// between them and the removal, the drop is counted and named
			// although the segment is still there (its reports are then
			// delivered, and the collector, which has them, records no
			// gap), rather than lost without a trace.
			next := s.last + 1 // the report that follows, when none is kept
			if i := slices.IndexFunc(s.segs[1:], func(g *segment) bool { return g.count > 0 }); i >= 0 {
				next = s.segs[1+i].first
			}
			if err := s.addOverflowLoss(first, seg.last, next, b, filepath.Base(seg.path)); err != nil {
				return err
			}
			st := s.st
			st.pendingReports += n
			st.pendingBytes += b
			st.totalReports += n
			st.totalBytes += b
			// Reports older than the newest Snapshot are superseded by
			// it: losing them leaves a counted gap in the history, not a
			// wrong state at the collector. Otherwise a full spool would
			// ask for a Snapshot after every Snapshot.
			if seg.last >= s.lastSnapshot {
				st.resync = true
			}
			if err := writeState(s.dir, st); err != nil {
				return err
			}
			s.st, s.stateDirty = st, false
		}
		if err := s.removeOldest("drop oldest segment"); err != nil {
			return err
		}
		removed = true
	}
	if removed {
		return syncDir(s.dir)
	}
	return nil
}

// countUnacked counts the reports of seg, the oldest segment, that are not
// acknowledged, and their bytes; first is the first of them.
func (s *Spool) countUnacked(seg *segment) (n uint64, b int64, first uint64, err error) {
	buf, err := readSegment(seg, 0)
	if err != nil {
		return 0, 0, 0, err
	}
	last := s.st.acked
	scan(buf, 0, func(r record) bool {
		if r.seq > last {
			if first == 0 {
				first = r.seq
			}
			last = r.seq
			n++
			b += r.size
		}
		return true
	})
	return n, b, first, nil
}

// readSegment reads seg from offset off to the size the spool knows.
func readSegment(seg *segment, off int64) ([]byte, error) {
	f, err := os.Open(seg.path)
	if err != nil {
		return nil, fmt.Errorf("spool: read: %w", err)
	}
	defer f.Close()
	buf := make([]byte, seg.size-off)
	if _, err := io.ReadFull(io.NewSectionReader(f, off, seg.size-off), buf); err != nil {
		return nil, fmt.Errorf("spool: read %s at offset %d: %w", seg.path, off, err)
	}
	return buf, nil
}

// Peek returns the oldest unacknowledged reports, in strictly increasing
// sequence order: at most maxReports, and no more than maxBytes of encoded
// reports (maxBytes ≤ 0: no limit) except that the first is returned
// whatever its size. It returns no reports when everything is
// acknowledged. Peek does not remove anything: until Ack, it returns the
// same reports again.
//
// A run of consecutive Heartbeats comes out as its last one only: a
// Heartbeat's base is the last Snapshot or Delta, so the earlier ones say
// nothing the last does not. They stay on disk until acknowledged with it.
// A record that checks out on disk but does not decode as a Report is
// skipped (and NeedsResync becomes true).
func (s *Spool) Peek(maxReports, maxBytes int) ([]*sessionauditv1.Report, error) {
	if maxReports < 1 {
		return nil, fmt.Errorf("spool: peek: maxReports %d, want at least 1", maxReports)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	start, off := 0, int64(0)
	if i := slices.IndexFunc(s.segs, func(g *segment) bool { return g.key == s.cursorKey }); i >= 0 {
		start, off = i, s.cursorOff
	}
	var (
		out      []*sessionauditv1.Report
		outBytes int
		lastSize int // of out's last report
		last     = s.st.acked
		full     bool
	)
	for i := start; i < len(s.segs) && !full; i++ {
		seg := s.segs[i]
		if i > start {
			off = 0
		}
		if off >= seg.size {
			continue
		}
		buf, err := readSegment(seg, off)
		if err != nil {
			return nil, err
		}
		scan(buf, off, func(r record) bool {
			if r.seq <= last {
				if len(out) == 0 && r.seq <= s.st.acked {
					s.cursorKey, s.cursorOff = seg.key, r.off+r.size
				}
				return true
			}
			rep := new(sessionauditv1.Report)
			if err := proto.Unmarshal(r.payload, rep); err != nil || rep.GetSequence() != r.seq {
				last = r.seq
				s.st.resync = true
				return true
			}
			// A loss the spool found or made, and the reports Append could
			// not write (named in the record itself).
			rep.LostBefore = mergeLost(s.lostBefore(r.seq), rep.GetLostBefore())
			if n := len(out); n > 0 && rep.GetHeartbeat() != nil && out[n-1].GetHeartbeat() != nil {
				// The loss before the Heartbeat it replaces still precedes
				// it.
				rep.LostBefore = mergeLost(out[n-1].GetLostBefore(), rep.GetLostBefore())
				outBytes += len(r.payload) - lastSize
				out[n-1], lastSize = rep, len(r.payload)
				last = r.seq
				return true
			}
			if len(out) >= maxReports || (maxBytes > 0 && len(out) > 0 && outBytes+len(r.payload) > maxBytes) {
				full = true
				return false
			}
			out = append(out, rep)
			outBytes += len(r.payload)
			lastSize = len(r.payload)
			last = r.seq
			return true
		})
	}
	return out, nil
}

// Ack records that the collector stored every report up to seq
// (IngestResponse.acknowledged_sequence) and that it received
// droppedReports, the Batch.dropped_reports of the acknowledged batch. The
// acknowledged reports are not returned by Peek any more. Ack deletes the
// segments whose reports are all acknowledged, the newest one included
// (replaced by an empty segment: rotateAcked), and then persists the
// acknowledgement, so that acknowledged reports are not sent again after a
// restart either.
//
// Space is freed first: on a full disk the state file cannot be written,
// and deleting the acknowledged segments is what makes room for it and for
// the next reports. That order is crash-safe: the collector holds every
// report deleted, and after a crash before the state is written, Open
// finds the older acknowledgement and the segments left, which it sends
// again (duplicates, stored once), while the newest segment (or the empty
// one that replaced it) keeps the numbering from going back. When the
// state cannot be written even then, Ack returns the error; the
// acknowledgement holds in memory (nothing is sent again by this process)
// and the next write of the state records it.
//
// A seq beyond the newest report counts as the newest; a seq below an
// earlier acknowledgement changes nothing.
func (s *Spool) Ack(seq uint64, droppedReports uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	st := s.st
	st.acked = max(st.acked, min(seq, s.last))
	if droppedReports >= st.pendingReports {
		st.pendingReports, st.pendingBytes = 0, 0
	} else {
		st.pendingReports -= droppedReports
	}
	if st != s.st {
		s.st, s.stateDirty = st, true
	}
	err := s.removeAcked()
	if err == nil {
		err = s.rotateAcked()
	}
	if s.stateDirty {
		if serr := s.saveState(); serr != nil {
			return errors.Join(err, serr)
		}
	}
	if err != nil {
		return err
	}
	return s.pruneLosses()
}

// rotateAcked replaces the newest segment by an empty one when every report
// in it is acknowledged: an empty segment named after the next sequence is
// created (and the directory flushed), then the old one is deleted. The
// new file needs no data blocks, so this frees space on a full disk, and
// its name keeps the numbering (Open takes the sequence before an empty
// newest segment's name as numbered) whether or not the state file could
// record the acknowledgement.
func (s *Spool) rotateAcked() error {
	n := len(s.segs)
	if n == 0 {
		return nil
	}
	if seg := s.segs[n-1]; seg.size == 0 || seg.last > s.st.acked {
		return nil
	}
	if _, err := s.startSegment(max(s.last, s.st.acked) + 1); err != nil {
		return err
	}
	return s.removeAcked()
}

// removeAcked deletes the segments, other than the newest, whose reports
// are all acknowledged (or that hold none).
func (s *Spool) removeAcked() error {
	removed := false
	for len(s.segs) > 1 && s.segs[0].last <= s.st.acked {
		if err := s.removeOldest("remove acknowledged segment"); err != nil {
			return err
		}
		removed = true
	}
	if removed {
		return syncDir(s.dir)
	}
	return nil
}

// removeOldest deletes the oldest segment's file and forgets the segment;
// why says what for, in the error. The caller flushes the directory.
func (s *Spool) removeOldest(why string) error {
	seg := s.segs[0]
	if err := os.Remove(seg.path); err != nil {
		return fmt.Errorf("spool: %s: %w", why, err)
	}
	s.segs = s.segs[1:]
	s.bytes -= seg.size
	return nil
}

// NextSequence returns the sequence the agent's next report must carry:
// one above the newest report the spool holds or has acknowledged. After a
// restart, the agent passes it (or its own persisted value, if larger) to
// its tracker as the first sequence.
func (s *Spool) NextSequence() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.last, s.st.acked) + 1
}

// NeedsResync reports whether the spool lost reports (dropped on overflow,
// damaged on disk) since its last Snapshot: the agent then asks its
// tracker for a resync, so that the collector gets the whole state again.
// Appending a Snapshot clears it.
func (s *Spool) NeedsResync() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.resync
}

// Dropped returns the reports (and their bytes) deleted on overflow before
// the collector had them, and not yet acknowledged as reported: the agent
// sends the count as Batch.dropped_reports and passes it back to Ack.
func (s *Spool) Dropped() (reports uint64, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.pendingReports, s.st.pendingBytes
}

// Unwritten returns the reports Append could not write since the last one
// it wrote, first..last (0, 0 when none): the next report written carries
// them.
func (s *Spool) Unwritten() (first, last uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unwrittenFirst, s.unwrittenLast
}

// Stats returns the spool's figures.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Segments = len(s.segs)
	st.Bytes = s.bytes
	st.LastSequence = s.last
	st.Acknowledged = s.st.acked
	st.DroppedReports = s.st.totalReports
	st.DroppedBytes = s.st.totalBytes
	st.Lost, st.LostReports = slices.Clone(s.losses), 0
	for _, l := range s.losses {
		st.LostReports += l.Reports()
	}
	return st
}

// Close closes the spool's files. Everything appended is already on disk.
// The spool cannot be used afterwards.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.active != nil {
		err := s.active.Close()
		s.active = nil
		if err != nil {
			return fmt.Errorf("spool: close: %w", err)
		}
	}
	return nil
}
