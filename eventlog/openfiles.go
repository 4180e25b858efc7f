package eventlog

import (
	"container/list"
	"os"
	"sync"
)

// openFiles keeps segment files open for Read, so that a random read of a
// sealed segment costs two preads instead of an open, two preads and a
// close (BenchmarkReadRandom: ≈ 25 µs before, ≈ 10 µs after). It caches
// at most keep handles, evicting the least recently used.
//
// Handles are counted: acquire returns one in use, and the caller must
// release it. A handle evicted or closed while in use stays open
// until its last user releases it, so a read in progress never finds its
// file closed under it. *os.File's ReadAt is safe for concurrent use, so
// readers share a handle.
//
// Keys are *segment, not paths: a segment file the writer removes after a
// failed write (reopenWriter) was never in the Log's segment list, and the
// file that may later take its name gets a new *segment, so a cached
// handle never reads a file that has been replaced. NB: a read-only Log
// can list such a file of the writer's process before its removal, as it
// could before this cache; what it reads there, with a handle kept or
// not, are entries the writer never acknowledged.
type openFiles struct {
	// keep bounds the handles cached (idle or in use); 0: none, every
	// acquire opens the file and its release closes it. Handles evicted
	// while in use stay open until released, so up to keep plus the reads
	// in progress are open at once.
	keep int

	mu     sync.Mutex
	closed bool
	byseg  map[*segment]*list.Element // of *openFile, in lru
	lru    list.List                  // most recently acquired first
	open   int                        // handles open: cached, or in use after eviction

	// Counted for tests (OpenSegments): acquires served by a cached
	// handle, and files opened.
	hits, opens int
}

// openFile is one handle of a segment file.
type openFile struct {
	seg *segment
	f   *os.File
	// refs counts the callers of acquire that have not released it yet.
	refs int
	// cached reports whether it is in byseg; once not, the last release
	// closes it.
	cached bool
}

func newOpenFiles(keep int) *openFiles {
	return &openFiles{keep: keep, byseg: make(map[*segment]*list.Element)}
}

// acquire returns a handle of s's file for reading. The caller must call
// release when done with it, and must not close it. After close, acquire
// returns ErrClosed.
func (c *openFiles) acquire(s *segment) (*openFile, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if e, ok := c.byseg[s]; ok {
		h := e.Value.(*openFile)
		h.refs++
		c.lru.MoveToFront(e)
		c.hits++
		c.mu.Unlock()
		return h, nil
	}
	c.mu.Unlock()

	// Open without the lock: other readers' hits need not wait for it.
	f, err := os.Open(s.path)
	if err != nil {
		return nil, err
	}

	c.mu.Lock()
	c.opens++
	if c.closed {
		c.mu.Unlock()
		f.Close()
		return nil, ErrClosed
	}
	if e, ok := c.byseg[s]; ok {
		// Another reader opened it meanwhile: share theirs.
		h := e.Value.(*openFile)
		h.refs++
		c.lru.MoveToFront(e)
		c.mu.Unlock()
		f.Close()
		return h, nil
	}
	h := &openFile{seg: s, f: f, refs: 1}
	c.open++
	var evicted []*os.File
	if c.keep > 0 {
		h.cached = true
		c.byseg[s] = c.lru.PushFront(h)
		for c.lru.Len() > c.keep {
			if f := c.uncache(c.lru.Back()); f != nil {
				evicted = append(evicted, f)
			}
		}
	}
	c.mu.Unlock()
	closeAll(evicted)
	return h, nil
}

// release ends a use of h begun by acquire.
func (c *openFiles) release(h *openFile) {
	c.mu.Lock()
	h.refs--
	var f *os.File
	if h.refs == 0 && !h.cached {
		f = h.f
		c.open--
	}
	c.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

// uncache removes e from the cache and returns its file if nobody uses it,
// for the caller to close once it has unlocked c.mu; a handle in use is
// closed by its last release. The caller holds c.mu.
func (c *openFiles) uncache(e *list.Element) *os.File {
	h := c.lru.Remove(e).(*openFile)
	delete(c.byseg, h.seg)
	h.cached = false
	if h.refs > 0 {
		return nil
	}
	c.open--
	return h.f
}

// close closes every idle handle and makes later acquires fail with
// ErrClosed; handles in use are closed when released. It returns the
// first error closing a file (none are written through these handles, so
// there is nothing to lose).
func (c *openFiles) close() error {
	c.mu.Lock()
	c.closed = true
	var idle []*os.File
	for c.lru.Len() > 0 {
		if f := c.uncache(c.lru.Front()); f != nil {
			idle = append(idle, f)
		}
	}
	c.mu.Unlock()
	return closeAll(idle)
}

// stats returns the handles cached and open (cached, or evicted while in
// use, or not to be cached) and the hits and opens so far.
func (c *openFiles) stats() (cached, open, hits, opens int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.open, c.hits, c.opens
}

// closeAll closes fs and returns the first error.
func closeAll(fs []*os.File) error {
	var first error
	for _, f := range fs {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
