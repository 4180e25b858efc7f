package hkp

import (
	"encoding/binary"
	"sync"

	"github.com/grapevine-keyserver/grapevine/projections"
)

// armorCache keeps the armor (without header lines) of single-key op=get
// answers, keyed by the record version: record ID and the log index that
// wrote it. A version's key bytes never change (a new version has a new
// index, and replaying the log rebuilds the same index for the same
// bytes), so an entry is never stale: each lookup reads the key's latest
// pointer first, and after an update or deletion it names another version
// or none. What the cache saves is the record read and the armoring: a
// third of the CPU of a get (docs/benchmarks.md, optimisation log).
//
// Bounded by bytes; when full, entries are dropped in map order (random):
// cheaper than an LRU list under one lock, and no worse for the skewed
// popularity of keyserver lookups. Safe for concurrent use; a nil cache
// caches nothing.
type armorCache struct {
	mu   sync.Mutex
	max  int
	size int
	m    map[string][]byte
}

// armorCacheEntryCost is what an entry costs besides its bytes (map slot,
// key string, slice header), counted against the bound.
const armorCacheEntryCost = 128

func newArmorCache(maxBytes int) *armorCache {
	if maxBytes <= 0 {
		return nil
	}
	return &armorCache{max: maxBytes, m: make(map[string][]byte)}
}

// maxVersionKey bounds record IDs the cache keys (a v6 fingerprint is 32
// bytes, a v3 record ID 20).
const maxVersionKey = 64 + 8

// versionKey writes rid and idx into buf, or returns nil when rid is too
// long to cache.
func versionKey(buf *[maxVersionKey]byte, rid []byte, idx uint64) []byte {
	if len(rid) > maxVersionKey-8 {
		return nil
	}
	n := copy(buf[:], rid)
	binary.BigEndian.PutUint64(buf[n:], idx)
	return buf[:n+8]
}

// get returns the cached armor of the version, or nil. The caller must not
// modify it.
func (c *armorCache) get(rec *projections.Record) []byte {
	if c == nil {
		return nil
	}
	var buf [maxVersionKey]byte
	k := versionKey(&buf, rec.RID, uint64(rec.Index))
	if k == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[string(k)]
}

// put caches armor for the version; armor must not be modified afterwards.
func (c *armorCache) put(rec *projections.Record, armor []byte) {
	if c == nil || len(armor)+armorCacheEntryCost > c.max/8 {
		return // one huge key must not flush the cache
	}
	var buf [maxVersionKey]byte
	k := versionKey(&buf, rec.RID, uint64(rec.Index))
	if k == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[string(k)]; ok {
		return
	}
	cost := len(armor) + armorCacheEntryCost
	for key, v := range c.m {
		if c.size+cost <= c.max {
			break
		}
		delete(c.m, key)
		c.size -= len(v) + armorCacheEntryCost
	}
	c.m[string(k)] = armor
	c.size += cost
}

// len returns the number of cached versions.
func (c *armorCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
