package projections

import (
	"sync"
	"sync/atomic"
)

// countCache keeps the word counts searches read (searchindex.go), valid
// for one generation of the word index: a commit that changes any count
// makes the generation odd before it and even again after it, and a search
// uses the cache only when the generation was the same even number before
// and after it took its snapshot, so a cached count always belongs to the
// state its snapshot shows. While keys keep arriving the cache is mostly
// empty; between writes repeated searches skip a seek per word (13 % of an
// e-mail search's CPU).
type countCache struct {
	gen atomic.Uint64

	mu sync.Mutex
	at uint64            // the generation m holds counts of
	m  map[string]uint64 // word → count (0: nobody has it)
}

// maxCachedCounts bounds the map; it starts again when full.
const maxCachedCounts = 1 << 16

// begin and end bracket a write that changes counts.
func (c *countCache) begin() { c.gen.Add(1) }
func (c *countCache) end()   { c.gen.Add(1) }

// lookup returns the count of w in generation g, if cached.
func (c *countCache) lookup(g uint64, w string) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at != g || c.m == nil {
		return 0, false
	}
	n, ok := c.m[w]
	return n, ok
}

// put caches the count n of w in generation g.
func (c *countCache) put(g uint64, w string, n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g < c.at {
		return
	}
	if g > c.at || c.m == nil || len(c.m) >= maxCachedCounts {
		c.at, c.m = g, make(map[string]uint64)
	}
	c.m[w] = n
}
