package projections

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

// Sentinel errors.
var (
	ErrNotFound      = errors.New("projections: key not found")
	ErrClosed        = errors.New("projections: closed")
	ErrSchemaChanged = errors.New("projections: store was written by another schema version; run replay")
)

// Config tunes a Store. The zero value of a field means its default.
type Config struct {
	// Logger receives lifecycle and anomaly logs. Default zerolog.Nop().
	Logger zerolog.Logger
	// BatchEvents is how many log events go into one Pebble batch.
	// Larger batches apply faster; each commit also publishes the new applied
	// index to readers. Default 2048.
	BatchEvents int
	// Workers is the number of goroutines that parse and canonicalise events
	// ahead of the single applier. Default GOMAXPROCS.
	Workers int
	// CacheBytes is the size of Pebble's block cache. Default 192 MiB.
	CacheBytes int64
	// MemTableBytes is the size of one Pebble memtable. Default 32 MiB.
	MemTableBytes uint64
	// Ptree configures the recon prefix tree; its KeyPrefix is set by the
	// Store. Default ptree.DefaultConfig().
	Ptree ptree.Config
	// BulkMinEvents: catching up an empty store on at least this many
	// events takes the bulk path (bulk.go: sorted sstables ingested, no
	// memtables). Zero or less never does. Default 256.
	BulkMinEvents int
	// BulkSortBytes is the buffer of each external sort of the bulk path
	// (two at once, each using up to 2 times this with its entries and
	// scratch space, outside the Go heap). Default 8 MiB: buffers of 32 MiB
	// cost more in first-touch page faults and cache misses than the
	// extra runs cost to merge (docs/benchmarks.md).
	BulkSortBytes int
	// BulkPtreeBytes bounds the prefix tree's elements the bulk path
	// holds in memory (24 bytes per SKS key). Up to that many the tree is
	// built in memory; past it the elements go through an external sort
	// (a buffer of this size, up to 1.5 times it with its entries and
	// scratch space) and the tree is built streaming from them, holding
	// at most this many elements at once (ptree.BuildStream), so that its
	// memory does not grow with the dump. Default 8 MiB (≈ 350,000 keys:
	// the 100k benchmark corpus is built in memory; built in memory, the
	// SKS keyspace's 6 million keys peak at 412 MiB, streamed at 55 MiB).
	// Zero or less means the default.
	BulkPtreeBytes int
	// FingerprintCacheEntries bounds the fingerprint lookups answered from
	// memory (refs.go; about 200 bytes each); 0 turns the cache off.
	// Default 32768.
	FingerprintCacheEntries int
	// WordCountCacheEntries bounds the word posting counts the applier
	// keeps in memory (applycache.go; about 60 bytes each) instead of
	// reading them back at every commit; 0 turns the cache off. Default
	// 131072.
	WordCountCacheEntries int
	// FollowGather and FollowGatherMax let new events gather before
	// Follow applies them. Uploads are answered once durable, not applied,
	// so a burst of them can be applied in batches: their keys then share
	// prefix-tree node writes, word counts, counters and each batch's
	// commit (docs/benchmarks.md, "upload11", "upload12"). Follow gathers
	// until the log has stood still for FollowGather, FollowGatherMax has
	// passed, a batch's worth (gatherEnough events) is waiting, or someone
	// waits for them (WaitApplied). FollowGather 0 applies at once.
	// Defaults 2 ms and 50 ms.
	FollowGather, FollowGatherMax time.Duration
	// PresenceFilter keeps an in-memory Bloom filter of the stored record
	// IDs, fingerprints and key hashes (presence.go, about 10 bytes per
	// stored key), so that looking up a key never stored — every new key,
	// several times — reads nothing. Built by a scan at Open, in the
	// background. Default true.
	PresenceFilter bool
	// BackgroundNice is added to the nice value of the two threads Follow
	// applies events on (the SKS projections' and the Hockeypuck
	// dataset's; Linux only, up to 19). Serving waits for a core; applying
	// can wait: an upload is answered once durable in the log, and a
	// reader waits only for what was answered before it arrived. With the
	// appliers at nice 10, the kernel runs the request path first and
	// the appliers on the CPU time left, instead of Go's scheduler giving
	// the applier a whole core for up to 10 ms at a time while uploads
	// wait for the other (docs/benchmarks.md, session 17: +8 % uploads
	// a second together with one more GOMAXPROCS than cores, which the
	// daemon sets). Bounded by the upload path: beyond hkp's earlyAnswerLag
	// unapplied events an upload waits for the apply, which then gets the
	// cores. 0 applies at the process's own priority. Default 10.
	BackgroundNice int
	// Log is the log the store's events come from, read back for key
	// bytes. With it, the applier stores a version whose key is byte for
	// byte the key of its own event as a reference to that event (record.go)
	// rather than a second copy, which Pebble would write again in its
	// flushes and compactions (a smaller store; docs/benchmarks.md found
	// no gain in upload speed). Without it (nil), every version is stored
	// whole, and a store that holds references cannot be read. The bulk
	// path always stores whole versions: it builds from logs whose pages it
	// drops from the cache (eventlog.Config.DropWritten), and reads of its
	// keys would go to the disk.
	Log *eventlog.Log
}

// DefaultConfig returns the configuration used by the daemon.
func DefaultConfig() Config {
	return Config{
		Logger:        zerolog.Nop(),
		BatchEvents:   2048,
		Workers:       runtime.GOMAXPROCS(0),
		CacheBytes:    192 << 20,
		MemTableBytes: 32 << 20,
		Ptree:         ptree.DefaultConfig(),
		BulkMinEvents: 256,
		BulkSortBytes: 8 << 20,

		BulkPtreeBytes: defaultBulkPtreeBytes,

		FingerprintCacheEntries: 32768,
		WordCountCacheEntries:   1 << 17,
		FollowGather:            2 * time.Millisecond,
		FollowGatherMax:         50 * time.Millisecond,
		PresenceFilter:          true,
		BackgroundNice:          10,
	}
}

// Validate reports the first unusable field.
func (c Config) Validate() error {
	switch {
	case c.BatchEvents < 1:
		return fmt.Errorf("projections: BatchEvents %d: must be at least 1", c.BatchEvents)
	case c.Workers < 1:
		return fmt.Errorf("projections: Workers %d: must be at least 1", c.Workers)
	case c.CacheBytes < 1<<20:
		return fmt.Errorf("projections: CacheBytes %d: must be at least 1 MiB", c.CacheBytes)
	case c.BulkMinEvents > 0 && c.BulkSortBytes < 1:
		return fmt.Errorf("projections: BulkSortBytes %d: must be positive", c.BulkSortBytes)
	case c.FingerprintCacheEntries < 0:
		return fmt.Errorf("projections: FingerprintCacheEntries %d: must not be negative", c.FingerprintCacheEntries)
	case c.WordCountCacheEntries < 0:
		return fmt.Errorf("projections: WordCountCacheEntries %d: must not be negative", c.WordCountCacheEntries)
	case c.MemTableBytes < 1<<20:
		return fmt.Errorf("projections: MemTableBytes %d: must be at least 1 MiB", c.MemTableBytes)
	case c.BackgroundNice < 0 || c.BackgroundNice > 19:
		return fmt.Errorf("projections: BackgroundNice %d: must be between 0 and 19", c.BackgroundNice)
	case c.FollowGather < 0 || c.FollowGather > 10*time.Second:
		return fmt.Errorf("projections: FollowGather %v: must be between 0 and 10s", c.FollowGather)
	case c.FollowGather > 0 && (c.FollowGatherMax < c.FollowGather || c.FollowGatherMax > 10*time.Second):
		return fmt.Errorf("projections: FollowGatherMax %v: must be between FollowGather (%v) and 10s", c.FollowGatherMax, c.FollowGather)
	}
	return nil
}

// Store holds every projection of the log in one Pebble database and the
// runner that keeps them current. Reads are safe from any goroutine; only one
// goroutine may apply (CatchUp / Follow) at a time.
type Store struct {
	cfg  Config
	log  zerolog.Logger
	db   *pebble.DB
	dir  string
	opts *pebble.Options // as opened: the bulk path writes sstables with them

	// applyMu serialises appliers; the tree and counters below belong to
	// whoever holds it.
	applyMu sync.Mutex
	tree    *ptree.Tree
	hp      *hockeypuck // the Hockeypuck dataset, with its own applied index (hockeypuck.go)
	admin   adminSets   // blocked fingerprints and suppressed hashes, in memory (adminsets.go)
	keys    int64       // live records; Invariant: equals the number of L entries not deleted
	// lastBatchStats are the counts of the batch applyBatch committed last.
	lastBatchStats ApplyStats
	// bulkLast is the last index the bulk path applied since Open (0: none).
	bulkLast eventlog.Index
	// bulkPtree describes that bulk path's prefix tree build (tests).
	bulkPtree bulkPtreeStats
	// facts caches what word searches learnt about versions (wordfacts.go).
	facts wordFacts
	// refs caches fingerprint lookups; appliers invalidate it (refs.go).
	refs refShards
	// cache holds word counts and stats counters as the applier last
	// committed them (applycache.go).
	cache applyCache
	// gate bounds the lookups inside Pebble point reads (read.go).
	gate lookupGate
	// results caches word search answers until the next apply (searchcache.go).
	results searchCache
	// absent holds what the upload path found absent, writes what the
	// applier wrote since (applyabsent.go).
	absent absentFacts
	writes recentWrites

	mu      sync.Mutex
	applied eventlog.Index // Invariant: applied <= log.LastIndex()
	// appliedNow is applied for readers that take no lock (Applied: every
	// lookup and word search reads it; under s.mu it was a point of
	// contention among 64 requests).
	appliedNow atomic.Uint64
	totals     map[eventlog.Origin]ApplyStats
	notify     chan struct{} // closed and replaced whenever applied moves
	closed     bool
	// presence filters reads of keys never stored (presence.go).
	presence presence
	// hurry ends Follow's gathering (FollowGather) early: WaitApplied
	// sends to it when it has to wait. Buffered, one token.
	hurry chan struct{}
	// gatherEnough is how many unapplied events end Follow's gathering
	// (defaultGatherEnough; tests lower it).
	gatherEnough eventlog.Index
}

// Open opens (or creates) the projections database in dir.
func Open(dir string, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(cfg.CacheBytes)
	defer cache.Unref()
	opts := &pebble.Options{
		Cache:                       cache,
		MemTableSize:                cfg.MemTableBytes,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       24,
		LBaseMaxBytes:               256 << 20,
		MaxConcurrentCompactions:    func() int { return 2 },
		FormatMajorVersion:          pebble.FormatNewest,
		// No Pebble WAL: the event log is the durable record. Memtables
		// are flushed in order and every batch carries the applied index,
		// so after a crash the store is the state of some earlier batch,
		// and catching up from its applied index redoes the rest (tested
		// by killing imports and daemons). Close flushes.
		DisableWAL: true,
		Logger:     pebbleLogger{cfg.Logger},
	}
	// Bloom filters on every level: applying a new key looks up its record,
	// its hash and the upload path's novelty check, and all of them miss.
	// Without filters each miss reads index and data blocks of every level
	// (profiled: 40% of a 100k-key import in pread).
	opts.Levels = make([]pebble.LevelOptions, 7)
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].FilterType = pebble.TableFilter
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open projections %s: %w", dir, err)
	}
	s := &Store{
		cfg:    cfg,
		log:    cfg.Logger.With().Str("component", "projections").Logger(),
		db:     db,
		dir:    dir,
		opts:   opts,
		notify: make(chan struct{}),
		hurry:  make(chan struct{}, 1),

		gatherEnough: defaultGatherEnough,
	}
	s.refs.setMax(cfg.FingerprintCacheEntries)
	s.cache.max = cfg.WordCountCacheEntries
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) load() error {
	v, err := s.getUint64(metaKey("schema"))
	if err != nil {
		return err
	}
	applied, err := s.AppliedIndexes()
	if err != nil {
		return err
	}
	empty := v == 0
	for _, a := range applied {
		if a != 0 {
			empty = false
		}
	}
	switch {
	case empty && v == 0:
		if err := s.db.Set(metaKey("schema"), binary.BigEndian.AppendUint64(nil, schemaVersion), pebble.NoSync); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	case v == 3:
		// Schema 4 only adds records whose key is in the log; a schema 3
		// store is a schema 4 store without any. Marked 4, and flushed,
		// before anything writes one, so that an older binary rebuilds
		// rather than misreads it.
		if err := s.db.Set(metaKey("schema"), binary.BigEndian.AppendUint64(nil, schemaVersion), pebble.NoSync); err != nil {
			return fmt.Errorf("upgrade schema version 3 to %d: %w", schemaVersion, err)
		}
		if err := s.db.Flush(); err != nil {
			return fmt.Errorf("upgrade schema version 3 to %d: %w", schemaVersion, err)
		}
	case v != schemaVersion:
		return fmt.Errorf("schema %d, want %d: %w", v, schemaVersion, ErrSchemaChanged)
	}
	// All projections are applied in one batch, so they agree; if they ever
	// do not (a projection added by a newer version), replay rebuilds them.
	first := applied[Projections[0]]
	for name, a := range applied {
		if a != first {
			return fmt.Errorf("projection %s applied %d but %s applied %d: %w", name, a, Projections[0], first, ErrSchemaChanged)
		}
	}
	s.applied = first
	s.appliedNow.Store(uint64(first))
	keys, err := s.getUint64(metaKey("keys"))
	if err != nil {
		return err
	}
	s.keys = int64(keys)
	pc := s.cfg.Ptree
	pc.KeyPrefix = []byte{prefixPtree}
	s.cfg.Ptree = pc
	tree, err := ptree.Open(s.db, pc)
	if err != nil {
		return fmt.Errorf("open prefix tree: %w", err)
	}
	s.tree = tree
	if err := s.admin.load(s); err != nil {
		return fmt.Errorf("load blocked fingerprints: %w", err)
	}
	if s.hp, err = openHockeypuck(s); err != nil {
		return err
	}
	s.startPresence(0)
	return nil
}

// startPresence builds a presence filter for the store as it is, when the
// configuration has one, with room for capacity keys (0: as many as the
// store's key count suggests). The caller holds applyMu or no applier
// runs yet.
func (s *Store) startPresence(capacity int64) {
	if s.cfg.PresenceFilter {
		s.presence.rebuild(s, max(capacity, capacityFor(s.keys)))
	}
}

// Close closes the database. It does not wait for an applier: stop it first.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	close(s.notify)
	s.mu.Unlock()
	s.presence.close() // its scan holds a snapshot
	// Without a WAL, unflushed memtables would be applied again from the
	// log at the next start; flushing makes a clean start instant.
	flushErr := s.db.Flush()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close projections: %w", err)
	}
	if flushErr != nil {
		return fmt.Errorf("flush projections: %w", flushErr)
	}
	return nil
}

// DB exposes the Pebble database for read-only uses by other packages
// (recon reads prefix-tree nodes from a snapshot of it). Never write to it.
func (s *Store) DB() *pebble.DB { return s.db }

// PtreeConfig returns the prefix tree configuration, with its key prefix,
// for ptree.ReadNode on a snapshot of DB().
func (s *Store) PtreeConfig() ptree.Config { return s.cfg.Ptree }

// Applied returns the log index every projection has applied.
func (s *Store) Applied() eventlog.Index {
	return eventlog.Index(s.appliedNow.Load())
}

// AppliedNotify returns a channel closed when Applied next changes.
func (s *Store) AppliedNotify() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

func (s *Store) setApplied(idx eventlog.Index) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applied = idx
	s.appliedNow.Store(uint64(idx))
	if !s.closed {
		close(s.notify)
		s.notify = make(chan struct{})
	}
}

// BulkApplied returns the last log index the bulk path applied since Open,
// 0 if it did not run: the rest was applied event by event.
func (s *Store) BulkApplied() eventlog.Index {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.bulkLast
}

// AppliedIndexes returns the applied index stored for each projection.
func (s *Store) AppliedIndexes() (map[string]eventlog.Index, error) {
	out := make(map[string]eventlog.Index, len(Projections))
	for _, p := range Projections {
		v, err := s.getUint64(appliedKey(p))
		if err != nil {
			return nil, err
		}
		out[p] = eventlog.Index(v)
	}
	return out, nil
}

// KeyCount returns the number of live keys.
func (s *Store) KeyCount() (int64, error) {
	v, err := s.getUint64(metaKey("keys"))
	return int64(v), err
}

func (s *Store) getUint64(k []byte) (uint64, error) {
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %q: %w", k, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("read %q: %d bytes, want 8: %w", k, len(v), errBadRecord)
	}
	return binary.BigEndian.Uint64(v), nil
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// pebbleLogger adapts zerolog to Pebble's Logger interface.
type pebbleLogger struct{ l zerolog.Logger }

func (p pebbleLogger) Infof(format string, args ...interface{}) {
	p.l.Debug().Str("component", "pebble").Msgf(format, args...)
}

func (p pebbleLogger) Errorf(format string, args ...interface{}) {
	p.l.Error().Str("component", "pebble").Msgf(format, args...)
}

func (p pebbleLogger) Fatalf(format string, args ...interface{}) {
	p.l.Error().Str("component", "pebble").Msgf(format, args...)
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// PtreeElements returns the number of hashes in the recon prefix tree.
func (s *Store) PtreeElements() int {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.tree.NumElements()
}
