package projections

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Ref names the newest live version of a record: what its latest pointer
// holds, without the key bytes. A version never changes once written (a
// new one gets a new log index), so (RID, Index) may key a cache of
// anything derived from the version's key bytes with no invalidation: the
// next read of the pointer names the new version.
type Ref struct {
	RID   []byte
	Index eventlog.Index
	Hash  pgpkey.KeyHash
	SKS   bool // v2–v4 primary key (Record.SKS)
}

// FingerprintRefs returns the newest live versions of the keys whose
// primary key or a subkey has this fingerprint (16, 20 or 32 bytes), in
// the order ByFingerprint returns them; the caller must not modify the
// slice. It reads the fingerprint entry and one latest pointer per key, or
// nothing when refCache holds the answer, and no key: a lookup that has
// the answer cached for a version skips the record read (Version).
func (s *Store) FingerprintRefs(fpr []byte) ([]Ref, error) {
	c := s.refs.shard(fpr)
	if refs, ok := c.get(fpr); ok {
		return refs, nil
	}
	epoch := c.current()
	v, closer, err := s.lookupReader().Get(fprKey(fpr))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read fingerprint index: %w", err)
	}
	// One allocation holds every record ID of the list.
	rids := ridList(bytes.Clone(v))
	closer.Close()
	out := make([]Ref, 0, len(rids))
	for _, rid := range rids {
		ref, ok, err := latestRef(s.lookupReader(), rid)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, ref)
		}
	}
	c.put(epoch, fpr, out)
	return out, nil
}

// latestRef reads rid's latest pointer; ok is false for a key deleted or
// never stored.
func latestRef(r Reader, rid []byte) (ref Ref, ok bool, err error) {
	v, closer, err := r.Get(latestKey(rid))
	if errors.Is(err, pebble.ErrNotFound) {
		return ref, false, nil
	}
	if err != nil {
		return ref, false, fmt.Errorf("read latest %X: %w", rid, err)
	}
	idx, flags, h, err := decodeLatest(v)
	closer.Close()
	if err != nil {
		return ref, false, fmt.Errorf("latest %X: %w", rid, err)
	}
	if flags&flagDeleted != 0 {
		return ref, false, nil
	}
	return Ref{RID: rid, Index: idx, Hash: h, SKS: flags&flagSKS != 0}, true, nil
}

// Version returns the version ref names, or ErrNotFound if it is a
// deletion. The Record owns its memory.
func (s *Store) Version(ref Ref) (*Record, error) {
	return s.version(s.lookupReader(), ref.RID, ref.Index)
}

// refCache keeps FingerprintRefs answers, so that a repeated op=get reads
// nothing from Pebble (its two point reads were a quarter of a get's CPU).
// It is exact: every batch the projections commit calls invalidate with
// the record IDs it wrote and the fingerprints whose lists it changed,
// after the commit, and that drops every cached answer naming one of them.
// A lookup that read the database while a commit was landing does not
// cache what it read: each invalidation moves the epoch, and put refuses
// an answer read under an older one. Bounded by entries, dropped in map
// order when full. Safe for concurrent use; the zero value caches nothing.
type refCache struct {
	// mu is a read-write lock so that lookups, the common case, never
	// wait for each other: with 64 requests on 2 cores, a lookup holding a
	// plain mutex when the OS descheduled its thread held up every other
	// one (the mutex profile of cached gets put ≈ 60 µs per request there).
	mu    sync.RWMutex
	max   int // entries (Config.FingerprintCacheEntries); 0: off
	epoch uint64
	byFpr map[string][]Ref
	// byRID lists the fingerprints cached with an answer naming the
	// record, to find them when the record changes.
	byRID map[string][]string
}

func (c *refCache) get(fpr []byte) ([]Ref, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	refs, ok := c.byFpr[string(fpr)]
	return refs, ok
}

// current returns the epoch to pass to put for what is read from now on.
func (c *refCache) current() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.epoch
}

// put caches refs as fpr's answer if nothing was committed since epoch.
// It never waits: when the shard is busy the answer is not cached (a
// waiting writer makes every new reader wait behind it: the armor cache's
// put says more).
func (c *refCache) put(epoch uint64, fpr []byte, refs []Ref) {
	if !c.mu.TryLock() {
		return
	}
	defer c.mu.Unlock()
	if epoch != c.epoch || c.max <= 0 {
		return
	}
	if c.byFpr == nil {
		c.byFpr = make(map[string][]Ref)
		c.byRID = make(map[string][]string)
	}
	for f := range c.byFpr {
		if len(c.byFpr) < c.max {
			break
		}
		c.drop(f)
	}
	f := string(fpr)
	c.byFpr[f] = refs
	for _, r := range refs {
		c.byRID[string(r.RID)] = append(c.byRID[string(r.RID)], f)
	}
}

// drop forgets fpr's answer and its entries in byRID.
func (c *refCache) drop(fpr string) {
	refs, ok := c.byFpr[fpr]
	if !ok {
		return
	}
	delete(c.byFpr, fpr)
	for _, r := range refs {
		fprs := c.byRID[string(r.RID)]
		for i, f := range fprs {
			if f == fpr {
				fprs = append(fprs[:i], fprs[i+1:]...)
				break
			}
		}
		if len(fprs) == 0 {
			delete(c.byRID, string(r.RID))
		} else {
			c.byRID[string(r.RID)] = fprs
		}
	}
}

// refShardCount is the number of refCaches a Store's fingerprint cache is
// split into, by fingerprint. A lookup that misses takes its shard's write
// lock to add its answer (and evict); with one lock, a request descheduled
// while holding it (64 requests on 2 shared cores) held up every other
// one: the mutex profile of gets cycling through 100k keys showed more
// waiting on it than there was wall time.
const refShardCount = 16

// refShards is the fingerprint cache of a Store: refCaches by fingerprint.
type refShards struct {
	shards [refShardCount]refCache
}

// setMax bounds the whole cache to about n entries (0: off).
func (c *refShards) setMax(n int) {
	for i := range c.shards {
		c.shards[i].max = (n + refShardCount - 1) / refShardCount
	}
}

// shard returns the cache that holds fpr's answer.
func (c *refShards) shard(fpr []byte) *refCache {
	h := uint32(2166136261) // FNV-1a
	for _, b := range fpr {
		h = (h ^ uint32(b)) * 16777619
	}
	return &c.shards[h%refShardCount]
}

func (c *refShards) reset() {
	for i := range c.shards {
		c.shards[i].reset()
	}
}

// invalidateRefs drops every answer naming one of rids or about one of fprs
// (map keys: string record IDs and fingerprints), and moves the epoch, in
// one refCache or in every shard of a Store's. Call it after the batch
// that changed them is committed.
func invalidateRefs[W, F any, C *refCache | *refShards](c C, rids map[string]W, fprs map[string]F) {
	switch c := any(c).(type) {
	case *refCache:
		invalidateShard(c, rids, fprs)
	case *refShards:
		for i := range c.shards {
			invalidateShard(&c.shards[i], rids, fprs)
		}
	}
}

func invalidateShard[W, F any](c *refCache, rids map[string]W, fprs map[string]F) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for f := range fprs {
		c.drop(f)
	}
	for rid := range rids {
		for _, f := range append([]string(nil), c.byRID[rid]...) {
			c.drop(f)
		}
	}
}

// reset drops everything and moves the epoch (after a bulk ingest).
func (c *refCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.byFpr, c.byRID = nil, nil
}
