package eventlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// segment is one file of the log, named by the index of its first entry.
// Segments never shrink except when recovery truncates a torn tail at Open,
// before anything reads them.
type segment struct {
	first Index
	path  string

	mu sync.Mutex
	// offsets[k] is the byte offset of entry first+k. Filled lazily, as far
	// as something needed; entries only ever get appended.
	offsets []uint32
	// end is the byte offset just past the last entry in offsets.
	end int64
}

// segmentName is tidwall/wal's: 20 decimal digits, so ls order is log order.
func segmentName(first Index) string { return fmt.Sprintf("%020d", uint64(first)) }

// listSegments returns the segment files of dir in log order. It refuses
// tidwall/wal's .START/.END files: they come only from TruncateFront and
// TruncateBack, which this package never calls.
func listSegments(dir string) ([]*segment, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []*segment
	for _, de := range des {
		name := de.Name()
		if len(name) < 20 || !isDigits(name[:20]) {
			continue
		}
		if len(name) > 20 {
			if strings.HasSuffix(name, ".START") || strings.HasSuffix(name, ".END") {
				return nil, fmt.Errorf("%w: unexpected file %s (eventlog never truncates through tidwall/wal)", ErrCorrupt, name)
			}
			continue
		}
		if de.IsDir() {
			continue
		}
		first, err := strconv.ParseUint(name, 10, 64)
		if err != nil || first == 0 {
			return nil, fmt.Errorf("%w: bad segment name %s", ErrCorrupt, name)
		}
		segs = append(segs, &segment{first: Index(first), path: filepath.Join(dir, name)})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].first < segs[j].first })
	for i := 1; i < len(segs); i++ {
		if segs[i].first <= segs[i-1].first {
			return nil, fmt.Errorf("%w: duplicate segment %s", ErrCorrupt, segs[i].path)
		}
	}
	return segs, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// findSegment returns the segment that holds index i: the last one whose
// first index is <= i. segs must be non-empty and segs[0].first <= i.
func findSegment(segs []*segment, i Index) *segment {
	k := sort.Search(len(segs), func(k int) bool { return segs[k].first > i })
	return segs[k-1]
}

// errTorn marks a frame that ends past the end of the file, or a header
// cut short: what a crash in the middle of a write leaves.
var errTorn = errors.New("entry cut short")

// frameReader walks tidwall/wal's framing, uvarint(len) || record, in one
// segment file.
type frameReader struct {
	r    *bufio.Reader
	off  int64 // offset of the next frame
	size int64 // file size
	buf  []byte
}

func newFrameReader(f *os.File, off, size int64, bufSize int) *frameReader {
	return &frameReader{
		r:    bufio.NewReaderSize(io.NewSectionReader(f, off, size-off), bufSize),
		off:  off,
		size: size,
	}
}

// next reads the frame at fr.off. It returns io.EOF at a clean end of file
// and errTorn for a frame cut short; a record longer than the hard limit is
// ErrCorrupt. With readData it returns the record (valid until the next
// call), otherwise it skips it. After an error other than a checksum one,
// fr is unusable.
func (fr *frameReader) next(readData bool) (off int64, rec []byte, err error) {
	off = fr.off
	size, err := binary.ReadUvarint(fr.r)
	switch {
	case err == io.EOF:
		return off, nil, io.EOF
	case err == io.ErrUnexpectedEOF:
		return off, nil, errTorn
	case err != nil:
		return off, nil, fmt.Errorf("%w: bad entry length at byte %d: %v", ErrCorrupt, off, err)
	}
	hdr := int64(uvarintLen(size))
	if size > uint64(fr.size-off-hdr) {
		return off, nil, errTorn
	}
	if size > maxLimitBytes {
		return off, nil, fmt.Errorf("%w: entry at byte %d claims %d bytes", ErrCorrupt, off, size)
	}
	if readData {
		if uint64(cap(fr.buf)) < size {
			fr.buf = make([]byte, size)
		}
		rec = fr.buf[:size]
		if _, err := io.ReadFull(fr.r, rec); err != nil {
			return off, nil, fmt.Errorf("read entry at byte %d: %w", off, err)
		}
	} else if _, err := fr.r.Discard(int(size)); err != nil {
		return off, nil, fmt.Errorf("skip entry at byte %d: %w", off, err)
	}
	fr.off = off + hdr + int64(size)
	return off, rec, nil
}

// offset returns the byte offset of entry i in s, indexing s from its
// last known entry onward if needed, reading f, a handle of s's file that
// the caller already has open. The caller ensures that entry i has been
// wholly written.
func (s *segment) offset(i Index, f *os.File) (int64, error) {
	k := int(i - s.first)
	s.mu.Lock()
	defer s.mu.Unlock()
	if k < len(s.offsets) {
		return int64(s.offsets[k]), nil
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	fr := newFrameReader(f, s.end, fi.Size(), 64<<10)
	for len(s.offsets) <= k {
		off, _, err := fr.next(false)
		if err != nil {
			if err == io.EOF || err == errTorn {
				err = fmt.Errorf("%w: %s ends before index %d", ErrCorrupt, s.path, i)
			}
			return 0, err
		}
		s.offsets = append(s.offsets, uint32(off))
		s.end = fr.off
	}
	return int64(s.offsets[k]), nil
}

// noteWritten indexes entries the writer has just written wholly, at
// offsets offs, from byte start to end, when s is indexed up to start:
// readers following the log then find them without opening and scanning
// the file again (once per group commit).
func (s *segment) noteWritten(start int64, offs []uint32, end int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end != start {
		return // not indexed that far: offset() scans when asked
	}
	s.offsets = append(s.offsets, offs...)
	s.end = end
}

// count returns the number of entries indexed in s so far.
func (s *segment) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.offsets)
}

// badEntry describes where a verifying scan stopped.
type badEntry struct {
	off  int64 // offset of the bad frame
	next int64 // offset of the frame after it, or -1 if the framing broke
	err  error
}

// scanVerify reads s from s.end, checking every record's checksum, and
// indexes the good entries. It stops after max entries (max < 0: no limit),
// at the end of the file, or at the first bad frame, which it returns.
// The caller holds s.mu.
func (s *segment) scanVerify(max int) (*badEntry, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	fr := newFrameReader(f, s.end, fi.Size(), 256<<10)
	for n := 0; max < 0 || n < max; n++ {
		off, rec, err := fr.next(true)
		if err == io.EOF {
			return nil, nil
		}
		if err == errTorn || errors.Is(err, ErrCorrupt) {
			return &badEntry{off: off, next: -1, err: err}, nil
		}
		if err != nil {
			return nil, err
		}
		if err := verifyRecord(rec); err != nil {
			return &badEntry{off: off, next: fr.off, err: err}, nil
		}
		s.offsets = append(s.offsets, uint32(off))
		s.end = fr.off
	}
	return nil, nil
}

// validAfter reports whether any frame from off onward in f carries a record
// with a good checksum.
func validAfter(f *os.File, off, size int64) bool {
	fr := newFrameReader(f, off, size, 256<<10)
	for {
		_, rec, err := fr.next(true)
		if err != nil {
			return false
		}
		if verifyRecord(rec) == nil {
			return true
		}
	}
}

// hasZeroSector reports whether b, which starts at byte off of its file,
// has a 512-byte-aligned sector (clipped to b) that is all zeros: the mark
// of a write that never reached the disk. etcd's wal decoder uses the same
// test (isTornEntry) to tell a torn write from a corrupt record.
func hasZeroSector(b []byte, off int64) bool {
	const sector = 512
	for len(b) > 0 {
		n := sector - int(off%sector)
		if n > len(b) {
			n = len(b)
		}
		zero := true
		for _, c := range b[:n] {
			if c != 0 {
				zero = false
				break
			}
		}
		if zero {
			return true
		}
		b, off = b[n:], off+int64(n)
	}
	return false
}

// syncDir fsyncs a directory so that files created or renamed in it
// survive a machine crash.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
