package projections

import (
	"fmt"
	"testing"
)

// TestRefCacheEpochAndBound: an answer read before an invalidation is not
// cached; invalidating a record drops every fingerprint naming it; the
// cache stays within its bound.
func TestRefCacheEpochAndBound(t *testing.T) {
	c := refCache{max: 100}
	e := c.current()
	invalidateRefs(&c, map[string]bool{"other": true}, map[string]bool{})
	c.put(e, []byte("f1"), []Ref{{RID: []byte("r1"), Index: 1}})
	if _, ok := c.get([]byte("f1")); ok {
		t.Fatal("an answer read before a commit was cached")
	}
	e = c.current()
	c.put(e, []byte("f1"), []Ref{{RID: []byte("r1"), Index: 1}})
	c.put(e, []byte("f2"), []Ref{{RID: []byte("r1"), Index: 1}, {RID: []byte("r2"), Index: 2}})
	c.put(e, []byte("f3"), []Ref{{RID: []byte("r3"), Index: 3}})
	invalidateRefs(&c, map[string]bool{"r1": true}, map[string]bool{})
	for f, want := range map[string]bool{"f1": false, "f2": false, "f3": true} {
		if _, ok := c.get([]byte(f)); ok != want {
			t.Errorf("after invalidating r1: %s cached %v, want %v", f, ok, want)
		}
	}
	invalidateRefs(&c, map[string]bool{}, map[string]bool{"f3": true})
	if _, ok := c.get([]byte("f3")); ok {
		t.Error("f3 still cached after its list changed")
	}
	if len(c.byRID) != 0 {
		t.Errorf("byRID keeps %d records with nothing cached", len(c.byRID))
	}

	c.max = 10
	e = c.current()
	for i := 0; i < 100; i++ {
		c.put(e, []byte(fmt.Sprint("fpr", i)), []Ref{{RID: []byte(fmt.Sprint("rid", i)), Index: 1}})
		if len(c.byFpr) > c.max || len(c.byRID) > c.max {
			t.Fatalf("after %d puts: %d answers, %d records; bound %d", i+1, len(c.byFpr), len(c.byRID), c.max)
		}
	}
	off := refCache{}
	off.put(off.current(), []byte("f"), nil)
	if _, ok := off.get([]byte("f")); ok {
		t.Error("a cache with no bound cached an answer")
	}
}

// TestRefCachePutNeverWaits: a put into a shard another goroutine is
// reading leaves the answer uncached instead of waiting for the lock;
// once the shard is free the put caches.
func TestRefCachePutNeverWaits(t *testing.T) {
	c := refCache{max: 100}
	refs := []Ref{{RID: []byte("rid"), Index: 3}}
	c.mu.RLock()
	c.put(c.epoch, []byte("fpr"), refs) // with a plain Lock this would never return
	c.mu.RUnlock()
	if _, ok := c.get([]byte("fpr")); ok {
		t.Fatal("a put into a busy shard cached its answer; want it skipped")
	}
	c.put(c.current(), []byte("fpr"), refs)
	if got, ok := c.get([]byte("fpr")); !ok || len(got) != 1 {
		t.Fatalf("a put into a free shard cached %v, %v", got, ok)
	}
}
