// Package eventlog is grapevine's write-ahead log: every key submission
// (uploaded over HKP, fetched by recon, received by mail, loaded from a
// dump) is appended here first, and everything else is derived from it.
// Projections remember the last Index they applied and follow the log with
// NewIterator and Notify; a dump is a replay up to an Index.
//
// It owns the Event type and its versioned, checksummed encoding; Append,
// which returns only after an fsync and commits concurrent callers
// together; Read, iteration over half-open ranges [from, to), IndexAtTime;
// and recovery when the log is opened. It imports no grapevine package.
//
// # Use
//
//	l, err := eventlog.Open(dir, cfg)
//	...
//	last, err := l.Append(ctx, &eventlog.Event{
//		Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Key: key,
//	})
//	// the key is durable at index last: answer 200
//
// A follower (the projection runner):
//
//	for {
//		ch := l.Notify() // before LastIndex, so no append is missed
//		if l.LastIndex() > applied {
//			it := l.NewIterator(applied+1, 0)
//			for { i, e, err := it.Next(); if err == io.EOF { break } ...; applied = i }
//		} else {
//			select { case <-ch: case <-ctx.Done(): return }
//		}
//	}
//
// # Storage
//
// The log is a directory of segment files written by github.com/tidwall/wal
// v1.2.1 (binary format), plus a LOCK file that Open holds with flock(2).
// A segment is named by the index of its first entry as 20 decimal digits
// (00000000000000000001), so ls order is log order. A segment grows to about
// Config.SegmentSize, overrunning it by at most one entry: the entry that
// brings it to SegmentSize or more is its last, and the next segment
// starts at once. A segment file is a sequence of frames:
//
//	frame  = uvarint(len(record)) || record        (tidwall/wal's framing)
//
// tidwall/wal checks nothing inside a frame, so every record carries its
// own checksum:
//
//	record = version:1 || kind:1 || field* || crc32c:4
//	field  = uvarint(tag) || uvarint(len(value)) || value
//
//	version  format version, 1. A reader refuses a version it does not know
//	         (ErrUnknownVersion); a change that old readers may not ignore
//	         bumps it.
//	kind     Event.Kind.
//	fields   in strictly increasing tag order, each at most once; an empty
//	         value is left out. Readers skip tags they do not know, so a
//	         later version may add fields without bumping the version.
//	crc32c   CRC-32C (Castagnoli) of all preceding bytes of the record,
//	         big-endian.
//
//	tag  field    value
//	1    Time     8 bytes: Unix time in nanoseconds, big-endian int64 (UTC).
//	              Append always writes it, first, so in records it wrote the
//	              time sits at bytes 4..11 of the record.
//	2    Origin   1 byte: Event.Origin
//	3    Peer     UTF-8 bytes
//	4    Key      binary OpenPGP packets, as submitted
//	5    Target   fingerprint bytes
//	6    Reason   UTF-8 bytes
//
// For example, a KeySubmitted event from HKP with a 3-byte key:
//
//	01 01                        version 1, kind 1
//	01 08 17 9a 3c 5e 00 00 00 00 time
//	02 01 01                     origin hkp
//	04 03 99 01 0d               key
//	xx xx xx xx                  crc32c
//
// # Durability and recovery
//
// Append returns after tidwall/wal has written the batch and fsynced the
// segment file; when a batch starts a new segment, the directory is
// fsynced too before anyone is told (tidwall/wal does not do that). A
// failed write or fsync (a full disk) fails its batch with ErrWriteFailed.
// tidwall/wal does not roll back its in-memory tail, so the writer closes
// it, and before the next batch removes the segments the failed batch
// started, truncates the tail segment to its last acknowledged byte and
// reopens it (at most every 250 ms): appends resume by themselves once the
// disk takes writes again, and nothing acknowledged is touched.
//
// With Config.DropWritten (a bulk import) the writer then asks the kernel
// to drop the pages of what is durable from the page cache
// (POSIX_FADV_DONTNEED, on a descriptor of its own opened by path): the
// segments sealed since the last batch whole, the tail segment up to its
// last whole page. Only clean pages go, so what is on the disk is what it
// was; the freed pages are what the writer's next batches, and whatever
// else the process writes, are then given.
//
// # Reading
//
// Readers never wait for the writer. A Log opened for appending keeps a
// copy of the newest records in memory (Config.TailBytes, 4 MiB): the
// writer adds each batch to it after the fsync and before LastIndex shows
// the batch. Iterators and Read serve entries in that window from memory,
// with no file opened or read, which is what the projections following the
// log ask for after every group commit; older entries come from the segment
// files. A batch bigger than the window (a bulk import) empties it.
// Records in the window are never changed or reused, so an Iterator's
// events may alias them (read-only, see Iterator); Read copies. Read keeps
// the segment files it reads open for the next reads, the least recently
// read closed first (Config.MaxOpenSegments, 256), so that a random read
// costs two preads rather than an open and a close as well; an Iterator
// opens its file for itself.
//
// Open verifies every record of the last segment. Frames cut short and
// records that fail their checksum at the end of it are a torn write of a
// batch that was never acknowledged: Open truncates them and logs a Warn
// with the first index dropped. A bad record followed by good ones means
// damage, and Open fails with ErrCorrupt, unless the bad record holds an
// all-zero 512-byte sector (a page that never reached the disk, as etcd's
// wal judges it). Older segments were fsynced before the next one started
// and are checked when read.
//
// OpenReadOnly reads the same files while the daemon appends, without
// locking or writing, and never serves a frame that is cut short or fails
// its checksum.
//
// Event times never decrease along the log (Append raises an older time to
// the previous entry's), which lets IndexAtTime binary-search.
package eventlog
