package hkp

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
)

// TestArmorCacheBound fills the cache far past its bound: it stays within
// it, keeps answering what it holds by version, and refuses an entry
// larger than an eighth of a shard's part of the bound.
func TestArmorCacheBound(t *testing.T) {
	const max = 1 << 20
	c := newArmorCache(max)
	armor := bytes.Repeat([]byte("a"), 1000)
	for i := 0; i < 5000; i++ {
		rec := &projections.Record{RID: []byte(fmt.Sprintf("rid-%d", i%100)), Index: eventlog.Index(i)}
		c.put(rec, armor)
		if c.size() > max {
			t.Fatalf("after %d puts the cache holds %d bytes, over its bound %d", i+1, c.size(), max)
		}
		if got := c.get(rec); !bytes.Equal(got, armor) {
			t.Fatalf("entry %d not answered right after its put", i)
		}
		if c.get(&projections.Record{RID: rec.RID, Index: rec.Index + 1}) != nil {
			t.Fatalf("entry %d answered for another version", i)
		}
	}
	// Each shard holds its part of the bound, give or take an entry.
	if n, allows := c.len(), max/(1000+armorCacheEntryCost); n < allows-armorShardCount {
		t.Errorf("cache holds %d entries; the bound allows %d", n, allows)
	}
	big := &projections.Record{RID: []byte("big"), Index: 1}
	c.put(big, make([]byte, max/armorShardCount/8))
	if c.get(big) != nil {
		t.Error("an entry over an eighth of the bound was cached")
	}
	if newArmorCache(0) != nil || newArmorCache(0).get(big) != nil {
		t.Error("a zero bound does not turn the cache off")
	}
}

// TestArmorCachePutNeverWaits: a put into a shard another goroutine is
// reading leaves the answer uncached instead of waiting for the lock (a
// waiting writer would make every new reader queue behind it); once the
// shard is free the put caches.
func TestArmorCachePutNeverWaits(t *testing.T) {
	c := newArmorCache(1 << 20)
	rec := &projections.Record{RID: []byte("rid"), Index: 7}
	var buf [maxVersionKey]byte
	sh := c.shard(versionKey(&buf, rec.RID, uint64(rec.Index)))
	sh.mu.RLock()
	c.put(rec, []byte("armor")) // with a plain Lock this would never return
	sh.mu.RUnlock()
	if c.get(rec) != nil {
		t.Fatal("a put into a busy shard cached its answer; want it skipped")
	}
	c.put(rec, []byte("armor"))
	if got := c.get(rec); string(got) != "armor" {
		t.Fatalf("a put into a free shard left %q cached", got)
	}
}
