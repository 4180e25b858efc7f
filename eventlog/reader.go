package eventlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"time"
)

// segmentFor returns the segment holding index i, which the caller has
// checked is in [1, last].
func (l *Log) segmentFor(i Index) (*segment, error) {
	segs := l.segments()
	if len(segs) == 0 || i < segs[0].first {
		return nil, fmt.Errorf("%w: %d", ErrNotFound, i)
	}
	return findSegment(segs, i), nil
}

// readRecord returns the record of entry i, verified against its checksum
// (unless it comes from the tail, which holds only verified records, and
// which callers must not modify).
func (l *Log) readRecord(i Index) ([]byte, error) {
	rec, _, err := l.readShared(i)
	return rec, err
}

// readShared is readRecord, also reporting whether rec is the tail's.
func (l *Log) readShared(i Index) (rec []byte, shared bool, err error) {
	return l.readInto(i, nil)
}

// readInto is readShared reading a record from a file into *buf, when buf
// is not nil: a buffer of frameReadAhead made on the first read from a
// file (a record of the tail needs none) and grown for a larger record,
// for the caller to reuse. With buf nil the record is read into new
// memory of its size.
func (l *Log) readInto(i Index, buf *[]byte) (rec []byte, shared bool, err error) {
	if i == 0 || i > l.lastIndex() {
		if !l.readOnly || i == 0 || i > l.LastIndex() {
			return nil, false, fmt.Errorf("%w: %d", ErrNotFound, i)
		}
	}
	if rec, ok := l.tail.get(i); ok {
		return rec, true, nil
	}
	s, err := l.segmentFor(i)
	if err != nil {
		return nil, false, err
	}
	h, err := l.files.acquire(s)
	if err != nil {
		return nil, false, err
	}
	defer l.files.release(h)
	f := h.f
	off, err := s.offset(i, f)
	if err != nil {
		return nil, false, err
	}
	// With a buffer, one read of the frame's header and, for all but
	// large records, the record after it; otherwise (or when it did not
	// fit) the header and then the record.
	var size uint64
	var m int
	if buf != nil {
		if cap(*buf) < frameReadAhead {
			*buf = make([]byte, 0, frameReadAhead)
		}
		win := (*buf)[:frameReadAhead]
		n, err := f.ReadAt(win, off)
		if n == 0 && err != nil {
			return nil, false, err
		}
		if size, m = binary.Uvarint(win[:n]); m > 0 && uint64(n-m) >= size {
			rec = win[m : m+int(size)]
		}
	} else {
		var hdr [binary.MaxVarintLen64]byte
		n, err := f.ReadAt(hdr[:], off)
		if n == 0 && err != nil {
			return nil, false, err
		}
		size, m = binary.Uvarint(hdr[:n])
	}
	if m <= 0 || size > maxLimitBytes {
		return nil, false, fmt.Errorf("%w: bad entry length at %s byte %d", ErrCorrupt, s.path, off)
	}
	if rec == nil {
		switch {
		case buf == nil:
			rec = make([]byte, size)
		case uint64(cap(*buf)) >= size:
			rec = (*buf)[:size]
		default:
			rec = make([]byte, size)
			*buf = rec[:0] // grown: kept for the next read
		}
		if _, err := f.ReadAt(rec, off+int64(m)); err != nil {
			if err == io.EOF {
				err = fmt.Errorf("%w: entry at %s byte %d cut short", ErrCorrupt, s.path, off)
			}
			return nil, false, err
		}
	}
	if err := verifyRecord(rec); err != nil {
		return nil, false, err
	}
	return rec, false, nil
}

// frameReadAhead is how much readInto reads at once into a buffer:
// the frame of a typical key (a few KB) in one read.
const frameReadAhead = 16 << 10

// Read returns entry i. It returns ErrNotFound if i is outside
// [FirstIndex, LastIndex], and an error wrapping ErrCorrupt if the record
// fails its checksum. Read does not wait for appends in progress.
func (l *Log) Read(i Index) (*Event, error) {
	if l.closed.Load() {
		return nil, ErrClosed
	}
	rec, shared, err := l.readShared(i)
	if err != nil {
		return nil, fmt.Errorf("read index %d: %w", i, err)
	}
	e := new(Event)
	// Unlike an Iterator's, Read's events are the caller's to modify: a
	// record of the tail is copied.
	if err := e.decode(rec, shared); err != nil {
		return nil, fmt.Errorf("read index %d: %w", i, err)
	}
	return e, nil
}

// ReadFunc calls fn with entry i read in place, without the copy Read
// makes: the event's byte slices alias the log's memory (the in-memory
// tail, or a buffer recycled after fn returns), so fn must neither modify
// nor keep them. Errors are Read's; on an error fn is not called. A
// keyserver armoring a stored key for op=get needs its bytes only for the
// length of the call.
func (l *Log) ReadFunc(i Index, fn func(e *Event)) error {
	if l.closed.Load() {
		return ErrClosed
	}
	sc, _ := l.reads.Get().(*readScratch)
	if sc == nil {
		sc = new(readScratch)
	}
	defer func() {
		sc.ev = Event{} // drop the references into the tail
		if cap(sc.buf) <= maxPooledReadBytes {
			l.reads.Put(sc)
		}
	}()
	rec, _, err := l.readInto(i, &sc.buf)
	if err != nil {
		return fmt.Errorf("read index %d: %w", i, err)
	}
	if err := sc.ev.decode(rec, false); err != nil {
		return fmt.Errorf("read index %d: %w", i, err)
	}
	fn(&sc.ev)
	return nil
}

// readScratch is what ReadFunc recycles: the buffer a record is read into
// and the event decoded from it, which fn gets a pointer to (a fresh one
// would escape to the heap on every read).
type readScratch struct {
	buf []byte
	ev  Event
}

// maxPooledReadBytes bounds the buffers ReadFunc keeps for reuse: most
// keys are a few KB, and one rare key of megabytes should not stay
// allocated per pooled buffer.
const maxPooledReadBytes = 64 << 10

// IndexAtTime returns the last index whose event Time is <= t, or 0 if
// there is none. It relies on Time never decreasing along the log, which
// Append ensures, and reads O(log n) entries.
func (l *Log) IndexAtTime(t time.Time) (Index, error) {
	if l.closed.Load() {
		return 0, ErrClosed
	}
	last := l.LastIndex()
	if last == 0 || t.Before(minTime) {
		return 0, nil
	}
	if t.After(maxTime) {
		return last, nil
	}
	tn := t.UnixNano()
	var ferr error
	after := func(i Index) bool { // reports whether entry i is later than t
		if ferr != nil {
			return true
		}
		rec, err := l.readRecord(i)
		if err != nil {
			ferr = fmt.Errorf("index at time: read index %d: %w", i, err)
			return true
		}
		ns, ok := recordTime(rec)
		if !ok {
			ferr = fmt.Errorf("index at time: %w: index %d has no valid time", ErrCorrupt, i)
			return true
		}
		return ns > tn
	}
	// Find the segment first, reading only first entries, then search in it.
	segs := l.segments()
	for len(segs) > 0 && segs[len(segs)-1].first > last {
		segs = segs[:len(segs)-1] // an empty tail segment
	}
	k := sort.Search(len(segs), func(k int) bool { return after(segs[k].first) }) - 1
	if ferr != nil {
		return 0, ferr
	}
	if k < 0 {
		return 0, nil
	}
	lo, hi := segs[k].first, last // search [lo, hi]
	if k+1 < len(segs) {
		hi = segs[k+1].first - 1
	}
	j := sort.Search(int(hi-lo+1), func(j int) bool { return after(lo + Index(j)) })
	if ferr != nil {
		return 0, ferr
	}
	return lo + Index(j) - 1, nil
}

// Iterator reads entries [from, to) in order. It is not safe for
// concurrent use. Errors are sticky: after Next returns one, it returns
// the same error again.
//
// The events an Iterator returns belong to the caller, but their Key and
// Target slices may share backing arrays with other events, from this
// Iterator and, for the newest entries, from the Log's in-memory tail that
// every reader shares: treat them as read-only. (A write would not go
// unnoticed: other readers of that entry would fail its checksum with
// ErrCorrupt.)
type Iterator struct {
	l        *Log
	next, to Index
	seg      *segment
	segEnd   Index // first index after seg, or math.MaxUint64 for the tail
	f        *os.File
	r        *bufio.Reader
	off      int64 // file offset of the next frame
	size     int64 // file size when opened
	slab     []byte
	err      error
	diskOnly bool // never serve from the Log's in-memory tail
}

const (
	iterBufBytes  = 256 << 10
	slabBytes     = 256 << 10
	slabMaxRecord = 16 << 10 // larger records get their own allocation
)

// NewIterator returns an iterator over [from, to). from == 0 means the
// first entry; to == 0 means LastIndex()+1 at creation, and a larger to is
// also cut to LastIndex()+1 at creation, so an iterator never waits for or
// sees later appends. Call Close if you stop before Next returns an error.
func (l *Log) NewIterator(from, to Index) *Iterator {
	it := &Iterator{l: l}
	if l.closed.Load() {
		it.err = ErrClosed
		return it
	}
	last := l.LastIndex()
	if first := l.FirstIndex(); from < first {
		from = first
	}
	if from == 0 {
		from = 1
	}
	if to == 0 || to > last+1 {
		to = last + 1
	}
	it.next, it.to = from, to
	return it
}

// NewDiskIterator is NewIterator reading every entry from the segment
// files, none from the in-memory copy of the newest ones (Config.TailBytes):
// for verifying what is on disk (grapevine check), where a copy made
// before the disk damaged the file would hide the damage.
func (l *Log) NewDiskIterator(from, to Index) *Iterator {
	it := l.NewIterator(from, to)
	it.diskOnly = true
	return it
}

// Next returns the next entry and its index, or io.EOF after the last
// entry of the range.
func (it *Iterator) Next() (Index, *Event, error) {
	if it.err != nil {
		return 0, nil, it.err
	}
	if it.l.closed.Load() {
		return it.fail(ErrClosed)
	}
	if it.next >= it.to {
		return it.fail(io.EOF)
	}
	if it.f != nil && it.next >= it.segEnd {
		it.closeFile()
	}
	var rec []byte
	if it.f == nil && !it.diskOnly {
		// Between files: the entry may be in the Log's in-memory tail.
		// Once reading a file, keep to it up to its end: its buffered
		// reads are as cheap, and the tail may move on meanwhile.
		rec, _ = it.l.tail.get(it.next)
	}
	if rec == nil {
		if it.f == nil {
			if err := it.openSegment(); err != nil {
				return it.fail(fmt.Errorf("iterate at index %d: %w", it.next, err))
			}
		}
		var err error
		if rec, err = it.readFrame(); err != nil {
			return it.fail(fmt.Errorf("iterate at index %d: %w", it.next, err))
		}
	}
	e := new(Event)
	if err := e.decode(rec, false); err != nil {
		return it.fail(fmt.Errorf("iterate at index %d: %w", it.next, err))
	}
	i := it.next
	it.next++
	return i, e, nil
}

func (it *Iterator) fail(err error) (Index, *Event, error) {
	it.err = err
	it.closeFile()
	return 0, nil, err
}

func (it *Iterator) closeFile() {
	if it.f != nil {
		it.f.Close()
		it.f = nil
	}
}

// openSegment positions the iterator at it.next in the segment holding it.
func (it *Iterator) openSegment() error {
	it.closeFile()
	s, err := it.l.segmentFor(it.next)
	if err != nil {
		return err
	}
	segEnd := Index(math.MaxUint64)
	segs := it.l.segments()
	if k := sort.Search(len(segs), func(k int) bool { return segs[k].first > s.first }); k < len(segs) {
		segEnd = segs[k].first
	}
	f, err := os.Open(s.path)
	if err != nil {
		return err
	}
	off, err := s.offset(it.next, f)
	if err != nil {
		f.Close()
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	it.seg, it.segEnd, it.f = s, segEnd, f
	it.off, it.size = off, fi.Size()
	sr := io.NewSectionReader(f, off, it.size-off)
	// No bigger than what is there to read: a projection following the
	// log opens an iterator for every group commit, a few KiB, and a
	// fresh 256 KiB buffer each time (cleared, then garbage) cost more
	// CPU than the upload handler itself.
	if want := int(min(iterBufBytes, max(it.size-off, 16))); it.r == nil || it.r.Size() < want {
		it.r = bufio.NewReaderSize(sr, want)
	} else {
		it.r.Reset(sr)
	}
	return nil
}

// readFrame reads the record at it.off into memory the event may keep.
func (it *Iterator) readFrame() ([]byte, error) {
	size, err := binary.ReadUvarint(it.r)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			err = fmt.Errorf("%w: %s ends at byte %d", ErrCorrupt, it.seg.path, it.off)
		}
		return nil, err
	}
	hdr := int64(uvarintLen(size))
	if size > maxLimitBytes || size > uint64(it.size-it.off-hdr) {
		return nil, fmt.Errorf("%w: bad entry length %d at %s byte %d", ErrCorrupt, size, it.seg.path, it.off)
	}
	var rec []byte
	if size > slabMaxRecord {
		rec = make([]byte, size)
	} else {
		if uint64(len(it.slab)) < size {
			// Likewise no bigger than the rest of the segment file.
			it.slab = make([]byte, max(int64(size), min(slabBytes, it.size-it.off)))
		}
		rec, it.slab = it.slab[:size:size], it.slab[size:]
	}
	if _, err := io.ReadFull(it.r, rec); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
			err = fmt.Errorf("%w: entry at %s byte %d cut short", ErrCorrupt, it.seg.path, it.off)
		}
		return nil, err
	}
	it.off += hdr + int64(size)
	return rec, nil
}

// Close releases the iterator's file. Next returns ErrClosed afterwards,
// unless it had already returned an error.
func (it *Iterator) Close() error {
	if it.err == nil {
		it.err = ErrClosed
	}
	it.closeFile()
	return nil
}
