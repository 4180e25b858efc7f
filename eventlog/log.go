package eventlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/tidwall/wal"
)

// Index is the position of an entry in the log. The first entry is 1; 0
// means none. Ranges are half-open: [from, to).
type Index uint64

// ErrWriteFailed: a write or fsync of the log failed (a full disk, say);
// the error also wraps the cause. The events were not stored; retry later:
// the Log recovers by itself (see Append).
var ErrWriteFailed = errors.New("eventlog: write failed")

// maxBatchBytes bounds how much the writer gathers into one WriteBatch; one
// Append call bigger than that still goes out whole, alone.
const maxBatchBytes = 16 << 20

// Log is an append-only log of Events in a directory of segment files.
//
// All methods are safe for concurrent use. Appends go through one writer
// goroutine that commits whatever callers have queued as one batch with one
// fsync (group commit). Reads never wait for appends: they read the newest
// entries from an in-memory copy (Config.TailBytes) and older ones from the
// segment files directly, up to LastIndex.
type Log struct {
	dir      string
	cfg      Config
	logger   zerolog.Logger
	readOnly bool

	// last is the last index readers may see.
	// Invariant: entries [FirstIndex, last] are wholly written to segment
	// files listed in segs (and, unless read-only, durable).
	last atomic.Uint64
	// closed is set by Close; reads fail with ErrClosed after it.
	closed atomic.Bool

	segMu sync.RWMutex
	segs  []*segment // log order; only appended to after Open

	// tail holds the newest records in memory (nil when read-only or
	// Config.TailBytes < 0). The writer adds a batch to it before
	// publishing the batch in last.
	tail *memTail
	// files keeps segment files open for Read (Config.MaxOpenSegments).
	files *openFiles

	// closeMu is held for reading while an Append enqueues, and for
	// writing by Close, which closes reqs.
	closeMu sync.RWMutex
	closing bool // guarded by closeMu
	// failed holds the write error that stopped appends; the writer clears
	// it when recovery succeeds (see recoverWriter).
	failed atomic.Pointer[error]
	reqs   chan *appendReq
	done   chan struct{} // closed when the writer goroutine returns

	notifyMu sync.Mutex
	notifyCh chan struct{}

	nEvents, nBatches, nSyncs, nBytes atomic.Uint64
	// appended counts events by origin and kind (both below 8: Valid).
	appended [8][8]atomic.Uint64
	// appending counts the Appends between validation and their return
	// (Appending).
	appending atomic.Int64
	// listings counts this log's directory listings (tests: a batch that
	// starts segments must not list the directory).
	listings atomic.Int64

	// bufs recycles the record buffers of Append (*[]byte). A bulk import
	// appends 32 MiB per call; a fresh buffer each time costs clearing it
	// and, as the heap churns, page faults, for a buffer that lives only
	// until the fsync. sync.Pool lets the garbage collector free them when
	// appends stop.
	bufs sync.Pool
	// reads recycles ReadFunc's buffers and events (*readScratch).
	reads sync.Pool

	lock *os.File // dir/LOCK, held while open for writing

	// Owned by the writer goroutine once Open returns.
	w         *wal.Log
	batch     wal.Batch
	batchRoom int      // bytes of records batch has room for (growBatch)
	tailBytes int64    // size of the tail segment, mirroring tidwall/wal's
	offs      []uint32 // commit's scratch: offsets of the batch's records
	recs      [][]byte // commit's scratch: the batch's records
	lastTime  int64    // Unix ns of the last entry

	roMu  sync.Mutex // serialises refresh in read-only mode
	roSeg int        // read-only: index into segs of the segment being followed

	// Owned by the writer goroutine: dropping the cached pages of what is
	// durable (Config.DropWritten). dropNext indexes segs: the first
	// segment whose pages are not all dropped yet, open as dropFile once
	// dropping began in it.
	dropNext   int
	dropFile   *os.File
	dropFailed bool

	// Owned by the writer goroutine: recovery after a failed write.
	failures    int       // failed batches and recoveries since the last success
	lastAttempt time.Time // of recovery
	// afterWriteHook, when set (tests only), runs after each batch is
	// written and its error counts as a failed write (an fsync failure).
	afterWriteHook func() error
}

// recoverInterval is the least time between two recovery attempts after a
// failed write: appends in between fail at once, so a full disk answers
// quickly instead of re-reading the tail segment for every request.
const recoverInterval = 250 * time.Millisecond

type appendReq struct {
	buf  []byte     // the records, back to back
	ends []int      // end of each record in buf
	tags []eventTag // origin and kind of each record, for Appended
	last Index
	err  error
	done chan struct{}
}

// eventTag is an appended event's origin and kind.
type eventTag struct {
	origin Origin
	kind   Kind
}

// Appended returns how many events of origin o and kind k this Log has
// appended since Open (durably, unless NoSync): what the metrics count,
// without a follower reading every event back.
func (l *Log) Appended(o Origin, k Kind) uint64 {
	if !o.Valid() || !k.Valid() {
		return 0
	}
	return l.appended[o][k].Load()
}

// Stats are counters since Open.
type Stats struct {
	Events  uint64 // events appended
	Batches uint64 // tidwall/wal WriteBatch calls (group commits)
	Syncs   uint64 // batches that were fsynced (Batches unless NoSync)
	Bytes   uint64 // record bytes appended
}

func newLog(dir string, cfg Config, readOnly bool) *Log {
	l := &Log{
		dir:      dir,
		cfg:      cfg,
		logger:   cfg.Logger.With().Str("component", "eventlog").Logger(),
		readOnly: readOnly,
		notifyCh: make(chan struct{}),
		files:    newOpenFiles(max(cfg.MaxOpenSegments, 0)),
	}
	if !readOnly {
		l.tail = newMemTail(cfg.TailBytes)
	}
	return l
}

// Open opens the log in dir for appending, creating dir if needed, and
// takes an exclusive lock on it (ErrLocked if another process holds it).
//
// Open recovers from a crash: if the last segment ends in a torn write, or
// its last entries fail their checksums with nothing valid after them, it
// truncates them and logs a Warn with the first index dropped. Such entries
// were never acknowledged: Append returns only after its batch is fsynced.
// A bad entry followed by good ones is damage, not a torn tail: Open then
// fails with ErrCorrupt rather than drop acknowledged events.
func Open(dir string, cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	l := newLog(dir, cfg, false)
	if err := l.open(); err != nil {
		if l.w != nil {
			l.w.Close()
		}
		l.files.close() // open reads the last entry
		unlockDir(l.lock)
		return nil, fmt.Errorf("open log %s: %w", dir, err)
	}
	l.reqs = make(chan *appendReq, 256)
	l.done = make(chan struct{})
	go l.run()
	return l, nil
}

func (l *Log) open() error {
	start := time.Now()
	created := false
	if _, err := os.Stat(l.dir); errors.Is(err, os.ErrNotExist) {
		created = true
	}
	if err := os.MkdirAll(l.dir, 0o750); err != nil {
		return err
	}
	lock, err := lockDir(l.dir)
	if err != nil {
		return err
	}
	l.lock = lock
	segs, err := l.listSegments()
	if err != nil {
		return err
	}
	if len(segs) > 0 {
		if err := l.recoverTail(segs[len(segs)-1]); err != nil {
			return err
		}
	}
	l.w, err = wal.Open(l.dir, &wal.Options{
		NoSync:           l.cfg.NoSync,
		SegmentSize:      l.cfg.SegmentSize,
		LogFormat:        wal.Binary,
		SegmentCacheSize: 1, // we never read through tidwall/wal
		DirPerms:         0o750,
		FilePerms:        0o640,
	})
	if err != nil {
		if errors.Is(err, wal.ErrCorrupt) {
			err = fmt.Errorf("%w: tidwall/wal: %v", ErrCorrupt, err)
		}
		return err
	}
	if len(segs) == 0 {
		// tidwall/wal created the first segment.
		if segs, err = l.listSegments(); err != nil {
			return err
		}
		if len(segs) == 0 {
			return errors.New("tidwall/wal created no segment")
		}
	}
	walLast, err := l.w.LastIndex()
	if err != nil {
		return err
	}
	tail := segs[len(segs)-1]
	if want := uint64(tail.first) + uint64(tail.count()) - 1; walLast != want {
		return fmt.Errorf("%w: tidwall/wal reports last index %d, segment files hold %d", ErrCorrupt, walLast, want)
	}
	l.segs = segs
	l.last.Store(walLast)
	l.dropNext = len(segs) - 1
	// Make the segment files and the directory itself durable.
	if err := syncDir(l.dir); err != nil {
		return err
	}
	if created {
		if err := syncDir(filepath.Dir(filepath.Clean(l.dir))); err != nil {
			return err
		}
	}
	fi, err := os.Stat(tail.path)
	if err != nil {
		return err
	}
	l.tailBytes = fi.Size()
	if walLast > 0 {
		rec, err := l.readRecord(Index(walLast))
		if err != nil {
			return err
		}
		ns, ok := recordTime(rec)
		if !ok {
			return fmt.Errorf("%w: last entry %d has no valid time", ErrCorrupt, walLast)
		}
		l.lastTime = ns
	}
	l.logger.Info().Uint64("first", uint64(l.FirstIndex())).Uint64("last", walLast).
		Int("segments", len(segs)).Dur("took", time.Since(start)).Msg("opened event log")
	return nil
}

// recoverTail verifies every record of the last segment and truncates a
// torn tail (see Open).
func (l *Log) recoverTail(s *segment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	bad, err := s.scanVerify(-1)
	if err != nil || bad == nil {
		return err
	}
	index := s.first + Index(len(s.offsets))
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if bad.next >= 0 && validAfter(f, bad.next, fi.Size()) {
		rec := make([]byte, bad.next-bad.off)
		if _, err := f.ReadAt(rec, bad.off); err != nil {
			return err
		}
		if !hasZeroSector(rec, bad.off) {
			return fmt.Errorf("%w: index %d (%s byte %d): %v; valid entries follow it, so it is not a torn tail",
				ErrCorrupt, index, s.path, bad.off, bad.err)
		}
	}
	if err := f.Truncate(bad.off); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	l.logger.Warn().Uint64("index", uint64(index)).Str("segment", filepath.Base(s.path)).
		Int64("offset", bad.off).Int64("bytes", fi.Size()-bad.off).AnErr("reason", bad.err).
		Msg("truncated torn log tail")
	return nil
}

// OpenReadOnly opens the log in dir for reading while another process may
// be appending to it (grapevine stats, dump). It never writes, truncates
// or locks. It sees the entries appended so far: LastIndex, and
// NewIterator with to == 0, look again for new entries each time. A torn
// or unfinished tail is not served; the writer's next Open repairs it.
// Append returns ErrReadOnly. Notify's channel closes when LastIndex finds
// new entries.
func OpenReadOnly(dir string, cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	l := newLog(dir, cfg, true)
	fi, err := os.Stat(dir)
	if err == nil && !fi.IsDir() {
		err = errors.New("not a directory")
	}
	if err != nil {
		return nil, fmt.Errorf("open log %s read-only: %w", dir, err)
	}
	segs, err := listSegments(dir)
	if err != nil {
		return nil, fmt.Errorf("open log %s read-only: %w", dir, err)
	}
	l.segs = segs
	if len(segs) > 0 {
		l.roSeg = len(segs) - 1
		l.last.Store(uint64(segs[l.roSeg].first) - 1)
	}
	if err := l.refresh(); err != nil {
		l.files.close()
		return nil, fmt.Errorf("open log %s read-only: %w", dir, err)
	}
	return l, nil
}

// refresh, in read-only mode, picks up new segments and verified entries.
func (l *Log) refresh() error {
	l.roMu.Lock()
	defer l.roMu.Unlock()
	segs, err := l.listSegments()
	if err != nil {
		return err
	}
	cur := l.segments()
	if len(segs) < len(cur) {
		return fmt.Errorf("%w: segments disappeared (%d, had %d)", ErrCorrupt, len(segs), len(cur))
	}
	if len(segs) > len(cur) {
		for k := range cur {
			if segs[k].first != cur[k].first {
				return fmt.Errorf("%w: segment %s replaced", ErrCorrupt, cur[k].path)
			}
		}
		l.segMu.Lock()
		l.segs = append(l.segs, segs[len(cur):]...)
		cur = l.segs
		l.segMu.Unlock()
	}
	if len(cur) == 0 {
		return nil
	}
	old := l.last.Load()
	for {
		s := cur[l.roSeg]
		sealed := l.roSeg < len(cur)-1
		s.mu.Lock()
		max := -1
		if sealed {
			max = int(cur[l.roSeg+1].first-s.first) - len(s.offsets)
		}
		bad, err := s.scanVerify(max)
		n := len(s.offsets)
		s.mu.Unlock()
		if err != nil {
			return err
		}
		l.last.Store(uint64(s.first) + uint64(n) - 1)
		if !sealed {
			if bad != nil {
				l.logger.Debug().Uint64("index", uint64(s.first)+uint64(n)).AnErr("reason", bad.err).
					Msg("tail not yet readable")
			}
			break
		}
		if want := int(cur[l.roSeg+1].first - s.first); n != want {
			return fmt.Errorf("%w: %s holds %d entries, the next segment starts at %d", ErrCorrupt, s.path, n, cur[l.roSeg+1].first)
		}
		l.roSeg++
	}
	if l.last.Load() != old {
		l.notify()
	}
	return nil
}

// segments returns the current segment list; callers must not modify it.
func (l *Log) segments() []*segment {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	return l.segs
}

// Append stores events, in order and next to each other, and returns the
// index of the last one. It returns after the events are durable (fsynced,
// unless Config.NoSync), committed together with those of concurrent
// callers in one batch.
//
// Append validates every event first (ErrInvalid, or ErrTooLarge for a
// record over Config.MaxEventBytes) and then stores all or, on error, none
// of them as far as this process can tell. It does not modify the events
// and does not keep them after it returns; their stored Time follows the
// rules on Event.Time and can be read back with Read.
//
// If ctx is done before the events were handed to the writer, Append
// returns ctx.Err() and stores nothing; if it is done while waiting for the
// fsync, Append returns an error wrapping ctx.Err() but the events may
// still be stored. With no events, Append returns 0, nil.
//
// A write or fsync failure (a full disk, say) fails the batch: its events
// are not stored, and the bytes it may have written are truncated before
// anything else is written. Later Appends first recover the writer (at
// most every 250 ms; in between they fail at once with an error wrapping
// ErrWriteFailed and the cause) and succeed as soon as the disk accepts
// writes again: a full disk heals by itself once space is freed. Nothing
// acknowledged before is touched.
func (l *Log) Append(ctx context.Context, events ...*Event) (last Index, err error) {
	req, err := l.enqueue(ctx, events)
	if req == nil || err != nil {
		return 0, err
	}
	select {
	case <-req.done:
		return l.finished(req)
	case <-ctx.Done():
		// The writer may still read buf: leave it to the garbage collector.
		l.appending.Add(-1)
		return 0, fmt.Errorf("append abandoned, the events may still be stored: %w", ctx.Err())
	}
}

// finished returns the writer's answer to req, once done, and recycles its
// buffer (tidwall/wal copied it).
func (l *Log) finished(req *appendReq) (Index, error) {
	l.appending.Add(-1)
	l.putBuf(req.buf)
	return req.last, req.err
}

// AppendQueued is Append without the wait: it validates and encodes the
// events and queues them for the writer, behind everything queued before
// (a caller that queues batches one after the other finds them in the log
// in that order), and returns. wait then returns what Append would have,
// once the events are durable; call it exactly once. A batch queued while
// the writer commits the one before goes out in the next commit, possibly
// with others (one fsync), so a writer of many large batches (a bulk
// import) keeps the log's writer busy instead of waiting for each batch
// before queuing the next.
//
// Errors before the events are queued come back from AppendQueued, as
// from Append, and then nothing was queued (wait is nil); ctx only bounds
// the queuing, not the wait, which ends when the writer has committed the
// batch or failed it (Close commits what is queued).
func (l *Log) AppendQueued(ctx context.Context, events ...*Event) (wait func() (Index, error), err error) {
	req, err := l.enqueue(ctx, events)
	if err != nil {
		return nil, err
	}
	if req == nil {
		return func() (Index, error) { return 0, nil }, nil
	}
	return func() (Index, error) {
		<-req.done
		return l.finished(req)
	}, nil
}

// enqueue validates and encodes events and hands them to the writer. It
// returns nil and no error for no events; otherwise, on success, the
// request, counted in appending until the caller is done waiting.
func (l *Log) enqueue(ctx context.Context, events []*Event) (*appendReq, error) {
	if l.readOnly {
		return nil, ErrReadOnly
	}
	if len(events) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := time.Now()
	size := 0
	for k, e := range events {
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("append event %d of %d: %w", k+1, len(events), err)
		}
		n := e.encodedSize(true)
		if n > l.cfg.MaxEventBytes {
			return nil, fmt.Errorf("append event %d of %d: %w: %d bytes, limit %d", k+1, len(events), ErrTooLarge, n, l.cfg.MaxEventBytes)
		}
		size += n
	}
	l.appending.Add(1)
	req := &appendReq{buf: l.getBuf(size), ends: make([]int, len(events)), tags: make([]eventTag, len(events)), done: make(chan struct{})}
	for k, e := range events {
		req.tags[k] = eventTag{e.Origin, e.Kind}
		t := e.Time
		if t.IsZero() || t.After(now) {
			t = now
		}
		req.buf = e.appendRecord(req.buf, true, t.UnixNano())
		req.ends[k] = len(req.buf)
	}

	l.closeMu.RLock()
	if err := l.appendErr(); err != nil {
		l.closeMu.RUnlock()
		l.appending.Add(-1)
		return nil, err
	}
	select {
	case l.reqs <- req:
		l.closeMu.RUnlock()
		return req, nil
	case <-ctx.Done():
		l.closeMu.RUnlock()
		l.appending.Add(-1)
		return nil, ctx.Err()
	}
}

// Appending returns how many Appends are under way (queued, being written
// or waiting for their fsync). Work that may wait (the Hockeypuck dataset)
// reads it to tell a log that stands still from one whose writer is in a
// long fsync with clients waiting on it.
func (l *Log) Appending() int { return int(l.appending.Load()) }

// pooledBufMax bounds the buffers kept: one Append of a bigger batch
// allocates its own.
const pooledBufMax = 2 * maxBatchBytes

func (l *Log) getBuf(size int) []byte {
	if size <= pooledBufMax {
		if p, _ := l.bufs.Get().(*[]byte); p != nil {
			if cap(*p) >= size {
				return (*p)[:0]
			}
			l.bufs.Put(p)
		}
	}
	return make([]byte, 0, size)
}

func (l *Log) putBuf(b []byte) {
	if cap(b) <= pooledBufMax {
		l.bufs.Put(&b)
	}
}

// appendErr returns why Append must refuse, or nil. The caller holds closeMu.
func (l *Log) appendErr() error {
	if l.closing {
		return ErrClosed
	}
	return nil
}

// run is the writer goroutine: it gathers queued requests into one batch.
func (l *Log) run() {
	defer close(l.done)
	var pending []*appendReq
	for {
		r, ok := <-l.reqs
		if !ok {
			return
		}
		pending = append(pending[:0], r)
		n := len(r.buf)
	gather:
		for n < maxBatchBytes {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					break gather
				}
				pending = append(pending, r)
				n += len(r.buf)
			default:
				break gather
			}
		}
		l.commit(pending)
		clear(pending)
	}
}

// commit writes one batch and answers its requests.
func (l *Log) commit(reqs []*appendReq) {
	if p := l.failed.Load(); p != nil {
		if err := l.recoverWriter(); err != nil {
			for _, r := range reqs {
				r.err = err
				close(r.done)
			}
			return
		}
	}
	last := Index(l.last.Load())
	idx, lastTime := last, l.lastTime
	tail := l.tailBytes
	segSize := int64(l.cfg.SegmentSize)
	var newSegs []Index // segments tidwall/wal will start, mirroring its writeBatch
	if tail > segSize {
		newSegs, tail = append(newSegs, last+1), 0
	}
	var bytes uint64
	// Where the records land in the tail segment, for readers (noteWritten).
	startTail := tail
	offs := l.offs[:0]
	recs := l.recs[:0]
	size := 0
	for _, r := range reqs {
		size += len(r.buf)
	}
	l.growBatch(size)
	for _, r := range reqs {
		start := 0
		for _, end := range r.ends {
			rec := r.buf[start:end]
			start = end
			ns := int64(binary.BigEndian.Uint64(rec[timeOffset:]))
			if ns < lastTime {
				// Keep Time non-decreasing along the log for IndexAtTime.
				binary.BigEndian.PutUint64(rec[timeOffset:], uint64(lastTime))
				body := rec[:len(rec)-crcSize]
				binary.BigEndian.PutUint32(rec[len(body):], crc32.Checksum(body, crcTable))
			} else {
				lastTime = ns
			}
			idx++
			l.batch.Write(uint64(idx), rec)
			recs = append(recs, rec)
			bytes += uint64(len(rec))
			offs = append(offs, uint32(tail))
			tail += int64(uvarintLen(uint64(len(rec))) + len(rec))
			if tail >= segSize {
				newSegs, tail = append(newSegs, idx+1), 0
			}
		}
		r.last = idx
	}
	if err := l.w.WriteBatch(&l.batch); err != nil {
		l.fail(fmt.Errorf("write %d events at index %d: %w", idx-last, last+1, err), reqs)
		return
	}
	if l.afterWriteHook != nil {
		if err := l.afterWriteHook(); err != nil {
			l.fail(fmt.Errorf("sync %d events at index %d: %w", idx-last, last+1, err), reqs)
			return
		}
	}
	if err := l.afterWrite(newSegs, tail); err != nil {
		l.fail(err, reqs)
		return
	}
	if len(newSegs) == 0 && l.tailBytes == tail {
		segs := l.segments()
		segs[len(segs)-1].noteWritten(startTail, offs, tail)
	}
	l.offs = offs[:0]
	l.dropBehind()
	// Before last: a reader that sees the new last finds them in the tail
	// (or, if it looked before, in the files).
	l.tail.add(last+1, recs)
	clear(recs) // do not pin the callers' pooled buffers
	l.recs = recs[:0]
	l.lastTime = lastTime
	l.last.Store(uint64(idx))
	l.nEvents.Add(uint64(idx - last))
	l.nBatches.Add(1)
	for _, r := range reqs {
		for _, t := range r.tags {
			l.appended[t.origin][t.kind].Add(1) // validated by Append
		}
	}
	if !l.cfg.NoSync {
		l.nSyncs.Add(1)
	}
	l.nBytes.Add(bytes)
	if l.failures > 0 {
		l.logger.Warn().Int("failures", l.failures).Uint64("index", uint64(last+1)).Msg("appends resumed after failed writes")
		l.failures = 0
	}
	l.notify()
	for _, r := range reqs {
		close(r.done)
	}
}

// growBatch clears the batch and makes sure it has room for n bytes of
// records. tidwall/wal's Batch.Write grows its buffer by append, a quarter
// at a time: for the first of a bulk import's 3 MB chunks that allocated
// ≈ 5 times the chunk (fresh pages, each a page fault) and copied it ≈ 4
// times. One record of n bytes and a quarter, written and cleared, leaves
// the room behind in one step (Clear keeps the buffer).
func (l *Log) growBatch(n int) {
	l.batch.Clear()
	if n <= l.batchRoom {
		return
	}
	room := n + n/4
	l.batch.Write(0, make([]byte, room))
	l.batch.Clear()
	l.batchRoom = room
}

// afterWrite brings segs up to date after a batch. NB: tidwall/wal never
// fsyncs the directory, so a segment it starts could vanish in a machine
// crash together with the acknowledged entries in it; we fsync the
// directory before acknowledging them. The segment list is predicted by
// mirroring tidwall/wal's cycling rule and checked against the files.
func (l *Log) afterWrite(newSegs []Index, tail int64) error {
	segs := l.segments()
	if len(newSegs) == 0 {
		fi, err := os.Stat(segs[len(segs)-1].path)
		if err != nil {
			return fmt.Errorf("stat tail segment: %w", err)
		}
		if fi.Size() == tail {
			l.tailBytes = tail
			return nil
		}
		l.logger.Error().Int64("bytes", fi.Size()).Int64("want", tail).
			Msg("tail segment size differs from prediction; rereading directory")
	} else if !l.cfg.NoSync {
		if err := syncDir(l.dir); err != nil {
			return fmt.Errorf("sync %s: %w", l.dir, err)
		}
	}
	// tidwall/wal keeps the segment it just left cached; we never read it
	// through tidwall/wal, so free it.
	if err := l.w.ClearCache(); err != nil {
		return err
	}
	if add, ok := predictedSegments(l.dir, newSegs, tail); ok {
		// The files are as predicted: no directory listing (a listing per
		// batch grows with the log, and a bulk import of the SKS keyspace
		// starts a few thousand segments).
		l.segMu.Lock()
		l.segs = append(l.segs, add...)
		l.segMu.Unlock()
		l.tailBytes = tail
		return nil
	}
	found, err := l.listSegments()
	if err != nil {
		return err
	}
	if len(found) < len(segs) {
		return fmt.Errorf("%w: segment files disappeared", ErrCorrupt)
	}
	add := found[len(segs):]
	match := len(add) == len(newSegs)
	for k := range add {
		if match && add[k].first != newSegs[k] {
			match = false
		}
	}
	if !match {
		l.logger.Error().Int("found", len(add)).Int("predicted", len(newSegs)).
			Msg("new segments differ from prediction; using the files")
		if !l.cfg.NoSync {
			if err := syncDir(l.dir); err != nil {
				return fmt.Errorf("sync %s: %w", l.dir, err)
			}
		}
	}
	if len(add) > 0 {
		l.segMu.Lock()
		l.segs = append(l.segs, add...)
		segs = l.segs
		l.segMu.Unlock()
	}
	fi, err := os.Stat(segs[len(segs)-1].path)
	if err != nil {
		return fmt.Errorf("stat tail segment: %w", err)
	}
	l.tailBytes = fi.Size()
	return nil
}

// predictedSegments returns the segments starting at firsts (none: ok is
// false) if each file exists and the last holds tail bytes, as tidwall/wal
// leaves them when it cycled where commit predicted; ok false means the
// directory must be listed.
func predictedSegments(dir string, firsts []Index, tail int64) (add []*segment, ok bool) {
	if len(firsts) == 0 {
		return nil, false
	}
	for k, first := range firsts {
		s := &segment{first: first, path: filepath.Join(dir, segmentName(first))}
		fi, err := os.Stat(s.path)
		if err != nil || !fi.Mode().IsRegular() || k == len(firsts)-1 && fi.Size() != tail {
			return nil, false
		}
		add = append(add, s)
	}
	return add, true
}

// dropBehind drops the cached pages of what is durable now
// (Config.DropWritten): whole the segments sealed since the last call
// (tidwall/wal fsyncs a segment before it starts the next), and the tail
// segment up to its last whole page, which the next batch would otherwise
// have to read back from the disk to continue. Each call asks again from
// the start of the tail segment: the kernel skips a large folio that
// reaches past the range, so that one is dropped on a later call. A
// failure stops dropping (the pages are only left to the kernel).
func (l *Log) dropBehind() {
	if !l.cfg.DropWritten || l.cfg.NoSync || l.dropFailed {
		return
	}
	segs := l.segments()
	for l.dropNext < len(segs) {
		s := segs[l.dropNext]
		sealed := l.dropNext < len(segs)-1
		var n int64 // 0: to the end of a sealed segment
		if !sealed {
			if n = l.tailBytes &^ int64(os.Getpagesize()-1); n == 0 {
				return
			}
		}
		if l.dropFile == nil {
			f, err := os.Open(s.path)
			if err != nil {
				l.stopDropping(err)
				return
			}
			l.dropFile = f
		}
		if err := dropCache(l.dropFile, 0, n); err != nil {
			l.stopDropping(err)
			return
		}
		if !sealed {
			return
		}
		l.dropFile.Close()
		l.dropFile = nil
		l.dropNext++
	}
}

func (l *Log) stopDropping(err error) {
	l.dropFailed = true
	l.logger.Debug().Err(err).Msg("cannot drop written pages from the page cache; leaving them")
	if l.dropFile != nil {
		l.dropFile.Close()
		l.dropFile = nil
	}
}

// fail stops appends after a write error, closes the writer and answers
// reqs. The next commit recovers (recoverWriter).
func (l *Log) fail(err error, reqs []*appendReq) {
	err = fmt.Errorf("%w: %w", ErrWriteFailed, err)
	l.failed.Store(&err)
	l.failures++
	if l.failures == 1 {
		l.logger.Error().Err(err).Msg("append failed; appends resume when a write succeeds again")
	} else {
		l.logger.Debug().Err(err).Int("failures", l.failures).Msg("append failed again")
	}
	if cerr := l.w.Close(); cerr != nil && !errors.Is(cerr, wal.ErrClosed) {
		l.logger.Debug().Err(cerr).Msg("close after failed append")
	}
	l.lastAttempt = time.Now()
	for _, r := range reqs {
		r.err = err
		close(r.done)
	}
}

// recoverWriter makes the log writable again after a failed write: it
// removes the segment files the failed batch started, truncates the tail
// segment to its last acknowledged byte (the failed batch may have written
// part of a record, or whole records that were never fsynced), syncs, and
// reopens tidwall/wal, checking it sees exactly the acknowledged entries.
// It runs in the writer goroutine, at most every recoverInterval; on
// failure the Log stays failed and the next commit tries again.
func (l *Log) recoverWriter() error {
	p := l.failed.Load()
	if time.Since(l.lastAttempt) < recoverInterval {
		return *p
	}
	l.lastAttempt = time.Now()
	err := l.reopenWriter()
	if err != nil {
		l.failures++
		l.logger.Debug().Err(err).Int("failures", l.failures).Msg("log recovery failed")
		return fmt.Errorf("%w (recovery: %v)", *p, err)
	}
	l.failed.Store(nil)
	return nil
}

// listSegments lists the log's directory, counted in listings.
func (l *Log) listSegments() ([]*segment, error) {
	l.listings.Add(1)
	return listSegments(l.dir)
}

func (l *Log) reopenWriter() error {
	segs := l.segments()
	found, err := l.listSegments()
	if err != nil {
		return err
	}
	if len(found) < len(segs) {
		return fmt.Errorf("%w: segment files disappeared", ErrCorrupt)
	}
	for _, s := range found[len(segs):] {
		// Started by the failed batch: it holds only unacknowledged entries.
		// No reader has it open in l.files: it is not in l.segs, and the
		// file that may take its name later gets a segment of its own.
		if err := os.Remove(s.path); err != nil {
			return err
		}
	}
	tail := segs[len(segs)-1]
	f, err := os.OpenFile(tail.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(l.tailBytes); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}
	w, err := wal.Open(l.dir, &wal.Options{
		NoSync:           l.cfg.NoSync,
		SegmentSize:      l.cfg.SegmentSize,
		LogFormat:        wal.Binary,
		SegmentCacheSize: 1,
		DirPerms:         0o750,
		FilePerms:        0o640,
	})
	if err != nil {
		return err
	}
	walLast, err := w.LastIndex()
	if err == nil && walLast != l.last.Load() {
		err = fmt.Errorf("%w: tidwall/wal reports last index %d after recovery, want %d", ErrCorrupt, walLast, l.last.Load())
	}
	if err != nil {
		w.Close()
		return err
	}
	l.w = w
	l.logger.Info().Uint64("last", walLast).Msg("log writer recovered")
	return nil
}

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// notify wakes everyone waiting on Notify.
func (l *Log) notify() {
	l.notifyMu.Lock()
	close(l.notifyCh)
	l.notifyCh = make(chan struct{})
	l.notifyMu.Unlock()
}

// Notify returns a channel that is closed after the next successful
// Append (and on Close), then replaced. To wait for entries after
// index i without missing any: ch := l.Notify(); if l.LastIndex() > i
// { read } else { <-ch }.
func (l *Log) Notify() <-chan struct{} {
	if l.closed.Load() {
		return closedCh
	}
	l.notifyMu.Lock()
	defer l.notifyMu.Unlock()
	return l.notifyCh
}

// FirstIndex returns the index of the first entry, or 0 if the log is
// empty.
func (l *Log) FirstIndex() Index {
	if l.lastIndex() == 0 {
		return 0
	}
	segs := l.segments()
	return segs[0].first
}

// LastIndex returns the index of the last entry, or 0 if the log is empty.
// In read-only mode it first looks for entries appended since the last
// look.
func (l *Log) LastIndex() Index {
	if l.readOnly && !l.closed.Load() {
		if err := l.refresh(); err != nil {
			l.logger.Warn().Err(err).Msg("refresh read-only log")
		}
	}
	return l.lastIndex()
}

func (l *Log) lastIndex() Index { return Index(l.last.Load()) }

// SizeBytes returns the size on disk of all segment files.
func (l *Log) SizeBytes() int64 {
	var n int64
	for _, s := range l.segments() {
		if fi, err := os.Stat(s.path); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// Stats returns counters since Open.
func (l *Log) Stats() Stats {
	return Stats{
		Events:  l.nEvents.Load(),
		Batches: l.nBatches.Load(),
		Syncs:   l.nSyncs.Load(),
		Bytes:   l.nBytes.Load(),
	}
}

// Dir returns the directory of the log.
func (l *Log) Dir() string { return l.dir }

// Close stops appends, waits for the writer to finish the batches already
// queued, fsyncs and closes the files (a segment file that a Read still
// reads closes when that Read returns). Later calls to any method return
// ErrClosed; Close itself returns ErrClosed the second time. After a write
// failure that was not recovered from, Close returns nil: that failure was
// returned to Append, and the next Open truncates whatever it left.
func (l *Log) Close() error {
	if l.readOnly {
		if !l.closed.CompareAndSwap(false, true) {
			return ErrClosed
		}
		var err error
		if cerr := l.files.close(); cerr != nil {
			err = fmt.Errorf("close log %s: %w", l.dir, cerr)
		}
		l.notify()
		return err
	}
	l.closeMu.Lock()
	if l.closing {
		l.closeMu.Unlock()
		return ErrClosed
	}
	l.closing = true
	close(l.reqs)
	l.closeMu.Unlock()
	<-l.done

	var err error
	if l.dropFile != nil {
		l.dropFile.Close()
		l.dropFile = nil
	}
	if l.failed.Load() == nil {
		if cerr := l.w.Close(); cerr != nil && !errors.Is(cerr, wal.ErrClosed) {
			err = fmt.Errorf("close log %s: %w", l.dir, cerr)
		}
	}
	l.closed.Store(true)
	if cerr := l.files.close(); cerr != nil && err == nil {
		err = fmt.Errorf("close log %s: %w", l.dir, cerr)
	}
	if uerr := unlockDir(l.lock); uerr != nil && err == nil {
		err = uerr
	}
	l.notify()
	l.logger.Info().Uint64("last", l.last.Load()).Msg("closed event log")
	return err
}

var _ io.Closer = (*Log)(nil)
