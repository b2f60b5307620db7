// Package spool is the agent's durable queue of reports: every report the
// change tracker produces is written here, flushed to disk, before the
// uplink sends it, and deleted only after the collector acknowledged it. It
// survives service restarts, reboots and power loss, replays in order after
// an outage, and is bounded in size.
//
// # Files
//
// A spool is a directory (under ProgramData on Windows) holding segment
// files and one state file.
//
// A segment is named by a 20-digit decimal key followed by ".seg"; the key
// is the sequence of its first report (or one above the previous key, if
// that is larger), so that names sort in the order the segments were
// written. A segment is a sequence of records, little-endian:
//
//	magic        4 bytes  D5 'S' 'A' 01 (the last byte is the format version)
//	length       uint32   n, the payload's length (at most 64 MiB)
//	sequence     uint64   the Report's sequence
//	payload CRC  uint32   CRC-32C of the payload
//	header CRC   uint32   CRC-32C of the 20 bytes before it
//	payload      n bytes  proto.Marshal(Report)
//
// Append writes one record with one write at the end of the newest segment
// and flushes the file (fsync, FlushFileBuffers on Windows) before it
// returns. A segment is closed when it reaches Options.SegmentBytes
// (default 4 MiB) and the next record starts a new one, and when every
// report in it is acknowledged (Ack replaces it by an empty segment named
// after the next sequence, so that no acknowledged report stays on disk);
// creating and removing segments also flushes the directory (not possible,
// and not needed, on Windows, where NTFS journals its metadata).
//
// The state file "state" (56 bytes with its own CRC-32C) holds the sequence
// up to which the collector acknowledged, the count of reports dropped and
// not yet reported, lifetime drop totals, and whether a Snapshot is needed.
// It is replaced atomically: written to "state.tmp", flushed, renamed over
// "state", and the directory flushed.
//
// The file "incarnation" (20 bytes with its CRC-32C) holds the spool's
// incarnation, a random number made when the spool is created (or when the
// file is missing or damaged), written once the same way. The agent sends
// it with every batch: sequences count within an incarnation, so that a
// new spool numbering from 1 again is not taken for a replay of an old one
// (incarnation.go; Rebase for a spool restored from an older copy).
//
// # Crash safety
//
// A record is valid when its magic, its header checksum, a plausible
// length and its payload checksum all check out. Readers take only valid
// records whose sequence is above every sequence read before them (a
// duplicate or lower sequence is skipped), so reports come out in strictly
// increasing order whatever is on disk.
//
//   - A power loss during Append leaves at most a torn record at the end of
//     the newest segment: it fails its checksum, and Open cuts it off
//     (Stats.TornBytes) so that the next record follows the last valid one.
//     The report that was torn was never confirmed to the agent.
//   - Damage in the middle of a segment (a bad sector, a flipped bit) does
//     not poison what follows: the reader scans forward for the next magic
//     whose record checks out and goes on from there. The bytes skipped are
//     counted (Stats.CorruptBytes), and the spool asks for a resync
//     (NeedsResync), since reports were lost. So is the end of any segment
//     but the newest (only the newest can end in a torn write), and a whole
//     segment without a valid record, which Open deletes.
//   - The reports lost are named: each run of consecutive sequences lost
//     between two intact records (not acknowledged ones: those are not
//     lost) is a Loss (Stats.Lost, lost.go), found from the damage and
//     from sequences missing between segments. The first intact report
//     after a run carries it to the collector (Peek sets
//     Report.lost_before), which applies the reports after it and records
//     the hole as a coverage gap of the host. The file "lost" remembers the
//     runs until the collector acknowledged their carrier, so that a
//     restart does not forget one whose damaged segment Open deleted.
//     Reports dropped on overflow are a Loss too (below).
//   - A report Append cannot write (a full disk, a write error) is lost
//     before it reaches the disk: Append counts it (Stats.UnwrittenReports)
//     and the next report it writes names it, in its own record
//     (Report.lost_before, reason SPOOL_WRITE_FAILED), so that the carrier
//     and the loss reach the disk together. A failed write is cut off the
//     segment; if that fails too, the next record starts a new segment. A
//     report written whose later bookkeeping fails (the state, the bound) is
//     kept: Append says so with a *KeptError.
//   - The state file is either the old or the new version after a crash. If
//     it is damaged anyway, the spool starts from "nothing acknowledged" and
//     asks for a resync: every report on disk is sent again, which the
//     collector tolerates (it stores each sequence once).
//   - On overflow the loss and the state are written before the segments
//     are deleted, so a crash between the two steps at worst leaves a
//     segment that is deleted again at the next Open (counted as dropped
//     twice, and its reports, delivered, named as lost although the
//     collector has them: it records no gap for those).
//   - On acknowledgement the segments are deleted before the state is
//     written: on a full disk the state cannot be written until space is
//     freed, and deleting acknowledged reports is safe in either order,
//     since the collector holds them. After a crash in between, Open finds
//     the older acknowledgement and sends again what is left (duplicates,
//     stored once). The newest segment is never deleted without an
//     empty one named after the next sequence taking its place first, and
//     Open takes the sequence before an empty newest segment's name as
//     numbered, so the numbering never goes back below what the collector
//     holds, whether or not the acknowledgement reached the state file. When
//     the state cannot be written even then, the acknowledgement holds in
//     memory (Peek does not return those reports again) and the next write
//     of the state records it; Ack returns the error.
//
// A false record, bytes inside a damaged region that happen to look like a
// valid record, would need two 32-bit checksums to match by chance, and a
// sequence above those before it. Because the header has its own checksum,
// the scan rejects a false magic without reading the payload its length
// claims, so even a region full of magics is scanned in linear time.
//
// # Bound and overflow
//
// When an Append takes the segments over Options.MaxBytes (default
// 256 MiB), the oldest segments are deleted, acknowledged or not, until the
// spool fits; the newest segment is always kept, so the files take at most
// MaxBytes plus one segment. The unacknowledged reports deleted are counted
// (Dropped, Stats) and recorded as a Loss (reason SPOOL_OVERFLOW; one run
// however many segments go, since they go oldest first) that the first
// report kept carries to the collector, which records a coverage gap; and
// NeedsResync turns true until the next Snapshot is appended: the agent
// then calls its tracker's RequestResync, and sends the count as
// Batch.dropped_reports.
//
// # Use
//
// At start the agent opens the spool and numbers its reports from
// NextSequence (the spool's newest sequence, appended or acknowledged, plus
// one), so that sequences keep increasing across restarts. The poll loop
// appends each report and checks NeedsResync; the uplink peeks a batch,
// sends it with the count from Dropped, and acknowledges what the
// collector acknowledged:
//
//	reports, err := sp.Peek(maxReports, maxBytes)
//	dropped, _ := sp.Dropped()
//	resp, err := client.Ingest(ctx, &sessionauditv1.Batch{Reports: reports, DroppedReports: dropped, SentAt: now})
//	err = sp.Ack(resp.GetAcknowledgedSequence(), dropped)
//
// Peek returns only the last of a run of consecutive Heartbeats (the
// protocol lets an agent coalesce them: a Heartbeat's base is the last
// Snapshot or Delta); the earlier ones stay on disk until acknowledged with
// it.
package spool
