package eventlog

import "sync"

// memTail holds copies of the records most recently appended, up to a
// bound in bytes, so that readers following the log (the projections, after
// every group commit) get them from memory: no open, stat or read of a
// segment file for what was written a moment ago. Readers fall back to the
// files for anything older.
//
// Records in the tail are never modified after the writer publishes them:
// readers may hand out slices of them (Iterator events alias them; see the
// contract on Iterator). A record is dropped from the window by forgetting
// it, never by reusing its memory, so a reader holding one is unaffected.
type memTail struct {
	max int // bound on the bytes of the records in the window

	mu sync.RWMutex
	// first is the index of recs[0]. Invariant: recs holds entries
	// [first, first+len(recs)), each wholly written and durable.
	first Index
	recs  [][]byte
	bytes int // sum of len(recs[k])

	// chunk is the unused rest of the memory records are copied into
	// (writer only). Copying many small records into one chunk costs one
	// allocation per chunk instead of one per record.
	chunk []byte
}

const (
	// tailChunkBytes is the allocation unit of the tail's record copies.
	tailChunkBytes = 256 << 10
	// tailOwnAlloc: records at least this large get their own allocation,
	// so that a big one does not leave most of a chunk unused.
	tailOwnAlloc = tailChunkBytes / 4
)

func newMemTail(max int) *memTail {
	if max <= 0 {
		return nil
	}
	return &memTail{max: max}
}

// get returns the record of entry i if the window holds it. The record is
// read-only.
func (t *memTail) get(i Index) ([]byte, bool) {
	if t == nil {
		return nil, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if i < t.first || i-t.first >= Index(len(t.recs)) {
		return nil, false
	}
	return t.recs[i-t.first], true
}

// add copies the records of entries first, first+1, ... into the window,
// dropping the oldest entries beyond the bound. Only the writer calls it,
// after the records are durable and before it publishes them (Log.last).
// Records that do not directly follow the window start it again.
//
// A batch bigger than the bound (a bulk import's 32 MiB Append) empties
// the window instead: copying its last few MiB would cost the import ≈ 15 %
// of its append CPU (fresh memory for every copy), for readers that then
// read most of the batch from the files anyway.
func (t *memTail) add(first Index, recs [][]byte) {
	if t == nil || len(recs) == 0 {
		return
	}
	n := 0
	for _, rec := range recs {
		n += len(rec)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if n > t.max || first != t.first+Index(len(t.recs)) {
		clear(t.recs)
		t.recs, t.bytes = t.recs[:0], 0
		t.first = first
		if n > t.max {
			t.first += Index(len(recs))
			return
		}
	}
	for _, rec := range recs {
		t.recs = append(t.recs, t.copyRecord(rec))
		t.bytes += len(rec)
	}
	drop := 0
	for t.bytes > t.max {
		t.bytes -= len(t.recs[drop])
		t.recs[drop] = nil // let its chunk go once readers let go
		drop++
	}
	if drop > 0 {
		// The slice's array is reallocated (with only the live entries)
		// when append outgrows it, so it stays proportional to the window.
		t.recs = t.recs[drop:]
		t.first += Index(drop)
	}
}

// copyRecord returns a copy of rec in memory no one else writes to.
func (t *memTail) copyRecord(rec []byte) []byte {
	if len(rec) >= tailOwnAlloc {
		return append([]byte(nil), rec...)
	}
	if len(t.chunk) < len(rec) {
		t.chunk = make([]byte, tailChunkBytes)
	}
	c := t.chunk[:len(rec):len(rec)]
	copy(c, rec)
	t.chunk = t.chunk[len(rec):]
	return c
}

// window returns the entries the tail holds, [first, end), for tests and
// stats.
func (t *memTail) window() (first, end Index) {
	if t == nil {
		return 0, 0
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.first, t.first + Index(len(t.recs))
}
