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
)

// stateName is the spool's state file, stateTemp the file it is written
// through.
const (
	stateName = "state"
	stateTemp = "state.tmp"
	stateSize = 56
)

var stateMagic = [8]byte{'S', 'A', 'S', 'P', 'S', 'T', '0', '1'}

// state is what the spool keeps besides its records. Layout of the file
// (little-endian, 56 bytes):
//
//	0  8 magic "SASPST01"
//	8  8 acked: every report up to this sequence is acknowledged
//	16 8 pending dropped reports (not yet acknowledged as reported)
//	24 8 pending dropped bytes
//	32 8 total dropped reports over the spool's life
//	40 8 total dropped bytes over the spool's life
//	48 4 flags: bit 0, the next report must be a Snapshot
//	52 4 CRC-32C of bytes 0..52
type state struct {
	acked          uint64
	pendingReports uint64
	pendingBytes   int64
	totalReports   uint64
	totalBytes     int64
	resync         bool
}

func (st state) marshal() []byte {
	b := make([]byte, stateSize)
	copy(b[0:8], stateMagic[:])
	binary.LittleEndian.PutUint64(b[8:], st.acked)
	binary.LittleEndian.PutUint64(b[16:], st.pendingReports)
	binary.LittleEndian.PutUint64(b[24:], uint64(st.pendingBytes))
	binary.LittleEndian.PutUint64(b[32:], st.totalReports)
	binary.LittleEndian.PutUint64(b[40:], uint64(st.totalBytes))
	var flags uint32
	if st.resync {
		flags |= 1
	}
	binary.LittleEndian.PutUint32(b[48:], flags)
	binary.LittleEndian.PutUint32(b[52:], crc32.Checksum(b[:52], castagnoli))
	return b
}

func unmarshalState(b []byte) (state, bool) {
	if len(b) != stateSize || !bytes.Equal(b[0:8], stateMagic[:]) ||
		binary.LittleEndian.Uint32(b[52:]) != crc32.Checksum(b[:52], castagnoli) {
		return state{}, false
	}
	return state{
		acked:          binary.LittleEndian.Uint64(b[8:]),
		pendingReports: binary.LittleEndian.Uint64(b[16:]),
		pendingBytes:   int64(binary.LittleEndian.Uint64(b[24:])),
		totalReports:   binary.LittleEndian.Uint64(b[32:]),
		totalBytes:     int64(binary.LittleEndian.Uint64(b[40:])),
		resync:         binary.LittleEndian.Uint32(b[48:])&1 != 0,
	}, true
}

// readState reads the state file of dir. A missing file is the zero
// state; a damaged one is reported with ok false (the caller starts from
// the zero state and asks for a resync: reports may be sent twice, which
// the collector tolerates).
func readState(dir string) (st state, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, stateName))
	if errors.Is(err, fs.ErrNotExist) {
		return state{}, true, nil
	}
	if err != nil {
		return state{}, false, fmt.Errorf("spool: read state: %w", err)
	}
	st, ok = unmarshalState(b)
	return st, ok, nil
}

// writeState replaces the state file of dir atomically (writeFileAtomic).
func writeState(dir string, st state) error {
	return writeFileAtomic(dir, stateName, stateTemp, st.marshal())
}

// writeFileAtomic replaces the file name of dir with data atomically: it
// writes the temporary file tmpName, flushes it, renames it over name and
// flushes the directory. After a crash the file is either the old or the
// new one. The spool's state, incarnation and lost files are written so.
func writeFileAtomic(dir, name, tmpName string, data []byte) error {
	tmp := filepath.Join(dir, tmpName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("spool: write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("spool: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("spool: write %s: %w", name, err)
	}
	return syncDir(dir)
}
