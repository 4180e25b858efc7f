package hkp

import (
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestSummaryCacheSecondChance: when the cache is full, a new entry
// evicts one not looked up since eviction last passed it, and keeps the
// ones looked up; the new entry itself is never the one dropped.
func TestSummaryCacheSecondChance(t *testing.T) {
	h := func(b byte) pgpkey.KeyHash { return pgpkey.KeyHash{b} }
	cached := func(c *summaryCache, k pgpkey.KeyHash) bool {
		c.mu.RLock()
		defer c.mu.RUnlock()
		_, ok := c.byKey[k]
		return ok
	}
	add := func(c *summaryCache, k pgpkey.KeyHash) {
		c.keepMR(k, &mrEntry{id: "x"})
	}

	c := newSummaryCache(3)
	add(c, h(1))
	add(c, h(2))
	add(c, h(3))
	if m, _ := c.mr(h(1)); m == nil { // 1 is used; 2 and 3 are not
		t.Fatal("entry 1 not cached")
	}
	add(c, h(4))
	if !cached(c, h(1)) || cached(c, h(2)) || !cached(c, h(3)) || !cached(c, h(4)) {
		t.Errorf("after adding 4 to a full cache where 1 was used: 1 %v 2 %v 3 %v 4 %v; want 2 dropped",
			cached(c, h(1)), cached(c, h(2)), cached(c, h(3)), cached(c, h(4)))
	}
	// 1 went back to the front with its mark cleared: it outlives 3 and
	// 4, then, passed again unused, it goes.
	add(c, h(5))
	add(c, h(6))
	if !cached(c, h(1)) || cached(c, h(3)) || cached(c, h(4)) {
		t.Errorf("after 5 and 6: 1 %v 3 %v 4 %v; want 1 kept, 3 and 4 dropped", cached(c, h(1)), cached(c, h(3)), cached(c, h(4)))
	}
	add(c, h(7))
	if cached(c, h(1)) || !cached(c, h(5)) || !cached(c, h(6)) || !cached(c, h(7)) {
		t.Errorf("1 kept without another lookup, or a new entry dropped: 1 %v 5 %v 6 %v 7 %v", cached(c, h(1)), cached(c, h(5)), cached(c, h(6)), cached(c, h(7)))
	}

	one := newSummaryCache(1)
	add(one, h(1))
	one.mr(h(1))
	add(one, h(2))
	if cached(one, h(1)) || !cached(one, h(2)) || one.order.Len() != 1 {
		t.Errorf("one-entry cache: 1 %v 2 %v, %d entries; want only the new entry", cached(one, h(1)), cached(one, h(2)), one.order.Len())
	}
}
