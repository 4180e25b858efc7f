package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
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

// Latest returns the newest live version of the record rid, or ErrNotFound.
// The returned Record owns its memory.
func (s *Store) Latest(rid []byte) (*Record, error) { return latest(s.db, rid) }

func latest(r Reader, rid []byte) (*Record, error) {
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
	return version(r, rid, idx)
}

func version(r Reader, rid []byte, idx eventlog.Index) (*Record, error) {
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
	return rec, nil
}

// ByHash returns the live key whose SKS hash is h (op=hget, /pks/hashquery).
func (s *Store) ByHash(h pgpkey.KeyHash) (*Record, error) {
	v, closer, err := s.db.Get(hashKey(h))
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
//
// It reads one iterator per word from one snapshot: the rarest word's
// postings are the candidates, and each other word's iterator seeks
// forward to each candidate in turn (postings are sorted by record ID), so
// a candidate costs a seek inside an open iterator — usually within the
// block it is on — rather than a point Get that builds an iterator stack
// over every level (that was 60 % of an e-mail search's CPU).
func (s *Store) SearchWords(words []string, lim SearchLimits) ([]*Record, error) {
	if len(words) == 0 {
		return nil, nil
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	cs, err := openPostings(snap, words)
	defer closePostings(cs)
	if err != nil {
		return nil, err
	}
	best, err := rarestWord(cs, lim.MaxInternalMatches)
	if err != nil || best < 0 {
		return nil, err
	}
	var out []*Record
	var target []byte
	bc := cs[best]
	for bc.it.First(); bc.it.Valid(); bc.it.Next() {
		rid, ok := ridAt(bc.it.Key(), bc.n)
		if !ok {
			continue
		}
		all := true
		for i, c := range cs {
			if i == best {
				continue
			}
			// The posting of rid under word i, if any, is the first key at or
			// after it. Candidates ascend, so every seek moves forward.
			target = append(append(target[:0], c.prefix...), bc.it.Key()[bc.n:]...)
			if !c.it.SeekGE(target) || !bytes.Equal(c.it.Key(), target) {
				all = false
				break
			}
		}
		if !all {
			continue
		}
		rec, err := latest(snap, rid)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
		if lim.MaxMatches > 0 && len(out) >= lim.MaxMatches {
			return nil, ErrTooManyResponses
		}
	}
	for _, c := range cs {
		if err := c.it.Error(); err != nil {
			return nil, err
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
	it     *pebble.Iterator
	prefix []byte // W<word>\x00
	n      int    // len(prefix): where <len><rid> starts
}

// openPostings opens an iterator per word, bounded to its postings. The
// caller closes them with closePostings, also on error.
func openPostings(r Reader, words []string) ([]*posting, error) {
	cs := make([]*posting, 0, len(words))
	for _, w := range words {
		p := wordKey(prefixWord, w, nil)
		p = p[:len(p)-1]
		it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return cs, err
		}
		cs = append(cs, &posting{it: it, prefix: p, n: len(p)})
	}
	return cs, nil
}

func closePostings(cs []*posting) {
	for _, c := range cs {
		c.it.Close()
	}
}

// rarestWord finds the word with the fewest postings by walking every
// word's postings in lockstep until one runs out: the cost is the number
// of words times the rarest word's count, however common the other words
// are ("org" in an e-mail search is on nearly every key). It returns that
// word's index, -1 when a word has no posting at all, or
// ErrInsufficientlySpecific when every word has more than maxInternal.
// It leaves the iterators anywhere.
func rarestWord(cs []*posting, maxInternal int) (int, error) {
	for _, c := range cs {
		if !c.it.First() {
			return -1, c.it.Error()
		}
	}
	for count := 0; ; count++ {
		if count > maxInternal {
			return -1, ErrInsufficientlySpecific
		}
		for i, c := range cs {
			if !c.it.Valid() {
				if err := c.it.Error(); err != nil {
					return -1, err
				}
				return i, nil
			}
			c.it.Next()
		}
	}
}
