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
// popularity of keyserver lookups. Split into armorShardCount shards by
// version, each with its own lock and an even part of the bound: a get
// that misses takes its shard's write lock to add its answer, and with one
// lock a request descheduled while holding it held up every other one (gets
// cycling through 100k keys, 64 connections on 2 shared cores). Safe for
// concurrent use; a nil cache caches nothing.
type armorCache struct {
	shards [armorShardCount]armorShard
}

const armorShardCount = 16

type armorShard struct {
	// mu is a read-write lock so that lookups never wait for each other.
	mu   sync.RWMutex
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
	c := &armorCache{}
	for i := range c.shards {
		c.shards[i] = armorShard{max: maxBytes / armorShardCount, m: make(map[string][]byte)}
	}
	return c
}

// shard returns the shard of a version key.
func (c *armorCache) shard(k []byte) *armorShard {
	h := uint32(2166136261) // FNV-1a
	for _, b := range k {
		h = (h ^ uint32(b)) * 16777619
	}
	return &c.shards[h%armorShardCount]
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
	sh := c.shard(k)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[string(k)]
}

// put caches armor for the version; armor must not be modified afterwards.
func (c *armorCache) put(rec *projections.Record, armor []byte) {
	if c == nil {
		return
	}
	var buf [maxVersionKey]byte
	k := versionKey(&buf, rec.RID, uint64(rec.Index))
	if k == nil {
		return
	}
	sh := c.shard(k)
	if len(armor)+armorCacheEntryCost > sh.max/8 {
		return // one huge key must not flush the shard
	}
	// A put never waits: when the shard is busy the answer is not
	// cached. A writer waiting for the lock makes every new reader wait
	// behind it, and with 64 gets that all miss (every fingerprint
	// cycled) the readers it waited for sat in the run queue: execution
	// traces showed gets waiting up to 100 ms in get's RLock behind such
	// puts (docs/benchmarks.md, stall work of issue 4). A skipped put
	// costs the next get of that version one armoring.
	if !sh.mu.TryLock() {
		return
	}
	defer sh.mu.Unlock()
	if _, ok := sh.m[string(k)]; ok {
		return
	}
	cost := len(armor) + armorCacheEntryCost
	for key, v := range sh.m {
		if sh.size+cost <= sh.max {
			break
		}
		delete(sh.m, key)
		sh.size -= len(v) + armorCacheEntryCost
	}
	sh.m[string(k)] = armor
	sh.size += cost
}

// size returns the bytes the cache counts against its bound.
func (c *armorCache) size() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += sh.size
		sh.mu.RUnlock()
	}
	return n
}

// len returns the number of cached versions.
func (c *armorCache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}
