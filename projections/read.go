package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Errors of word search, with the texts SKS master answers (hkp.md §4.2);
// clients match on them.
var (
	ErrTooManyResponses       = errors.New("Too many responses, unable to process query")
	ErrInsufficientlySpecific = errors.New("Insufficiently specific words: provide at least one more specific keyword")
)

// Reader is what lookups read from: the DB itself or a snapshot of it.
type Reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

// lookupGate bounds how many lookups are inside a Pebble point read at
// once: lookupSlots, a few per P. Without it, 64 connections' gets that
// miss every cache (every fingerprint cycled, 64 connections on 2 cores)
// all ran Pebble's reads at once, and its block cache — a read-write lock
// per shard, 4 shards per P, a write lock for every block read from disk —
// formed lock convoys: a writer waiting for readers that sat in the Go run
// queue behind 60 other goroutines, every new reader waiting for that
// writer, each hand-off costing a trip through the run queue. Execution
// traces showed chains of requests each waiting 40-50 ms on one shard, the
// longest requests of the benchmark (docs/benchmarks.md, stall work of
// issue 4). With the gate at most lookupSlots goroutines contend for the
// shards, and the others wait in a first-come queue, parked rather than
// runnable. The slots are held only for the Get itself, never while
// waiting for anything else, so the gate cannot deadlock; several slots
// per P keep reads that go to disk from holding up the others.
//
// The zero value is ready to use. Iterators (word search, scans) are not
// gated: they read blocks later, as they move.
type lookupGate struct {
	once  sync.Once
	slots chan struct{}
}

// lookupSlots is the number of lookups a lookupGate lets into Pebble at
// once.
func lookupSlots() int { return max(8, 4*runtime.GOMAXPROCS(0)) }

func (g *lookupGate) enter() {
	g.once.Do(func() { g.slots = make(chan struct{}, lookupSlots()) })
	g.slots <- struct{}{}
}

func (g *lookupGate) leave() { <-g.slots }

// gatedReader is a Reader whose point reads pass through a lookupGate.
type gatedReader struct {
	r Reader
	g *lookupGate
}

func (r gatedReader) Get(key []byte) ([]byte, io.Closer, error) {
	r.g.enter()
	defer r.g.leave()
	return r.r.Get(key)
}

func (r gatedReader) NewIter(o *pebble.IterOptions) (*pebble.Iterator, error) {
	return r.r.NewIter(o)
}

// lookupReader is what lookups read the database through: point reads
// of keys never stored answered from the presence filter, the others
// gated (lookupGate).
func (s *Store) lookupReader() Reader {
	return presenceReader{r: gatedReader{r: s.db, g: &s.gate}, p: &s.presence}
}

// applyReader is what the applier reads the committed database through:
// point reads of keys never stored answered from the presence filter.
func (s *Store) applyReader() Reader { return presenceReader{r: s.db, p: &s.presence} }

// Latest returns the newest live version of the record rid, or ErrNotFound.
// The returned Record owns its memory.
func (s *Store) Latest(rid []byte) (*Record, error) { return s.latest(s.lookupReader(), rid) }

func (s *Store) latest(r Reader, rid []byte) (*Record, error) {
	v, closer, err := r.Get(latestKey(rid))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read latest %X: %w", rid, err)
	}
	idx, flags, _, err := decodeLatest(v)
	closer.Close()
	if err != nil {
		return nil, err
	}
	if flags&flagDeleted != 0 {
		return nil, ErrNotFound
	}
	return s.version(r, rid, idx)
}

func (s *Store) version(r Reader, rid []byte, idx eventlog.Index) (*Record, error) {
	v, closer, err := r.Get(recordKey(rid, idx))
	if err != nil {
		return nil, fmt.Errorf("read record %X@%d: %w", rid, idx, err)
	}
	defer closer.Close()
	rec, err := decodeRecord(bytes.Clone(rid), idx, bytes.Clone(v))
	if err != nil {
		return nil, err
	}
	if rec.Deleted {
		return nil, ErrNotFound
	}
	if err := s.resolveKey(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// resolveKey reads the key of a record that keeps it in the log (record.go)
// from its event into rec.Key, a copy of its own.
func (s *Store) resolveKey(rec *Record) error {
	if !rec.keyInLog {
		return nil
	}
	return s.readLogKey(rec, func(key []byte) { rec.Key = bytes.Clone(key) })
}

// readLogKey calls fn with the key of rec, which keeps it in the log, read
// in place. The log is append-only and the event durable before the record
// was written, so the event is there; its kind and length are checked so
// that a log and a store that do not belong together give an error rather
// than a wrong key.
func (s *Store) readLogKey(rec *Record, fn func(key []byte)) error {
	if s.cfg.Log == nil {
		return fmt.Errorf("record %X@%d: its key is in the log, and the store was opened without it", rec.RID, rec.Index)
	}
	var mismatch error
	err := s.cfg.Log.ReadFunc(rec.Index, func(ev *eventlog.Event) {
		if ev.Kind != eventlog.KindKeySubmitted || len(ev.Key) != rec.logKeyLen {
			mismatch = fmt.Errorf("record %X@%d: log event is a %s of %d key bytes, want %d: %w", rec.RID, rec.Index, ev.Kind, len(ev.Key), rec.logKeyLen, errBadRecord)
			return
		}
		fn(ev.Key)
	})
	if err != nil {
		return fmt.Errorf("record %X@%d: read its key from the log: %w", rec.RID, rec.Index, err)
	}
	return mismatch
}

// ReadKey calls fn with the key bytes of the version ref names, read in
// place: key is Pebble's buffer (or the log's, for a version kept there),
// valid only during the call, and must be neither modified nor kept. It
// is Version without the copy of the record (a cold op=get armors the key
// and keeps only the armor: the copy was a sixth of what such a get
// allocated). A deletion version gives ErrNotFound and no call.
func (s *Store) ReadKey(ref Ref, fn func(key []byte)) error {
	v, closer, err := s.lookupReader().Get(recordKey(ref.RID, ref.Index))
	if err != nil {
		return fmt.Errorf("read record %X@%d: %w", ref.RID, ref.Index, err)
	}
	defer closer.Close()
	rec, err := decodeRecord(ref.RID, ref.Index, v)
	if err != nil {
		return err
	}
	if rec.Deleted {
		return ErrNotFound
	}
	if rec.keyInLog {
		return s.readLogKey(rec, fn)
	}
	fn(rec.Key)
	return nil
}

// ByHash returns the live key whose SKS hash is h (op=hget, /pks/hashquery).
func (s *Store) ByHash(h pgpkey.KeyHash) (*Record, error) {
	v, closer, err := s.lookupReader().Get(hashKey(h))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read hash %s: %w", h, err)
	}
	rid, ok := ridAt(v, 0)
	rid = bytes.Clone(rid)
	closer.Close()
	if !ok {
		return nil, fmt.Errorf("hash %s: %w", h, errBadRecord)
	}
	rec, err := s.Latest(rid)
	if err != nil {
		return nil, err
	}
	if rec.Hash != h {
		return nil, ErrNotFound // replaced between the two reads
	}
	return rec, nil
}

// ByFingerprint returns the keys whose primary key or a subkey has this
// fingerprint (16, 20 or 32 bytes).
func (s *Store) ByFingerprint(fpr []byte) ([]*Record, error) {
	refs, err := s.FingerprintRefs(fpr)
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, ref := range refs {
		rec, err := s.Version(ref)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// ByKeyID returns the keys whose primary key or a subkey has this 64-bit ID.
func (s *Store) ByKeyID(id pgpkey.KeyID) ([]*Record, error) {
	p := keyIDKey(uint64(id), nil)
	p = p[:len(p)-1] // drop the empty rid's length byte
	return s.scanRIDs(p, len(p), 0)
}

// ByShortID returns the keys whose primary key or a subkey has this 32-bit ID.
func (s *Store) ByShortID(id uint32) ([]*Record, error) {
	p := shortIDKey(id, nil)
	p = p[:len(p)-1]
	return s.scanRIDs(p, len(p), 0)
}

// scanRIDs loads the latest record of every <len><rid> suffix under prefix
// p (the rid starts at byte n), at most limit records when limit > 0.
func (s *Store) scanRIDs(p []byte, n, limit int) ([]*Record, error) {
	rids, err := scanSuffixes(s.db, p, n, limit)
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, rid := range rids {
		rec, err := s.Latest(rid)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

func scanSuffixes(r Reader, p []byte, n, limit int) ([][]byte, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	var rids [][]byte
	for it.First(); it.Valid(); it.Next() {
		rid, ok := ridAt(it.Key(), n)
		if !ok {
			continue
		}
		rids = append(rids, bytes.Clone(rid))
		if limit > 0 && len(rids) >= limit {
			break
		}
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	return rids, nil
}

// SearchLimits bound a word search (sksconf max_matches and
// max_internal_matches; hkp.md §4.2).
type SearchLimits struct {
	MaxMatches         int // result count at which the search fails with ErrTooManyResponses (SKS 500)
	MaxInternalMatches int // smallest per-word count above which it fails with ErrInsufficientlySpecific (SKS 20000)
}

// SearchWords returns the keys whose user IDs contain every word (AND of
// whole words, case-insensitive), newest primary key first, with SKS's
// limits and errors. The words must come from Words. No words, or a word
// nobody has, gives no result and no error.
func (s *Store) SearchWords(words []string, lim SearchLimits) ([]*Record, error) {
	shared, err := s.SearchWordsMeta(words, lim)
	if err != nil {
		return nil, err
	}
	out := copyRecords(shared)
	for _, rec := range out {
		// A version is never rewritten: reading it after the search's
		// snapshot reads the same bytes.
		if err := s.fillKey(s.db, rec); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SearchWordsMeta is SearchWords without the key bytes: every field of the
// records but Key (nil) comes from the word index itself, so a search reads
// no record. FillKey reads a record's key when it is needed (op=index
// answers most keys from entries cached by key hash). Answers are cached
// until the projections apply anything (searchCache), and shared: the
// caller must modify neither the slice nor the records (FillKey a copy).
func (s *Store) SearchWordsMeta(words []string, lim SearchLimits) ([]*Record, error) {
	if len(words) == 0 {
		return nil, nil
	}
	// Read before the snapshot is taken: see searchCache.
	at := s.Applied()
	key := searchKey(words, lim)
	if a, ok := s.results.get(key, at); ok {
		return a.recs, a.err
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	recs, err := searchWords(snap, &s.facts, words, lim)
	if cacheable(err) {
		s.results.put(key, at, searchAnswer{recs: recs, err: err})
	}
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// FillKey reads the key bytes of rec's version into rec.Key. A version is
// never rewritten, so it may be read after the search's snapshot is gone.
func (s *Store) FillKey(rec *Record) error { return s.fillKey(s.lookupReader(), rec) }

func (s *Store) fillKey(r Reader, rec *Record) error {
	full, err := s.version(r, rec.RID, rec.Index)
	if err != nil {
		return err
	}
	rec.Key = full.Key
	return nil
}

// searchWords is SearchWords on r, without the keys.
//
// The per-word counts give the rarest word and SKS's "insufficiently
// specific" decision with one seek per word. Its postings are the
// candidates: each carries the candidate's word signature, which rejects
// most candidates lacking another word with no read; one that passes is
// checked exactly by seeking that word's postings (an iterator opened on
// first use, seeking forward since candidates ascend), rarer words first.
// What a seek finds about a version is kept in facts, so repeated
// searches need no seek. A match's posting carries the rest of its Record.
func searchWords(r Reader, facts *wordFacts, words []string, lim SearchLimits) ([]*Record, error) {
	if len(words) == 0 {
		return nil, nil
	}
	// One iterator over the word index reads every count and then walks
	// the rarest word's postings: seeks inside an open iterator cost less
	// than a point read each.
	wp := []byte{prefixWord}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: wp, UpperBound: prefixEnd(wp)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	counts := make([]uint64, len(words))
	best := 0
	var ck []byte
	for i, w := range words {
		ck = append(append(append(ck[:0], prefixWord), w...), 1)
		if !it.SeekGE(ck) || !bytes.Equal(it.Key(), ck) {
			return nil, it.Error() // a word nobody has
		}
		n, err := decodeCount(it.Value())
		if err != nil {
			return nil, fmt.Errorf("word %q: %w", w, err)
		}
		counts[i] = n
		if n < counts[best] {
			best = i
		}
	}
	if lim.MaxInternalMatches < 0 || counts[best] > uint64(lim.MaxInternalMatches) {
		return nil, ErrInsufficientlySpecific
	}
	others := make([]*posting, 0, len(words)-1)
	for i, w := range words {
		if i != best {
			others = append(others, &posting{word: w, count: counts[i], bits: wordBits(w)})
		}
	}
	sort.SliceStable(others, func(i, j int) bool { return others[i].count < others[j].count })
	defer closePostings(others)
	bp := append(ck[:0], prefixWord)
	bp = append(append(bp, words[best]...), 0)
	bc := &posting{word: words[best], it: it, prefix: bp, n: len(bp)}
	var out []*Record
	var target, fk []byte
	for bc.it.SeekGE(bp); bc.it.Valid() && bytes.HasPrefix(bc.it.Key(), bp); bc.it.Next() {
		v := bc.it.Value()
		if len(v) < postingFixed {
			return nil, fmt.Errorf("posting %q: %w", bc.it.Key(), errBadRecord)
		}
		sig := postingSig(v)
		all := true
		for _, c := range others {
			if !sig.hasBits(c.bits) {
				all = false
				break
			}
		}
		if !all {
			continue
		}
		rid, ok := ridAt(bc.it.Key(), bc.n)
		if !ok {
			return nil, fmt.Errorf("posting %q: %w", bc.it.Key(), errBadRecord)
		}
		rec := &Record{}
		if err := decodePosting(v, rec); err != nil {
			return nil, err
		}
		for _, c := range others {
			fk = appendFactKey(fk[:0], rid, rec.Index, c.word)
			has, known := facts.lookup(fk)
			if !known {
				if c.it == nil {
					if err := c.open(r); err != nil {
						return nil, err
					}
				}
				// The posting of this key under word c, if any, is the
				// first key at or after it. Candidates ascend, so seeks
				// move forward.
				target = append(append(target[:0], c.prefix...), bc.it.Key()[bc.n:]...)
				has = c.it.SeekGE(target) && bytes.Equal(c.it.Key(), target)
				if err := c.it.Error(); err != nil {
					return nil, err
				}
				facts.put(fk, has)
			}
			if !has {
				all = false
				break
			}
		}
		if !all {
			continue
		}
		rec.RID = bytes.Clone(rid)
		out = append(out, rec)
		if lim.MaxMatches > 0 && len(out) >= lim.MaxMatches {
			return nil, ErrTooManyResponses
		}
	}
	if err := bc.it.Error(); err != nil {
		return nil, err
	}
	for _, c := range others {
		if c.it != nil {
			if err := c.it.Error(); err != nil {
				return nil, err
			}
		}
	}
	sortNewestFirst(out)
	return out, nil
}

// SearchEmail returns the keys with a user ID whose address is exactly addr
// (case-insensitive), newest first, at most max (0: no limit).
func (s *Store) SearchEmail(addr string, max int) ([]*Record, error) {
	p := wordKey(prefixEmail, Email("<"+addr+">"), nil)
	if len(p) <= 3 {
		return nil, nil
	}
	p = p[:len(p)-1]
	out, err := s.scanRIDs(p, len(p), max)
	if err != nil {
		return nil, err
	}
	sortNewestFirst(out)
	return out, nil
}

func sortNewestFirst(recs []*Record) {
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Created.After(recs[j].Created) })
}

// ScanAsOf calls fn with every key as it stood right after the event at
// index at was applied, in record-ID order, reading from a snapshot so that
// the daemon may keep applying meanwhile. Records written after at are
// invisible; a key deleted at or before at is skipped. It fails if the store
// has not applied at yet.
func (s *Store) ScanAsOf(at eventlog.Index, fn func(*Record) error) error {
	if applied := s.Applied(); at > applied {
		return fmt.Errorf("scan as of index %d: projections applied only %d", at, applied)
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	p := []byte{prefixRecord}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	defer it.Close()
	// Versions of one record are adjacent, oldest first; remember the last
	// one at or before at and emit it when the record ID changes.
	var pending *Record
	var pendingRID []byte
	emit := func() error {
		if pending != nil && !pending.Deleted {
			if err := s.resolveKey(pending); err != nil {
				return err
			}
			if err := fn(pending); err != nil {
				return err
			}
		}
		pending = nil
		return nil
	}
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		rid, idx, ok := splitRecordKey(k)
		if !ok {
			return fmt.Errorf("record key %X: %w", k, errBadRecord)
		}
		if !bytes.Equal(rid, pendingRID) {
			if err := emit(); err != nil {
				return err
			}
			pendingRID = bytes.Clone(rid)
		}
		if idx > at {
			continue
		}
		rec, err := decodeRecord(pendingRID, idx, bytes.Clone(it.Value()))
		if err != nil {
			return err
		}
		pending = rec
	}
	if err := emit(); err != nil {
		return err
	}
	return it.Error()
}

func splitRecordKey(k []byte) (rid []byte, idx eventlog.Index, ok bool) {
	if len(k) < 2 || k[0] != prefixRecord {
		return nil, 0, false
	}
	l := int(k[1])
	if len(k) != 2+l+8 {
		return nil, 0, false
	}
	return k[2 : 2+l], eventlog.Index(binary.BigEndian.Uint64(k[2+l:])), true
}

// Novel reports whether submitting k would change the store: false when the
// stored key already holds every packet of k. Upload and import paths use it
// to answer repeated submissions without appending them to the log again.
//
// A key whose fingerprint is blocked is never novel: recon and mail drop it
// quietly (recon remembers the hash), and the upload path asks Assess to
// say why.
func (s *Store) Novel(k *pgpkey.Key) (bool, error) {
	a, err := s.Assess(k)
	return a.Novel, err
}

// Assessment is what the store says about a submitted key.
type Assessment struct {
	Blocked bool // the operator blocked (or deleted) its fingerprint; then Novel is false
	Exists  bool // a live version of the key is stored
	Novel   bool // submitting it would change the store
}

// Assess tells whether k is blocked, stored already and novel, with one
// read of each (the upload path needs all three).
func (s *Store) Assess(k *pgpkey.Key) (Assessment, error) {
	var a Assessment
	blocked, err := s.Blocked(k.Fingerprint().Bytes())
	if err != nil || blocked {
		a.Blocked = blocked
		return a, err
	}
	rec, err := s.Latest(RecordID(k))
	if errors.Is(err, ErrNotFound) {
		a.Novel = true
		return a, nil
	}
	if err != nil {
		return a, err
	}
	a.Exists = true
	if rec.Hash == k.Hash() {
		return a, nil
	}
	stored, err := ParseEventKey(rec.Key)
	if err != nil {
		return a, fmt.Errorf("stored key %X does not parse: %w", rec.RID, err)
	}
	a.Novel = !stored.Contains(k)
	return a, nil
}

// HistogramBin counts keys first seen (New) and keys that changed (Updated)
// in one hour or day, by receive time (UTC).
type HistogramBin struct {
	Start        time.Time
	New, Updated int64
}

// Histogram returns the bins of one granularity ("day" or "hour") from since
// to now, newest first, skipping empty bins.
func (s *Store) Histogram(granularity string, since time.Time) ([]HistogramBin, error) {
	var kind byte
	var layout string
	switch granularity {
	case "day":
		kind, layout = 'd', "20060102"
	case "hour":
		kind, layout = 'h', "2006010215"
	default:
		return nil, fmt.Errorf("histogram granularity %q: want day or hour", granularity)
	}
	lo := append([]byte{prefixCounters, kind}, since.UTC().Format(layout)...)
	hi := prefixEnd([]byte{prefixCounters, kind})
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var bins []HistogramBin
	for it.Last(); it.Valid(); it.Prev() {
		t, err := time.Parse(layout, string(it.Key()[2:]))
		v := it.Value()
		if err != nil || len(v) != 16 {
			continue
		}
		bins = append(bins, HistogramBin{Start: t, New: int64(binary.BigEndian.Uint64(v[:8])), Updated: int64(binary.BigEndian.Uint64(v[8:]))})
	}
	return bins, it.Close()
}

// Blocked reports whether the operator blocked (or deleted) the key with
// this primary fingerprint.
func (s *Store) Blocked(fpr []byte) (bool, error) { return s.admin.isBlocked(fpr), nil }

// posting is an iterator over one word's postings, W<word>\x00<len><rid>.
type posting struct {
	word   string
	count  uint64
	bits   [3]uint // wordBits(word)
	it     *pebble.Iterator
	prefix []byte // W<word>\x00
	n      int    // len(prefix): where <len><rid> starts
}

func (c *posting) open(r Reader) error {
	p := wordKey(prefixWord, c.word, nil)
	p = p[:len(p)-1]
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	c.it, c.prefix, c.n = it, p, len(p)
	return nil
}

func closePostings(cs []*posting) {
	for _, c := range cs {
		if c.it != nil {
			c.it.Close()
		}
	}
}
