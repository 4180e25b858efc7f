package eventlog

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// segWrite is one batch on its way into the segment files: the writer
// goroutine frames its records into buf (uvarint(len) || record, one copy)
// and writes buf with one write(2) per segment, then one fsync. A record
// that brings the segment to Config.SegmentSize or more ends it: the file
// is written and fsynced, and the next record goes into a new segment
// named by its index. The batch changes nothing in Log until commit
// publishes it; on error the Log's recovery truncates what it wrote.
//
// The format and the segment names are tidwall/wal's (Binary format), which
// wrote the log before: logs written by either read the same.
type segWrite struct {
	l        *Log
	seg      *segment   // the segment being written
	f        *os.File   // its file; nil if starting the next one failed
	tail     int64      // seg's size once buf is written
	buf      []byte     // frames not yet written to f
	dirty    bool       // f has writes not yet fsynced
	segStart int64      // where this batch's entries in seg start
	offs     []uint32   // offsets in seg of this batch's entries
	started  []*segment // segments this batch started
}

// add frames the record of entry idx. When that fills the segment, it
// writes and syncs it and starts the next one at idx+1.
func (w *segWrite) add(rec []byte, idx Index) error {
	w.offs = append(w.offs, uint32(w.tail))
	n := len(w.buf)
	w.buf = binary.AppendUvarint(w.buf, uint64(len(rec)))
	w.buf = append(w.buf, rec...)
	w.tail += int64(len(w.buf) - n)
	if w.tail >= int64(w.l.cfg.SegmentSize) {
		return w.cycle(idx + 1)
	}
	return nil
}

// flush writes buf to the current segment and fsyncs it (unless NoSync).
func (w *segWrite) flush() error {
	if len(w.buf) > 0 {
		if _, err := w.f.Write(w.buf); err != nil {
			return err
		}
		w.buf, w.dirty = w.buf[:0], true
	}
	if w.dirty && !w.l.cfg.NoSync {
		if err := w.f.Sync(); err != nil {
			return err
		}
	}
	w.dirty = false
	return nil
}

// cycle ends the current segment and starts one whose first entry is
// first. The caller syncs the directory before acknowledging entries in it.
func (w *segWrite) cycle(first Index) error {
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.f.Close(); err != nil {
		w.f = nil
		return err
	}
	w.f = nil
	s, f, err := createSegment(w.l.dir, first)
	if err != nil {
		return err
	}
	w.seg, w.f, w.tail, w.segStart, w.offs = s, f, 0, 0, w.offs[:0]
	w.started = append(w.started, s)
	return nil
}

// createSegment creates the empty segment file whose first entry is first,
// open for appending. It fails if the file exists: the writer never
// overwrites a segment (recovery removes those of a failed batch first).
func createSegment(dir string, first Index) (*segment, *os.File, error) {
	path := filepath.Join(dir, segmentName(first))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("create segment: %w", err)
	}
	return &segment{first: first, path: path}, f, nil
}

// openForAppend opens the tail segment for the writer.
func openForAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
}
