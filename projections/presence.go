package projections

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
)

// The presence filter: a Bloom filter, in memory, over the Pebble keys of
// the L (newest record of a key), F (fingerprint's record IDs) and H (hash
// index) spaces. A new key is looked up in all three before it is stored
// (the upload path's novelty check, the applier's hash owner and
// fingerprint lists) and is in none of them; each such miss searched every
// memtable and consulted every level's table filter, ≈ 10 µs apiece in the
// daemon (docs/benchmarks.md, "presence filter"). One filter probe answers
// them instead: a key it never held is certainly not in the database.
//
// Keys only enter: a key deleted from Pebble stays in the filter, costing a
// read that misses, as before. So the filter is right for any snapshot of
// the database, not only the newest.
//
// The applier adds every L, F and H key it writes before committing it.
// A filter is built by scanning the three spaces of a snapshot taken while
// holding applyMu, after the filter was installed: what was committed
// before the snapshot is in the scan, what is committed after it was added
// by the applier. Until its scan ends, a filter answers "may hold" to
// everything. When more keys entered than it was sized for, the applier
// replaces it (same procedure), so it never fills up.

// presenceBitsPerKey sets the filter's false-positive rate: ≈ 1–2 % with
// 8 probes in a 256-bit block.
const presenceBitsPerKey = 10

// presenceMinKeys is the smallest capacity: 256 KiB of filter.
const presenceMinKeys = 1 << 18

// presence holds the store's current presence filter. The zero value holds
// none (every key "may" be present).
type presence struct {
	cur atomic.Pointer[presenceFilter]

	mu     sync.Mutex // guards cancel and the scans' WaitGroup
	cancel context.CancelFunc
	scans  sync.WaitGroup
	closed bool

	// skipped counts the reads it answered (tests, docs/benchmarks.md).
	skipped atomic.Int64
	// minKeys overrides presenceMinKeys, scanHook runs in a scan's
	// goroutine before it scans (tests).
	minKeys  int64
	scanHook func()
}

// presenceFilter is a split-block Bloom filter: each key sets 8 bits in
// one 256-bit block, one bit in each of its 32-bit words, so a probe costs
// one cache line.
type presenceFilter struct {
	blocks   [][8]uint32
	capacity int64        // keys it was sized for
	added    atomic.Int64 // keys that set at least one new bit
	ready    atomic.Bool  // its scan is done: a miss is certain
	seed     maphash.Seed
}

func newPresenceFilter(capacity int64) *presenceFilter {
	n := (capacity*presenceBitsPerKey + 255) / 256
	return &presenceFilter{blocks: make([][8]uint32, n), capacity: capacity, seed: maphash.MakeSeed()}
}

// The salts of the split-block Bloom filter (Apache Parquet's): odd
// constants that spread one 32-bit hash over 8 bit positions.
var presenceSalts = [8]uint32{0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d, 0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31}

func (f *presenceFilter) locate(key []byte) (block *[8]uint32, x uint32) {
	h := maphash.Bytes(f.seed, key)
	i := (h >> 32) * uint64(len(f.blocks)) >> 32
	return &f.blocks[i], uint32(h)
}

func (f *presenceFilter) add(key []byte) {
	b, x := f.locate(key)
	grew := false
	for i, salt := range presenceSalts {
		bit := uint32(1) << ((x * salt) >> 27)
		if atomic.LoadUint32(&b[i])&bit == 0 {
			atomic.OrUint32(&b[i], bit)
			grew = true
		}
	}
	if grew {
		f.added.Add(1)
	}
}

func (f *presenceFilter) mayHold(key []byte) bool {
	b, x := f.locate(key)
	for i, salt := range presenceSalts {
		if atomic.LoadUint32(&b[i])&(uint32(1)<<((x*salt)>>27)) == 0 {
			return false
		}
	}
	return true
}

// filtered reports whether key is in one of the spaces the filter covers.
func presenceFiltered(key []byte) bool {
	return len(key) > 0 && (key[0] == prefixLatest || key[0] == prefixFpr || key[0] == prefixHash)
}

// mayHold reports whether the database may hold key: false only when key
// is in a filtered space and a ready filter never held it.
func (p *presence) mayHold(key []byte) bool {
	f := p.cur.Load()
	if f == nil || !presenceFiltered(key) || !f.ready.Load() {
		return true
	}
	return f.mayHold(key)
}

// add records that key is about to be written. The caller holds applyMu.
func (p *presence) add(key []byte) {
	if f := p.cur.Load(); f != nil && presenceFiltered(key) {
		f.add(key)
	}
}

// outgrown returns, when the current filter took in more keys than it was
// sized for, the capacity of its successor: twice what it took in, so
// that however many entries a stored key has (its subkeys' fingerprints,
// deleted keys' newest records), the filter is replaced ever more rarely.
func (p *presence) outgrown() (capacity int64, ok bool) {
	f := p.cur.Load()
	if f == nil {
		return 0, false
	}
	added := f.added.Load()
	if added <= f.capacity {
		return 0, false
	}
	return 2 * added, true
}

// capacityFor is the capacity of a filter for a store of keys stored keys
// when nothing better is known: per key its L entry, its H entry and the
// F entries of its primary key and (typically) one subkey; twice that, for
// growth.
func capacityFor(keys int64) int64 { return 8 * keys }

// rebuild installs a new filter with room for capacity keys and starts
// its scan. The caller holds applyMu, so nothing is committed between the
// installation and the scan's snapshot.
func (p *presence) rebuild(s *Store, capacity int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if p.cancel != nil {
		p.cancel() // a scan still running fills a filter no longer used
	}
	minKeys := int64(presenceMinKeys)
	if p.minKeys > 0 {
		minKeys = p.minKeys
	}
	f := newPresenceFilter(max(capacity, minKeys))
	p.cur.Store(f)
	snap := s.db.NewSnapshot()
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.scans.Add(1)
	hook := p.scanHook
	go func() {
		defer p.scans.Done()
		defer snap.Close()
		if hook != nil {
			hook()
		}
		start := time.Now()
		n, err := scanPresence(ctx, snap, f)
		switch {
		case errors.Is(err, context.Canceled):
		case err != nil:
			// The filter stays not ready: every read happens, as without it.
			s.log.Error().Err(err).Msg("presence filter scan failed; reads go to the database")
		default:
			f.ready.Store(true)
			s.log.Info().Int64("keys", n).Int64("capacity", f.capacity).Dur("took", time.Since(start)).Msg("presence filter ready")
		}
	}()
}

// invalidate drops the filter (every key "may" be present) until the next
// rebuild: for writers that do not add what they write (the bulk path).
// The caller holds applyMu.
func (p *presence) invalidate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cancel != nil {
		p.cancel()
		p.cancel = nil
	}
	p.cur.Store(nil)
}

// close stops a running scan and waits for it, before the database closes.
func (p *presence) close() {
	p.mu.Lock()
	p.closed = true
	if p.cancel != nil {
		p.cancel()
	}
	p.mu.Unlock()
	p.scans.Wait()
}

// scanPresence adds every key of the filtered spaces in r to f.
func scanPresence(ctx context.Context, r Reader, f *presenceFilter) (int64, error) {
	var n int64
	for _, prefix := range []byte{prefixLatest, prefixFpr, prefixHash} {
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
		if err != nil {
			return n, fmt.Errorf("scan %c keys: %w", prefix, err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			f.add(it.Key())
			if n++; n%4096 == 0 && ctx.Err() != nil {
				it.Close()
				return n, ctx.Err()
			}
		}
		if err := it.Close(); err != nil {
			return n, fmt.Errorf("scan %c keys: %w", prefix, err)
		}
	}
	return n, nil
}

// presenceReader is a Reader whose point reads of keys the presence filter
// never held answer pebble.ErrNotFound without reading.
type presenceReader struct {
	r Reader
	p *presence
}

func (r presenceReader) Get(key []byte) ([]byte, io.Closer, error) {
	if !r.p.mayHold(key) {
		r.p.skipped.Add(1)
		return nil, nil, pebble.ErrNotFound
	}
	return r.r.Get(key)
}

func (r presenceReader) NewIter(o *pebble.IterOptions) (*pebble.Iterator, error) {
	return r.r.NewIter(o)
}
