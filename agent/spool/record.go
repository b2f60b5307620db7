package spool

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
)

// Record layout (little-endian):
//
//	offset size field
//	0      4    magic           recordMagic
//	4      4    length          n, the payload's length
//	8      8    sequence        the Report's sequence
//	16     4    payload CRC     CRC-32C of the payload
//	20     4    header CRC      CRC-32C of bytes 0..20
//	24     n    payload         proto.Marshal(Report)
//
// The header has a checksum of its own so that the resynchronising scan
// rejects a false magic in constant time, before trusting its length: a
// damaged region full of magics costs linear time, not quadratic.
const (
	headerSize = 24
	// maxPayload bounds a record's payload. It is the format's limit (a
	// length above it is corruption) and the largest report Append accepts.
	maxPayload = 64 << 20
)

// recordMagic starts every record. Its first byte is not printable, which
// makes false hits inside protobuf strings rarer during a resynchronising
// scan; the last byte is the format's version.
var recordMagic = [4]byte{0xD5, 'S', 'A', 0x01}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendRecord appends the encoding of one record to dst.
func appendRecord(dst []byte, seq uint64, payload []byte) []byte {
	var h [headerSize]byte
	copy(h[0:4], recordMagic[:])
	binary.LittleEndian.PutUint32(h[4:8], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:16], seq)
	binary.LittleEndian.PutUint32(h[16:20], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint32(h[20:24], crc32.Checksum(h[0:20], castagnoli))
	dst = append(dst, h[:]...)
	return append(dst, payload...)
}

// record is one valid record found in a segment.
type record struct {
	seq     uint64
	off     int64  // offset of the record's header in its file
	size    int64  // header + payload
	payload []byte // aliases the scanned buffer
}

// decodeAt returns the record whose header starts at buf[p], if the bytes
// there are a complete record whose checksums match.
func decodeAt(buf []byte, p int) (seq uint64, payload []byte, ok bool) {
	if len(buf)-p < headerSize || !bytes.Equal(buf[p:p+4], recordMagic[:]) {
		return 0, nil, false
	}
	h := buf[p : p+headerSize]
	if binary.LittleEndian.Uint32(h[20:24]) != crc32.Checksum(h[0:20], castagnoli) {
		return 0, nil, false
	}
	n := binary.LittleEndian.Uint32(h[4:8])
	if n > maxPayload || int64(len(buf)-p-headerSize) < int64(n) {
		return 0, nil, false
	}
	payload = buf[p+headerSize : p+headerSize+int(n)]
	if binary.LittleEndian.Uint32(h[16:20]) != crc32.Checksum(payload, castagnoli) {
		return 0, nil, false
	}
	return binary.LittleEndian.Uint64(h[8:16]), payload, true
}

// scanResult says what a scan of a segment's bytes found besides records.
type scanResult struct {
	// corrupt counts bytes skipped between valid records (damage in the
	// middle), tail the bytes after the last valid record (a torn write).
	corrupt, tail int64
	// firstCorrupt is the offset of the first skipped byte in the middle,
	// -1 if none.
	firstCorrupt int64
	// end is the offset just after the last valid record.
	end int64
}

// scan decodes buf, which holds a segment's bytes from file offset base,
// and calls fn for every valid record in file order until fn returns false.
// Bytes that are not a valid record are skipped: the scan looks for the
// next magic whose record checks out, so damage in the middle costs only
// the records it touches.
func scan(buf []byte, base int64, fn func(record) bool) scanResult {
	res := scanResult{firstCorrupt: -1, end: base}
	p := 0
	var skipped int64
	skipFrom := -1
	for p < len(buf) {
		seq, payload, ok := decodeAt(buf, p)
		if !ok {
			if skipFrom < 0 {
				skipFrom = p
			}
			i := bytes.Index(buf[p+1:], recordMagic[:])
			if i < 0 {
				break
			}
			p += 1 + i
			continue
		}
		if skipFrom >= 0 {
			skipped += int64(p - skipFrom)
			if res.firstCorrupt < 0 {
				res.firstCorrupt = base + int64(skipFrom)
			}
			skipFrom = -1
		}
		size := int64(headerSize + len(payload))
		r := record{seq: seq, off: base + int64(p), size: size, payload: payload}
		p += int(size)
		res.end = base + int64(p)
		if !fn(r) {
			res.corrupt = skipped
			return res
		}
	}
	res.corrupt = skipped
	res.tail = base + int64(len(buf)) - res.end
	return res
}
