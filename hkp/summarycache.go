package hkp

import (
	"container/list"
	"sync"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// summaryCache keeps what index pages show of each key, by SKS key hash:
// its summary, and for machine-readable indexes the whole mrEntry, so a
// cached key is answered without parsing it. A summary needs every
// self-signature verified (milliseconds for RSA-4096 keys), and index pages
// show the same keys again and again; the hash names the exact content, so
// an entry never goes stale. Bounded LRU, safe for concurrent use.
type summaryCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // front = most recent; values are *summaryEntry
	byKey map[pgpkey.KeyHash]*list.Element
}

type summaryEntry struct {
	h      pgpkey.KeyHash
	s      pgpkey.Summary
	hasSum bool
	mr     *mrEntry // nil until an MR index showed the key
}

func newSummaryCache(max int) *summaryCache {
	return &summaryCache{max: max, order: list.New(), byKey: make(map[pgpkey.KeyHash]*list.Element)}
}

// fill gives each key its cached summary, when there is one.
func (c *summaryCache) fill(keys []*pgpkey.Key) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range keys {
		if e, ok := c.byKey[k.Hash()]; ok && e.Value.(*summaryEntry).hasSum {
			c.order.MoveToFront(e)
			k.SetSummary(e.Value.(*summaryEntry).s)
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
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[h]
	if !ok {
		return nil, nil
	}
	c.order.MoveToFront(el)
	e := el.Value.(*summaryEntry)
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

// entry returns the entry of h, adding an empty one (and evicting the
// least recently used) if there is none. c.mu must be held.
func (c *summaryCache) entry(h pgpkey.KeyHash) *summaryEntry {
	if el, ok := c.byKey[h]; ok {
		return el.Value.(*summaryEntry)
	}
	e := &summaryEntry{h: h}
	c.byKey[h] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		last := c.order.Back()
		delete(c.byKey, last.Value.(*summaryEntry).h)
		c.order.Remove(last)
	}
	return e
}
