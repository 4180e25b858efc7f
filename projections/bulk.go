package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/sstable"
	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

// The bulk path builds the projections of an empty store from a long run of
// log events without Pebble's memtables and compactions: events are parsed
// on every core, every projection's entries go through an external sort
// (bounded memory), are written as sstables that do not overlap, and are
// ingested in one atomic step together with every projection's applied
// index. The prefix tree is built from the sorted hashes: in memory
// (ptree.Build) while they fit in Config.BulkPtreeBytes, streaming from an
// external sort of them beyond (ptree.BuildStream, bulkptree.go).
//
// Pass 1 prepares each event (record, index entries) and adds it to the
// sorts as the events come: read from the log (CatchUp: bulkApply) or
// handed over by the log's writer (an import: BulkBuilder). Pass 2 finds
// the cutoff from the sorted record keys; passes 3 (records, latest
// pointers) and 4 (every other index entry) then merge their sorts into
// sstables at the same time, each sort in key ranges merged side by side
// (at least two, so that both cores of the smallest machine are busy), and
// the prefix tree is built beside them.
//
// It covers the leading run of events in which every key is new: it stops
// before the first admin event and before the second version of any key
// (found by the sort), so its end state is by construction what applying
// those events one by one gives (tested against incremental application,
// whole database compared). Events after the cutoff are applied
// incrementally, as are hash collisions and sample-point hashes (the bulk
// result is discarded and nothing was ingested).
//
// Memory: the sorts' buffers (Config.BulkSortBytes for the records and
// for the index entries, up to 2 times that each with the entries and the
// radix sort's scratch space, and an eighth of it for the record keys;
// mapped outside the Go heap). The prefix tree's elements: 24 bytes per
// SKS key up to Config.BulkPtreeBytes (8 MiB, ≈ 350,000 keys), built in
// memory; past that, a sort of their own (up to 1.5 times BulkPtreeBytes
// while adding, its merge's readers after) and a streamed build holding
// at most BulkPtreeBytes of elements at once with their plan, plus a
// summary of each node larger than that (≈ 1 KB; at most keys/350,000 of
// them per depth) — built in memory, the SKS keyspace's six million keys
// peak at 412 MiB (BenchmarkBulkElemsKeyspace). The rejected and
// unknown-kind events (10 bytes each) go to a small sort (256 KiB), not a
// slice. What is left grows with the dump's time span, not its keys: the
// stats counters per hour of the events' times (pass 3; an import's
// events share a few hours), ≈ 100 bytes per hour; and a fingerprint's
// list of record IDs, as long as the value stored for it.
//
// While merging, a reader and an open file per run read,
// and no merge reads more than sortFanIn (64) runs, whatever the dump
// size: a sort that spilled more (the SKS keyspace: about 1,000 runs of
// records and 600 of index entries) first merges consecutive runs into
// larger ones (cascade; 64 readers of runReadBytes, 16 MiB, and a 1 MiB
// writer per sort, the two sorts side by side), then each of its up to 4
// key ranges merges at most 64 runs with readers of runReadBytes/4
// (16 MiB per sort, 256 open files). Spilled runs and sstables go to a
// temporary directory beside the database, removed afterwards; the merges
// free the runs' pages as they read them, and merged runs are removed.

// errBulkFallback says the bulk path cannot build this range exactly; the
// caller applies it incrementally instead.
var errBulkFallback = errors.New("projections: bulk path not applicable")

// bulkProjections are the projections the bulk path builds. NB: a
// projection added to Projections must be built here too (or the bulk path
// falls back to incremental application for every empty store): the bulk
// path writes the applied index of each projection it builds, and all
// applied indexes must agree.
var bulkProjections = []string{ProjectionKeys, ProjectionSearch, ProjectionPtree}

// bulkPrep is what the parallel stage derives from one event.
type bulkPrep struct {
	idx    eventlog.Index
	kind   eventlog.Kind
	origin eventlog.Origin
	bad    bool // a KeySubmitted whose key does not parse
	sks    bool // the key is SKS-compatible: its hash goes into the prefix tree
	hash   [16]byte
	recKey []byte
	val    []byte // origin(1) time-ns(8 BE) then the encoded record (encodeRecord)
	// index holds the key's index entries (hash, fingerprint, key IDs,
	// search terms), each as uvarint key length, uvarint value length, key,
	// value; every value ends with the event's index (8 BE), so that the
	// entries of events after the cutoff, known only at the end, can be
	// left out then.
	index []byte
}

// prepareBulk derives from one event its record and every index entry
// (pass 1 sorts both, so that only merges are left after the last event).
// The record key, value and index entries are appended to *arena and
// alias it (see bulkArenas).
//
// key, when not nil, is ev.Key already parsed (ParseEventKey) by the
// writer of the event.
func prepareBulk(idx eventlog.Index, ev *eventlog.Event, key *pgpkey.Key, arena *[]byte) bulkPrep {
	p := bulkPrep{idx: idx, kind: ev.Kind, origin: ev.Origin}
	if ev.Kind != eventlog.KindKeySubmitted {
		return p
	}
	if key == nil {
		var err error
		if key, err = ParseEventKey(ev.Key); err != nil {
			p.bad = true
			return p
		}
	}
	rid := RecordID(key)
	rec := &Record{
		RID:     rid,
		Index:   idx,
		Hash:    key.Hash(),
		SKS:     key.SKSCompatible(),
		Created: creationTime(key.Primary.Body),
	}
	p.sks, p.hash = rec.SKS, rec.Hash
	a := *arena
	if need := 2 + len(rid) + 8 + 9 + 64 + key.MarshalSize() + 2048; cap(a)-len(a) < need {
		// A fresh arena rather than growing this one: what was
		// appended so far stays where it is (the batch's earlier
		// events alias it).
		a = make([]byte, 0, max(need, bulkArenaBytes))
	}
	start := len(a)
	a = append(a, prefixRecord)
	a = appendRID(a, rid)
	a = binary.BigEndian.AppendUint64(a, uint64(idx))
	p.recKey = a[start:len(a):len(a)]
	// The record's header (encodeRecord without key bytes), then the
	// canonical key written in place: no copy of the key made to be
	// copied again.
	start = len(a)
	a = append(a, byte(ev.Origin))
	a = binary.BigEndian.AppendUint64(a, uint64(ev.Time.UnixNano()))
	a = append(a, encodeRecord(rec)...)
	a = key.AppendMarshal(a)
	p.val = a[start:len(a):len(a)]

	var flags byte
	if rec.SKS {
		flags |= flagSKS
	}
	// The index entries: each one's uvarint lengths, its key (built by
	// layout.go's append builders in kb, reused), its value and the
	// event's index, appended to the arena. Building keys with the
	// allocating builders cost about 25 allocations a key.
	start = len(a)
	var ridvBuf [1 + 255]byte
	ridv := appendRID(ridvBuf[:0], rid) // <len><rid>: hash and fingerprint entries' value
	var kbBuf [128]byte
	kb := kbBuf[:0]
	entry := func(k, v []byte) {
		a = binary.AppendUvarint(a, uint64(len(k)))
		a = binary.AppendUvarint(a, uint64(len(v)+8))
		a = append(append(a, k...), v...)
		a = binary.BigEndian.AppendUint64(a, uint64(idx))
	}
	kb = appendHashKey(kb[:0], rec.Hash)
	entry(kb, ridv)
	var fprBuf [32]byte
	ids := func(id pgpkey.SubkeyID) {
		// F lists hold record IDs in the order they were added: by index,
		// which follows the fingerprint in the sort key.
		kb = appendFprKey(kb[:0], id.Fingerprint.AppendTo(fprBuf[:0]))
		kb = binary.BigEndian.AppendUint64(kb, uint64(idx))
		entry(kb, ridv)
		kb = appendKeyIDKey(kb[:0], uint64(id.KeyID), rid)
		entry(kb, nil)
		kb = appendShortIDKey(kb[:0], id.KeyID.Short(), rid)
		entry(kb, nil)
	}
	ids(key.Identity())
	for _, id := range key.SubkeyIDs() {
		ids(id)
	}
	// The search terms: every word and e-mail address of the user IDs,
	// each word's posting carrying the signature of all of them.
	type term struct {
		prefix byte
		s      string
	}
	var termBuf [32]term
	terms := termBuf[:0]
	var sig wordSig
	for _, u := range key.UserIDs() {
		for _, w := range Words(u) {
			terms = append(terms, term{prefixWord, w})
			sig.add(w)
		}
		if e := Email(u); e != "" {
			terms = append(terms, term{prefixEmail, e})
		}
	}
	var postingBuf [postingFixed + 2*binary.MaxVarintLen64]byte
	posting := appendPosting(postingBuf[:0], idx, flags, rec.Hash, rec.Created, sig)
	for _, t := range terms {
		var v []byte
		if t.prefix == prefixWord {
			v = posting
		}
		kb = appendWordKey(kb[:0], t.prefix, t.s, rid)
		entry(kb, v)
	}
	// If the entries outgrew the arena, append moved them (and only
	// them: start is where they begin in the new array as well).
	p.index = a[start:len(a):len(a)]
	*arena = a
	return p
}

// bulkArenaBytes is the size of a fresh arena: a worker's share of a
// batch of events (2,048 of the corpus's 1.4 KB keys, with their index
// entries, on 2 workers is ≈ 2.5 MB).
const bulkArenaBytes = 4 << 20

// bulkArenas recycles the arenas prepared events are written into. Each
// event's record and index entries used to be allocated on their own
// (≈ 6 KB a key with the growing of its entries: 620 MB for the 100k
// corpus, a third of an import's allocations, and garbage collection and
// fresh memory to match), while pass 1 copies them into the sorts at once
// and keeps nothing. A batch's arenas go back once pass 1 has added the
// batch.
//
// The arenas are mapped outside the Go heap, as huge pages where the
// kernel gives them (adviseHugePages): ≈ 10 of 4 MiB live through a bulk
// build, and on the heap they raised the heap the collector lets grow by
// twice that, in fresh pages at ≈ 15 µs each on the benchmark VM. An
// arena grown by append past its mapping (a very large key) is Go memory
// as before. release unmaps them all; nothing may use an arena after.
type bulkArenas struct {
	free chan []byte
	// mapArena maps n bytes outside the Go heap (nil: mapArenaMem); on
	// an error get falls back to Go memory.
	mapArena func(n int) ([]byte, error)

	mu       sync.Mutex
	mapped   [][]byte // every arena mapped and not yet unmapped
	released bool
}

// bulkArenasKept bounds the arenas kept for reuse: on 2 workers about 8
// are in flight (a batch being prepared, two waiting, one being added).
// Arenas grown past 2 × bulkArenaBytes (a very large key) are not kept, so
// the free list holds at most 64 MiB.
const bulkArenasKept = 8

func newBulkArenas() *bulkArenas { return &bulkArenas{free: make(chan []byte, bulkArenasKept)} }

// mapArenaMem maps n bytes of zeroed memory and asks for huge pages.
func mapArenaMem(n int) ([]byte, error) {
	m, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("bulk: map arena: %w", err)
	}
	_ = adviseHugePages(m) // a hint: small pages where it fails
	return m, nil
}

func (a *bulkArenas) get() []byte {
	if a == nil {
		return make([]byte, 0, bulkArenaBytes)
	}
	select {
	case b := <-a.free:
		return b[:0]
	default:
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.released {
		mapArena := a.mapArena
		if mapArena == nil {
			mapArena = mapArenaMem
		}
		if m, err := mapArena(bulkArenaBytes); err == nil {
			a.mapped = append(a.mapped, m)
			return m[:0]
		}
	}
	return make([]byte, 0, bulkArenaBytes)
}

// put returns a batch's arenas; nothing may use the batch after.
func (a *bulkArenas) put(b *bulkBatch) {
	if a == nil {
		return
	}
	for _, m := range b.arenas {
		if cap(m) > 2*bulkArenaBytes {
			continue
		}
		select {
		case a.free <- m:
		default:
			a.unmap(m)
		}
	}
	b.arenas = nil
}

// unmap unmaps m if it is one of the mapped arenas (Go memory is left to
// the collector).
func (a *bulkArenas) unmap(m []byte) {
	if cap(m) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, mm := range a.mapped {
		if unsafe.SliceData(mm) == unsafe.SliceData(m) {
			_ = syscall.Munmap(mm) // only fails for a range not mapped
			a.mapped = slices.Delete(a.mapped, i, i+1)
			return
		}
	}
}

// release unmaps every mapped arena, kept or handed out; get hands out Go
// memory after. Nothing may use an arena after (the bulk build has ended).
func (a *bulkArenas) release() {
	if a == nil {
		return
	}
	for {
		select {
		case <-a.free:
			continue
		default:
		}
		break
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.mapped {
		_ = syscall.Munmap(m)
	}
	a.mapped, a.released = nil, true
}

// bulkBatch is a batch of prepared events and the arenas they alias.
type bulkBatch struct {
	preps  []bulkPrep
	arenas [][]byte
}

// bulkValue is a record's value in the records sort.
type bulkValue struct {
	origin eventlog.Origin
	time   time.Time
	rec    []byte
}

func decodeBulkValue(v []byte) (bulkValue, error) {
	var b bulkValue
	if len(v) < 9 {
		return b, fmt.Errorf("bulk value: %w", errBadRecord)
	}
	b.origin = eventlog.Origin(v[0])
	b.time = time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))).UTC()
	b.rec = v[9:]
	return b, nil
}

// ridOfRecordKey splits a recordKey into its record ID and index.
func ridOfRecordKey(k []byte) ([]byte, eventlog.Index, bool) {
	if len(k) < 2 || k[0] != prefixRecord || len(k) != 2+int(k[1])+8 {
		return nil, 0, false
	}
	return k[2 : 2+int(k[1])], eventlog.Index(binary.BigEndian.Uint64(k[2+int(k[1]):])), true
}

// bulkApply builds the projections of events [1, target] (or of the
// leading part it can build exactly) into the empty store and ingests
// them. It returns errBulkFallback, with nothing changed, when it cannot.
func (s *Store) bulkApply(ctx context.Context, log *eventlog.Log, target eventlog.Index) (ApplyStats, error) {
	b, err := s.newBulkBuild()
	if err != nil {
		return ApplyStats{}, err
	}
	defer b.discard()
	if err := s.bulkScan(ctx, log, 1, target, b.arenas, b.addFromLog); err != nil {
		return ApplyStats{}, err
	}
	return b.finish(ctx)
}

// bulkBuild is one run of the bulk path: pass 1 hands it prepared events
// in log order (add), finish builds and ingests. Until finish ingests,
// everything it wrote is in a temporary directory (discard removes it).
type bulkBuild struct {
	s     *Store
	tmp   string
	start time.Time
	// records holds each record by its key; rids the record keys alone,
	// to find the cutoff without reading the records twice; index every
	// other entry (values suffixed with their event's index).
	records, rids, index *sorter
	// cutoff is the first index not to build, once known from pass 1 (an
	// admin event); 0 until then.
	cutoff eventlog.Index
	fed    eventlog.Index // the last index add was given
	// fromLog counts the events read back from the log (addFromLog), not
	// handed over by the log's writer.
	fromLog int64
	// asides are the rejected and unknown-kind events, counted if before
	// the cutoff: a sort (by index, as they come) rather than a slice, so
	// that a log of garbage does not grow memory (10 bytes each, see
	// addAside).
	asides *sorter
	arenas *bulkArenas
	// elems are the SKS hashes of the records added, by index, for the
	// prefix tree: gathered in pass 1 so that the tree can be built
	// beside passes 3 and 4 rather than after the records' merge.
	elems *bulkElems
}

// asideSortBytes is the asides sort's buffer: an import appends no
// rejected events, and a replayed log has few.
const asideSortBytes = 256 << 10

// addAside notes a rejected (bad) or unknown-kind event: its index (8 BE)
// as the key, its origin and bad flag as the value.
func (b *bulkBuild) addAside(idx eventlog.Index, origin eventlog.Origin, bad bool) error {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], uint64(idx))
	v := [2]byte{byte(origin), 0}
	if bad {
		v[1] = 1
	}
	return b.asides.add(k[:], v[:])
}

// newBulkBuild starts a bulk build of the empty store, or returns
// errBulkFallback when the store is not empty.
func (s *Store) newBulkBuild() (*bulkBuild, error) {
	if s.Applied() != 0 || s.keys != 0 || !slices.Equal(Projections, bulkProjections) {
		return nil, errBulkFallback
	}
	tmp := filepath.Join(s.dir, "bulk.tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("bulk: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("bulk: %w", err)
	}
	// Passes 3 and 4 merge each sort in key ranges at once, at least two
	// so that they keep two cores busy: one merge of the records and one
	// of the index entries, each feeding an sstable writer, left a core
	// idle for about a third of the build after the last append. At most
	// 4: every range's merge opens every run (at most sortFanIn), and the
	// runs' readers then take what one merge's took (runReadBytes shared,
	// at least runReadMin each).
	parts := min(max(2, s.cfg.Workers), 4)
	b := &bulkBuild{
		s: s, tmp: tmp, start: time.Now(), arenas: newBulkArenas(),
		records: newPartSorter(tmp, "records", s.cfg.BulkSortBytes, parts, recordGroup),
		rids:    newSorter(tmp, "rids", max(1, s.cfg.BulkSortBytes/8)),
		index:   newPartSorter(tmp, "index", s.cfg.BulkSortBytes, parts, indexGroup),
		asides:  newSorter(tmp, "asides", asideSortBytes),
		elems:   newBulkElems(tmp, s.cfg.BulkPtreeBytes),
	}
	// Passes 3 and 4 read each range once.
	b.records.consume, b.index.consume = true, true
	return b, nil
}

// recordGroup is the part of a record key (K<len><rid><index>) that the
// versions of one key share: its record ID.
func recordGroup(k []byte) []byte {
	if len(k) >= 8+2 {
		return k[:len(k)-8]
	}
	return k
}

// indexGroup is the part of an index entry's key that every entry the
// index pass writes together shares: a fingerprint's list (F<len><fpr>
// then the event index) and a word's postings and count (W<word> then 0
// or 1). Other entries stand alone (equal keys sort together anyway).
func indexGroup(k []byte) []byte {
	switch {
	case len(k) > 8 && k[0] == prefixFpr:
		return k[:len(k)-8]
	case len(k) > 1 && k[0] == prefixWord:
		if i := bytes.IndexByte(k, 0); i > 0 {
			return k[:i]
		}
	}
	return k
}

// discard removes the temporary files and frees the sorts' memory (after
// finish too).
func (b *bulkBuild) discard() {
	b.arenas.release()
	b.records.free()
	b.rids.free()
	b.index.free()
	b.asides.free()
	b.elems.free()
	os.RemoveAll(b.tmp)
}

// add is pass 1 for one prepared event, in log order; it returns false at
// the first admin event (the bulk part ends before it).
func (b *bulkBuild) add(p *bulkPrep) (bool, error) {
	if b.cutoff != 0 {
		return false, nil
	}
	b.fed = p.idx
	switch {
	case p.kind == eventlog.KindKeyBlocked || p.kind == eventlog.KindKeyUnblocked || p.kind == eventlog.KindKeyDeleted:
		b.cutoff = p.idx
		return false, nil
	case p.kind != eventlog.KindKeySubmitted || p.bad:
		return true, b.addAside(p.idx, p.origin, p.bad)
	}
	if err := b.rids.add(p.recKey, nil); err != nil {
		return false, err
	}
	if p.sks {
		if err := b.elems.add(ptree.Elem{Hash: p.hash, Order: uint64(p.idx)}); err != nil {
			return false, err
		}
	}
	for ix := p.index; len(ix) > 0; {
		kl, n := binary.Uvarint(ix)
		ix = ix[n:]
		vl, n := binary.Uvarint(ix)
		ix = ix[n:]
		if err := b.index.add(ix[:kl], ix[kl:kl+vl]); err != nil {
			return false, err
		}
		ix = ix[kl+vl:]
	}
	return true, b.records.add(p.recKey, p.val)
}

// addFromLog is add for an event read from the log.
func (b *bulkBuild) addFromLog(p *bulkPrep) (bool, error) {
	b.fromLog++
	return b.add(p)
}

// finish runs passes 2 to 4 over what add was given and ingests the
// result with every projection's applied index. The caller must have made
// the log durable up to the last index it added.
func (b *bulkBuild) finish(ctx context.Context) (ApplyStats, error) {
	s, tmp, start := b.s, b.tmp, b.start
	var total ApplyStats
	rids := b.rids
	cutoff := b.cutoff
	if cutoff == 0 {
		cutoff = b.fed + 1
	}
	if err := ctx.Err(); err != nil {
		return total, err
	}
	scanned := time.Now()

	// Pass 2 over the sorted record keys: the first second version of a
	// key is where the bulk part ends.
	it, err := rids.iter()
	if err != nil {
		return total, err
	}
	var prevRID []byte
	for {
		k, _, ok, err := it.next()
		if err != nil {
			it.close()
			return total, err
		}
		if !ok {
			break
		}
		rid, idx, valid := ridOfRecordKey(k)
		if !valid {
			it.close()
			return total, fmt.Errorf("bulk: bad record key %x", k)
		}
		if prevRID != nil && bytes.Equal(rid, prevRID) && idx < cutoff {
			cutoff = idx
		}
		prevRID = append(prevRID[:0], rid...)
	}
	it.close()
	if cutoff <= 1 {
		return total, errBulkFallback
	}
	last := cutoff - 1

	// Passes 3 and 4 at once: each key range of the records' sort (the
	// records and their latest pointers, in record-ID order) and of the
	// index entries' sort merged straight into sstables of its own on its
	// own goroutine, and the prefix tree built from the hashes of pass 1
	// beside them. The ranges do not overlap, so neither do the files.
	wopts := s.opts.MakeWriterOptions(len(s.opts.Levels)-1, s.db.FormatMajorVersion().MaxTableFormat())
	var writers []*sstWriter
	newWriter := func(name string) *sstWriter {
		w := &sstWriter{dir: tmp, name: name, opts: wopts, target: sstTargetBytes}
		writers = append(writers, w)
		return w
	}
	defer func() {
		for _, w := range writers {
			w.finish()
		}
	}()
	// The two sorts are sealed side by side: beyond sortFanIn runs each
	// merges runs first (cascade), a pass over all its pairs.
	var indexSealed sync.WaitGroup
	var indexSealErr error
	indexSealed.Add(1)
	go func() {
		defer indexSealed.Done()
		indexSealErr = b.index.seal()
	}()
	recordsSealErr := b.records.seal()
	elemsSealErr := b.elems.seal()
	indexSealed.Wait()
	if err := errors.Join(recordsSealErr, elemsSealErr, indexSealErr); err != nil {
		return total, err
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()
	passesStart := time.Now()
	var errMu sync.Mutex
	var passErr error
	setErr := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if passErr == nil {
			passErr = err
			stop.Store(true)
		}
	}
	var recordsTook, indexTook atomic.Int64 // nanoseconds, the longest range
	took := func(d *atomic.Int64) {
		t := int64(time.Since(passesStart))
		for {
			old := d.Load()
			if t <= old || d.CompareAndSwap(old, t) {
				return
			}
		}
	}
	parts := make([]bulkRecordsPart, b.records.nparts())
	for p := range parts {
		kw, lw := newWriter(fmt.Sprintf("K%d", p)), newWriter(fmt.Sprintf("L%d", p))
		// Records are key material and signatures, which do not
		// compress: Snappy took ≈ 0.15 s of a 100k import's CPU to save
		// 3 % of the records' 143 MB (the other tables keep the store's
		// compression).
		kw.opts.Compression = sstable.NoCompression
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer took(&recordsTook)
			if err := b.writeRecords(p, kw, lw, last, &stop, &parts[p]); err != nil {
				setErr(err)
			}
		}()
	}
	for p := range b.index.nparts() {
		iw := newWriter(fmt.Sprintf("idx%d", p))
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer took(&indexTook)
			if err := b.writeIndex(p, iw, last, &stop); err != nil {
				setErr(err)
			}
		}()
	}
	pw := newWriter("P")
	var ptreeStats ptree.StreamStats
	wg.Add(1)
	go func() {
		defer wg.Done()
		var err error
		ptreeStats, err = b.elems.build(s.cfg.Ptree, last, pw.add)
		if err := errors.Join(errPtreeBuild(err), b.elems.free()); err != nil {
			setErr(err)
		}
	}()
	wg.Wait()
	if passErr != nil {
		return total, passErr
	}
	counters := make(map[string][2]uint64)
	byOrigin := make(map[eventlog.Origin]ApplyStats)
	var keys int64
	for _, part := range parts {
		keys += part.keys
		for k, c := range part.counters {
			t := counters[k]
			t[0] += c[0]
			t[1] += c[1]
			counters[k] = t
		}
		for o, st := range part.byOrigin {
			t := byOrigin[o]
			t.add(st)
			byOrigin[o] = t
		}
	}
	if err := b.countAsides(last, byOrigin); err != nil {
		return total, err
	}

	// Counters, the key count and every projection's applied index.
	mw := newWriter("meta")
	ck := make([]string, 0, len(counters))
	for k := range counters {
		ck = append(ck, k)
	}
	slices.Sort(ck)
	for _, k := range ck {
		c := counters[k]
		v := binary.BigEndian.AppendUint64(nil, c[0])
		v = binary.BigEndian.AppendUint64(v, c[1])
		if err := mw.add(append([]byte{prefixCounters}, k...), v); err != nil {
			return total, err
		}
	}
	// The schema version too: Open wrote it to the memtable only (no WAL),
	// and without it a crash after the ingest would leave applied indexes
	// of an unknown schema.
	meta := [][2][]byte{
		{metaKey("keys"), binary.BigEndian.AppendUint64(nil, uint64(keys))},
		{metaKey("schema"), binary.BigEndian.AppendUint64(nil, schemaVersion)},
	}
	for _, p := range bulkProjections {
		meta = append(meta, [2][]byte{appliedKey(p), binary.BigEndian.AppendUint64(nil, uint64(last))})
	}
	slices.SortFunc(meta, func(a, b [2][]byte) int { return bytes.Compare(a[0], b[0]) })
	for _, m := range meta {
		if err := mw.add(m[0], m[1]); err != nil {
			return total, err
		}
	}
	var paths []string
	for _, w := range writers {
		if err := w.finish(); err != nil {
			return total, err
		}
		paths = append(paths, w.paths...)
	}
	built := time.Now()
	if err := ctx.Err(); err != nil {
		return total, err
	}
	// Flush the memtable first (it holds Open's schema key, no WAL): an
	// ingest overlapping it is queued in memory as a flushable (Pebble's
	// ingest-as-flushable), which without a WAL is lost by a crash before
	// the next flush, so a killed import built the store again
	// (TestImportCrashPoints "bulk ingested"). Not overlapping, the
	// ingest is one manifest edit, durable when Ingest returns.
	if err := s.db.Flush(); err != nil {
		return total, fmt.Errorf("bulk: flush before ingest: %w", err)
	}
	// One ingest: every file, and with them the applied indexes, become
	// visible together or not at all. The presence filter does not hold
	// what it adds: none answers until one is built from the result.
	s.presence.invalidate()
	if err := s.db.Ingest(paths); err != nil {
		return total, fmt.Errorf("bulk: ingest: %w", err)
	}
	s.refs.reset()
	s.keys = keys
	s.startPresence(0)
	s.tree.Reset()
	s.mu.Lock()
	if s.totals == nil {
		s.totals = make(map[eventlog.Origin]ApplyStats)
	}
	for o, st := range byOrigin {
		t := s.totals[o]
		t.add(st)
		s.totals[o] = t
		total.add(st)
	}
	s.mu.Unlock()
	s.bulkLast = last
	s.bulkPtree = bulkPtreeStats{streamed: b.elems.streamed(), peak: b.elems.peak, build: ptreeStats}
	s.setApplied(last)
	s.log.Info().Uint64("applied", uint64(last)).Int64("keys", keys).Int("sstables", len(paths)).Int64("read_from_log", b.fromLog).
		Dur("scan", scanned.Sub(start)).Dur("build", built.Sub(scanned)).Dur("records_pass", time.Duration(recordsTook.Load())).
		Dur("index_pass", time.Duration(indexTook.Load())).Dur("ingest", time.Since(built)).
		Bool("ptree_streamed", b.elems.streamed()).Int("ptree_big_nodes", ptreeStats.BigNodes).
		Msg("bulk applied")
	return total, nil
}

// countAsides counts the rejected and unknown-kind events up to last into
// byOrigin.
func (b *bulkBuild) countAsides(last eventlog.Index, byOrigin map[eventlog.Origin]ApplyStats) error {
	it, err := b.asides.iter()
	if err != nil {
		return err
	}
	defer it.close()
	for {
		k, v, ok, err := it.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if len(k) != 8 || len(v) != 2 {
			return fmt.Errorf("bulk: aside %x %x: %w", k, v, errBadRecord)
		}
		if eventlog.Index(binary.BigEndian.Uint64(k)) > last {
			continue
		}
		origin := eventlog.Origin(v[0])
		o := byOrigin[origin]
		if v[1] != 0 {
			o.Rejected++
		} else {
			o.Skipped++
		}
		byOrigin[origin] = o
	}
}

// bulkRecordsPart is what pass 3 counts in one key range of the records.
type bulkRecordsPart struct {
	keys     int64
	counters map[string][2]uint64 // stats histograms: new keys by day and hour
	byOrigin map[eventlog.Origin]ApplyStats
}

// writeRecords is pass 3 for key range p of the records: the records of
// events up to last into kw, their latest pointers into lw, and what they
// count into out. It stops early when stop is set.
func (b *bulkBuild) writeRecords(p int, kw, lw *sstWriter, last eventlog.Index, stop *atomic.Bool, out *bulkRecordsPart) error {
	it, err := b.records.iterPart(p)
	if err != nil {
		return err
	}
	defer it.close()
	out.counters = make(map[string][2]uint64)
	out.byOrigin = make(map[eventlog.Origin]ApplyStats)
	for n := 0; ; n++ {
		if n%4096 == 0 && stop.Load() {
			return errBulkStopped
		}
		k, v, ok, err := it.next()
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		rid, idx, _ := ridOfRecordKey(k)
		if idx > last {
			continue
		}
		bv, err := decodeBulkValue(v)
		if err != nil {
			return err
		}
		rec, err := decodeRecord(rid, idx, bv.rec)
		if err != nil {
			return err
		}
		if err := kw.add(k, bv.rec); err != nil {
			return err
		}
		var flags byte
		if rec.SKS {
			flags |= flagSKS
		}
		if err := lw.add(latestKey(rid), encodeLatest(idx, flags, rec.Hash)); err != nil {
			return err
		}
		out.keys++
		o := out.byOrigin[bv.origin]
		o.Added++
		out.byOrigin[bv.origin] = o
		t := bv.time
		for _, ck := range []string{"d" + t.Format("20060102"), "h" + t.Format("2006010215")} {
			c := out.counters[ck]
			c[0]++
			out.counters[ck] = c
		}
	}
}

// errBulkStopped ends a pass because another one failed (its error is
// the one reported).
var errBulkStopped = errors.New("bulk: pass stopped")

// writeIndex is pass 4 for key range p of the index entries: those of
// events up to last, merged from their sort into w, grouped where a value
// gathers several entries (fingerprint lists), with each word's count
// after its postings (a range holds whole groups: indexGroup). It returns
// errBulkFallback at two keys with one SKS hash, and stops early when
// stop is set.
func (b *bulkBuild) writeIndex(p int, w *sstWriter, last eventlog.Index, stop *atomic.Bool) (err error) {
	it, err := b.index.iterPart(p)
	if err != nil {
		return err
	}
	defer it.close()
	var fprGroup, fprList []byte
	flushFpr := func() error {
		if fprGroup == nil {
			return nil
		}
		err := w.add(fprGroup, fprList)
		fprGroup, fprList = nil, nil
		return err
	}
	var prevHash []byte
	var words wordCounter // the word counts follow each word's postings
	for n := 0; ; n++ {
		if n%4096 == 0 && stop.Load() {
			return errBulkStopped
		}
		k, v, ok, err := it.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if len(v) < 8 {
			return fmt.Errorf("bulk: index entry %x: %w", k, errBadRecord)
		}
		if eventlog.Index(binary.BigEndian.Uint64(v[len(v)-8:])) > last {
			continue
		}
		v = v[:len(v)-8]
		if err := words.next(k, w.add); err != nil {
			return err
		}
		if k[0] == prefixFpr {
			g := k[:len(k)-8]
			if fprGroup != nil && !bytes.Equal(g, fprGroup) {
				if err := flushFpr(); err != nil {
					return err
				}
			}
			if fprGroup == nil {
				fprGroup = bytes.Clone(g)
			}
			dup := false
			for _, r := range ridList(fprList) {
				dup = dup || bytes.Equal(r, v[1:])
			}
			if !dup {
				fprList = append(fprList, v...)
			}
			continue
		}
		if err := flushFpr(); err != nil {
			return err
		}
		if k[0] == prefixHash {
			if bytes.Equal(k, prevHash) {
				// Two keys with one SKS hash: the incremental rules decide.
				return errBulkFallback
			}
			prevHash = append(prevHash[:0], k...)
		}
		if err := w.add(k, v); err != nil {
			return err
		}
	}
	return errors.Join(flushFpr(), words.flush(w.add))
}

// bulkScan reads events [from, target] in batches, prepares each batch on
// cfg.Workers goroutines (into arenas from ar) and hands the results to fn
// in log order until fn returns false.
func (s *Store) bulkScan(ctx context.Context, log *eventlog.Log, from, target eventlog.Index, ar *bulkArenas, fn func(*bulkPrep) (bool, error)) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan bulkBatch, 2)
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(batches)
		it := log.NewIterator(from, target+1)
		for {
			idxs := make([]eventlog.Index, 0, s.cfg.BatchEvents)
			evs := make([]*eventlog.Event, 0, s.cfg.BatchEvents)
			for len(evs) < s.cfg.BatchEvents {
				idx, ev, err := it.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					readErr = fmt.Errorf("bulk: read log: %w", err)
					return
				}
				idxs = append(idxs, idx)
				evs = append(evs, ev)
			}
			if len(evs) == 0 {
				return
			}
			select {
			case batches <- s.prepareBatch(idxs, evs, nil, ar):
			case <-ctx.Done():
				return
			}
		}
	}()
	var err error
scan:
	for batch := range batches {
		for i := range batch.preps {
			var more bool
			if more, err = fn(&batch.preps[i]); err != nil || !more {
				break scan
			}
		}
		ar.put(&batch)
	}
	cancel()
	for range batches {
	}
	wg.Wait()
	if err != nil {
		return err
	}
	if readErr != nil {
		return readErr
	}
	return parent.Err()
}

// prepareBatch prepares events on cfg.Workers goroutines, each writing
// into arenas from ar; keys, when not nil, holds the events' keys already
// parsed (nil entries are parsed).
func (s *Store) prepareBatch(idxs []eventlog.Index, evs []*eventlog.Event, keys []*pgpkey.Key, ar *bulkArenas) bulkBatch {
	out := make([]bulkPrep, len(evs))
	workers := min(s.cfg.Workers, len(evs))
	arenas := make([][][]byte, workers)
	var pw sync.WaitGroup
	for w := 0; w < workers; w++ {
		pw.Add(1)
		go func(w int) {
			defer pw.Done()
			a := ar.get()
			for i := w; i < len(evs); i += workers {
				var k *pgpkey.Key
				if keys != nil {
					k = keys[i]
				}
				prev := a
				out[i] = prepareBulk(idxs[i], evs[i], k, &a)
				if unsafe.SliceData(a) != unsafe.SliceData(prev) {
					// A fresh arena: the full one goes back too.
					arenas[w] = append(arenas[w], prev)
				}
			}
			arenas[w] = append(arenas[w], a)
		}(w)
	}
	pw.Wait()
	b := bulkBatch{preps: out}
	for _, as := range arenas {
		b.arenas = append(b.arenas, as...)
	}
	return b
}
