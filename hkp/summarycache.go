package hkp

import (
	"container/list"
	"sync"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// summaryCache keeps key summaries by SKS key hash. A summary needs every
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
	h pgpkey.KeyHash
	s pgpkey.Summary
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
		if e, ok := c.byKey[k.Hash()]; ok {
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
		h := k.Hash()
		if _, ok := c.byKey[h]; ok {
			continue
		}
		c.byKey[h] = c.order.PushFront(&summaryEntry{h: h, s: k.Summary()})
		for c.order.Len() > c.max {
			last := c.order.Back()
			delete(c.byKey, last.Value.(*summaryEntry).h)
			c.order.Remove(last)
		}
	}
}
