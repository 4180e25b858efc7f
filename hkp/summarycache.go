package hkp

import (
	"container/list"
	"sync"
	"sync/atomic"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// summaryCache keeps what index pages show of each key, by SKS key hash:
// its summary, and for machine-readable indexes the whole mrEntry, so a
// cached key is answered without parsing it. A summary needs every
// self-signature verified (milliseconds for RSA-4096 keys), and index pages
// show the same keys again and again; the hash names the exact content, so
// an entry never goes stale. Safe for concurrent use.
//
// Bounded, evicting by second chance (CLOCK) rather than strict LRU: a
// lookup only marks its entry used, under a read lock, and the eviction
// that makes room for a new entry moves used entries back to the front
// instead of dropping them. Lookups never wait for each other: moving an
// entry to the front on every lookup, under one mutex, made that mutex the
// index searches' bottleneck (its profile showed about as much waiting as
// there was wall time, 64 requests on 2 cores).
type summaryCache struct {
	mu    sync.RWMutex
	max   int
	order *list.List // front = newest or recently used; values are *summaryEntry
	byKey map[pgpkey.KeyHash]*list.Element
}

type summaryEntry struct {
	h      pgpkey.KeyHash
	s      pgpkey.Summary
	hasSum bool
	mr     *mrEntry    // nil until an MR index showed the key
	used   atomic.Bool // looked up since eviction last passed it
}

// touch marks e used, writing only when it was not (no cache line
// bouncing between the cores for a popular key).
func (e *summaryEntry) touch() {
	if !e.used.Load() {
		e.used.Store(true)
	}
}

func newSummaryCache(max int) *summaryCache {
	return &summaryCache{max: max, order: list.New(), byKey: make(map[pgpkey.KeyHash]*list.Element)}
}

// fill gives each key its cached summary, when there is one.
func (c *summaryCache) fill(keys []*pgpkey.Key) {
	if c == nil {
		return
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, k := range keys {
		if el, ok := c.byKey[k.Hash()]; ok && el.Value.(*summaryEntry).hasSum {
			e := el.Value.(*summaryEntry)
			e.touch()
			k.SetSummary(e.s)
		}
	}
}

// keep caches the summaries the keys computed.
func (c *summaryCache) keep(keys []*pgpkey.Key) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if !k.HasSummary() {
			continue
		}
		e := c.entry(k.Hash())
		if !e.hasSum {
			e.s, e.hasSum = k.Summary(), true
		}
	}
}

// mr returns the cached MR index entry of the key with hash h, and
// whether there is one; without one, the key's summary when cached (for
// building the entry).
func (c *summaryCache) mr(h pgpkey.KeyHash) (*mrEntry, *pgpkey.Summary) {
	if c == nil {
		return nil, nil
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	el, ok := c.byKey[h]
	if !ok {
		return nil, nil
	}
	e := el.Value.(*summaryEntry)
	e.touch()
	if e.mr != nil {
		return e.mr, nil
	}
	if e.hasSum {
		s := e.s
		return nil, &s
	}
	return nil, nil
}

// keepMR caches the MR index entry m of the key with hash h.
func (c *summaryCache) keepMR(h pgpkey.KeyHash, m *mrEntry) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entry(h).mr = m // m.sum lacks subkeys: not a summary for HTML pages
}

// entry returns the entry of h, adding an empty one if there is none and
// making room for it: from the back, an entry used since it was last
// passed loses its mark and goes to the front (as does the new entry,
// should the others all have gone round), the first one not used is
// dropped (each entry is passed over at most once per mark, so this ends).
// c.mu must be held for writing.
func (c *summaryCache) entry(h pgpkey.KeyHash) *summaryEntry {
	if el, ok := c.byKey[h]; ok {
		return el.Value.(*summaryEntry)
	}
	e := &summaryEntry{h: h}
	c.byKey[h] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		last := c.order.Back()
		le := last.Value.(*summaryEntry)
		if le == e || le.used.Load() {
			le.used.Store(false)
			c.order.MoveToFront(last)
			continue
		}
		delete(c.byKey, le.h)
		c.order.Remove(last)
	}
	return e
}
