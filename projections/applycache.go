package projections

import "github.com/grapevine-keyserver/grapevine/eventlog"

// applyCache holds values of the projections that only the applier
// writes, as its last commit left them, so that a batch reads them from
// memory instead of from Pebble: the word posting counts (a batch of 16
// new keys changes ~80 of them, and each read was a Get that found its
// key in the lowest level; 0.16 s of the 1.41 s the applier spent in a
// burst of uploads) and the stats counters.
//
// It is exact because nothing else writes those keys while the store is
// open, and it is only filled after a commit succeeded, with what that
// commit wrote. The bulk path writes them too (sstables ingested into an
// empty store); it moves the applied index without telling the cache, so
// the cache remembers the applied index it is current at and empties
// itself when the store's is another (valid). A replay opens a new Store.
//
// The counts are bounded by two generations of at most max/2 words each
// (the current one becomes the previous one when full; a word found in
// the previous one moves to the current one), about 60 bytes a word.
// Belongs to whoever holds Store.applyMu.
type applyCache struct {
	at        eventlog.Index
	max       int // words; 0: counts not cached
	cur, prev map[string]uint64
	counters  map[string][16]byte
}

// maxCachedCounters bounds the stats counters kept: a batch touches the
// day's and the hour's, so the map only grows across hours and days.
const maxCachedCounters = 64

// valid empties the cache unless it is current at applied.
func (c *applyCache) valid(applied eventlog.Index) {
	if c.at != applied {
		c.reset()
		c.at = applied
	}
}

func (c *applyCache) reset() {
	c.cur, c.prev, c.counters = nil, nil, nil
}

// count returns the cached count of word, if any.
func (c *applyCache) count(word string) (uint64, bool) {
	if n, ok := c.cur[word]; ok {
		return n, true
	}
	n, ok := c.prev[word]
	if ok {
		c.putCount(word, n)
	}
	return n, ok
}

func (c *applyCache) putCount(word string, n uint64) {
	if c.max <= 0 {
		return
	}
	if c.cur == nil || len(c.cur) >= (c.max+1)/2 {
		c.prev, c.cur = c.cur, make(map[string]uint64, min(1024, c.max))
	}
	c.cur[word] = n
}

func (c *applyCache) counter(k string) ([16]byte, bool) {
	v, ok := c.counters[k]
	return v, ok
}

func (c *applyCache) putCounter(k string, v [16]byte) {
	if c.counters == nil || len(c.counters) >= maxCachedCounters {
		c.counters = make(map[string][16]byte)
	}
	c.counters[k] = v
}
