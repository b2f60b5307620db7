package spool

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
)

// A spool's incarnation is a random number, other than 0, made when the
// spool is created and kept in the file "incarnation" beside the segments.
// The agent sends it with every batch (Batch.incarnation): sequences count
// within an incarnation, so that a new spool (the old one deleted or lost,
// the agent reinstalled over it), which numbers from 1 again, is not taken
// by the collector for a replay of reports it already stored.
//
// A copy of the spool restored from the past (a VM snapshot) keeps its
// incarnation; what tells it apart is the collector's acknowledgement of a
// sequence above every one the spool has numbered, after which the agent
// calls Rebase (docs/design/0001-protocol.md).

// incarnationName is the file of the incarnation; incarnationTemp the file
// it is written through.
const (
	incarnationName = "incarnation"
	incarnationTemp = "incarnation.tmp"
	incarnationSize = 20
)

var incarnationMagic = [8]byte{'S', 'A', 'S', 'P', 'I', 'N', '0', '1'}

// The file "incarnation" (little-endian, 20 bytes): magic "SASPIN01", the
// incarnation (uint64), the CRC-32C of the 16 bytes before it.
func marshalIncarnation(id uint64) []byte {
	b := append(make([]byte, 0, incarnationSize), incarnationMagic[:]...)
	b = binary.LittleEndian.AppendUint64(b, id)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func unmarshalIncarnation(b []byte) (uint64, bool) {
	if len(b) != incarnationSize || !bytes.Equal(b[:8], incarnationMagic[:]) ||
		binary.LittleEndian.Uint32(b[16:]) != crc32.Checksum(b[:16], castagnoli) {
		return 0, false
	}
	id := binary.LittleEndian.Uint64(b[8:16])
	return id, id != 0
}

// openIncarnation reads the spool's incarnation, or makes one when the file
// is missing (a new spool, or one written by an agent before incarnations)
// or damaged, and records which (IncarnationCreated). Open calls it.
func (s *Spool) openIncarnation() error {
	if err := os.Remove(filepath.Join(s.dir, incarnationTemp)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: open: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(s.dir, incarnationName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: read %s: %w", incarnationName, err)
	}
	if id, ok := unmarshalIncarnation(b); ok {
		s.incarnation = id
		return nil
	}
	var r [8]byte
	for s.incarnation == 0 {
		if _, err := rand.Read(r[:]); err != nil {
			return fmt.Errorf("spool: make an incarnation: %w", err)
		}
		s.incarnation = binary.LittleEndian.Uint64(r[:])
	}
	s.incarnationCreated = true
	return writeIncarnation(s.dir, s.incarnation)
}

// writeIncarnation writes the file of the incarnation in dir atomically
// (writeFileAtomic).
func writeIncarnation(dir string, id uint64) error {
	return writeFileAtomic(dir, incarnationName, incarnationTemp, marshalIncarnation(id))
}

// Incarnation returns the spool's incarnation, for Batch.incarnation.
func (s *Spool) Incarnation() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.incarnation
}

// IncarnationCreated reports whether Open made the incarnation: the spool
// was new (first start, or the old one deleted or lost), written by an agent
// before incarnations, or its incarnation file was damaged.
func (s *Spool) IncarnationCreated() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.incarnationCreated
}

// Rebase moves the spool past floor, a sequence the collector acknowledged
// above every one the spool has numbered (it holds reports of this
// incarnation the spool no longer has: the spool was restored from an older
// copy, or lost and made again under the same incarnation). The reports the
// spool holds unacknowledged are numbered at or below what the collector
// stored, or follow them: the collector would take them for duplicates or
// could not apply them. Rebase drops them all, counted like reports dropped
// on overflow (Dropped, Stats), and moves NextSequence above floor and above
// every sequence held, so that the agent numbers its next report there; that
// report must be a Snapshot. It returns the number of reports dropped; a
// floor not above NextSequence()-1 changes nothing.
func (s *Spool) Rebase(floor uint64) (dropped uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	if floor <= max(s.last, s.st.acked) {
		return 0, nil
	}
	var n uint64
	var b int64
	for _, seg := range s.segs {
		if seg.last <= s.st.acked {
			continue
		}
		sn, sb, _, err := s.countUnacked(seg)
		if err != nil {
			return 0, err
		}
		n, b = n+sn, b+sb
	}
	st := s.st
	st.acked = floor
	st.pendingReports += n
	st.pendingBytes += b
	st.totalReports += n
	st.totalBytes += b
	if err := writeState(s.dir, st); err != nil {
		return 0, err
	}
	s.st, s.stateDirty = st, false
	return n, s.removeAcked()
}
