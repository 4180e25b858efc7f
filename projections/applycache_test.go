package projections

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// storedCount reads word's posting count from the database (0: no entry).
func storedCount(t *testing.T, s *Store, w string) uint64 {
	t.Helper()
	v, closer, err := s.db.Get(wordCountKey(w))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	n, err := decodeCount(v)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkApplyCache fails unless every count and counter the apply cache
// holds equals the database's, and returns how many counts it holds.
func checkApplyCache(t *testing.T, s *Store, when string) int {
	t.Helper()
	if s.cache.at != s.Applied() {
		t.Fatalf("%s: cache at %d, store applied %d", when, s.cache.at, s.Applied())
	}
	n := 0
	for _, m := range []map[string]uint64{s.cache.cur, s.cache.prev} {
		for w, c := range m {
			if got := storedCount(t, s, w); got != c {
				t.Fatalf("%s: word %q cached count %d, stored %d", when, w, c, got)
			}
			n++
		}
	}
	for k, c := range s.cache.counters {
		v, closer, err := s.db.Get(append([]byte{prefixCounters}, k...))
		if err != nil {
			t.Fatalf("%s: counter %q cached but not stored: %v", when, k, err)
		}
		if !bytes.Equal(v, c[:]) {
			t.Fatalf("%s: counter %q cached %x, stored %x", when, k, c, v)
		}
		closer.Close()
	}
	return n
}

// withUserID returns k with one more (unsigned) user ID.
func withUserID(k *pgpkey.Key, uid string) []byte {
	g := pgpkey.Group{Packet: pgpkey.Packet{Tag: pgpkey.TagUserID, Body: []byte(uid)}}
	return (&pgpkey.Key{Primary: k.Primary, UIDs: append(slices.Clone(k.UIDs), g), Subkeys: k.Subkeys}).Marshal()
}

// eventsFrom numbers submissions and admin events from first, parsed.
func eventsFrom(t *testing.T, first eventlog.Index, evs ...*eventlog.Event) []parsedEvent {
	t.Helper()
	out := make([]parsedEvent, len(evs))
	for i, ev := range evs {
		out[i] = parseEvent(first+eventlog.Index(i), ev)
		if out[i].err != nil {
			t.Fatal(out[i].err)
		}
	}
	return out
}

func submitted(raw []byte) *eventlog.Event {
	return &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), Key: raw}
}

// TestApplyCacheEqualsStore: the word counts and stats counters the
// applier keeps in memory equal the stored ones through additions,
// updates that add words, deletions, a batch that fails at commit and its
// retry, and a reopen; the store equals a replay of the same events (a
// store that never cached), and a cache bounded to a few words still
// yields the same database.
func TestApplyCacheEqualsStore(t *testing.T) {
	dir := t.TempDir()
	open := func(cfg Config) *Store {
		s, err := Open(filepath.Join(dir, "db"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open(DefaultConfig())
	defer func() { s.Close() }()
	var all []*eventlog.Event
	apply := func(batch int, evs ...*eventlog.Event) {
		t.Helper()
		applyAll(t, s, eventsFrom(t, s.Applied()+1, evs...), batch)
		all = append(all, evs...)
	}

	base := parsedCorpus(t, 60, 5, 1, "")
	var keys []*pgpkey.Key
	var evs []*eventlog.Event
	for _, pe := range base {
		keys = append(keys, pe.key)
		evs = append(evs, pe.ev)
	}
	apply(7, evs[:40]...)
	if checkApplyCache(t, s, "after additions") == 0 {
		t.Fatal("nothing cached after additions")
	}
	// Updates: new user IDs with new and shared words; a deletion.
	apply(3,
		submitted(withUserID(keys[1], "Quuxcache Common <quux@cache.test>")),
		submitted(withUserID(keys[2], "Quuxcache Other <quux2@cache.test>")),
		&eventlog.Event{Kind: eventlog.KindKeyDeleted, Origin: eventlog.OriginAdmin, Target: keys[3].Fingerprint().Bytes(), Reason: "test", Time: time.Now()},
		submitted(withUserID(keys[4], "Quuxcache Common <quux4@cache.test>")),
	)
	checkApplyCache(t, s, "after updates and a deletion")
	if c, ok := s.cache.count("quuxcache"); !ok || c != 3 {
		t.Fatalf("quuxcache cached as %d, %v; want 3", c, ok)
	}
	apply(2, &eventlog.Event{Kind: eventlog.KindKeyDeleted, Origin: eventlog.OriginAdmin, Target: keys[1].Fingerprint().Bytes(), Reason: "test", Time: time.Now()})
	if c, ok := s.cache.count("quuxcache"); !ok || c != 2 {
		t.Fatalf("quuxcache cached as %d, %v after a deletion; want 2", c, ok)
	}
	checkApplyCache(t, s, "after a second deletion")

	// A batch that fails at commit: a word it counts has a stored count
	// that does not decode, and the cache does not know it (reopened).
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(DefaultConfig())
	apply(8, submitted(withUserID(keys[5], "Quuxgood <good@cache.test>")))
	if _, ok := s.cache.count("quuxgood"); !ok {
		t.Fatal("quuxgood not cached")
	}
	bad := wordCountKey("zzbadcount")
	if err := s.db.Set(bad, []byte{0xff}, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	failing := eventsFrom(t, s.Applied()+1,
		submitted(withUserID(keys[6], "Quuxgood Zzbadcount <good6@cache.test>")),
		submitted(withUserID(keys[7], "Quuxgood <good7@cache.test>")),
		submitted(withUserID(keys[59], "Quuxgood <good59@cache.test>")))
	before, elements := s.Applied(), s.tree.NumElements()
	s.applyMu.Lock()
	err := s.applyBatch(failing)
	s.applyMu.Unlock()
	if !errors.Is(err, errBadRecord) {
		t.Fatalf("batch over an undecodable count: %v; want errBadRecord", err)
	}
	if s.Applied() != before {
		t.Fatal("a failed batch moved the applied index")
	}
	if n := s.tree.NumElements(); n != elements {
		t.Fatalf("prefix tree has %d elements after a failed batch, %d before", n, elements)
	}
	checkApplyCache(t, s, "after a failed commit")
	if c, _ := s.cache.count("quuxgood"); c != 1 {
		t.Fatalf("quuxgood cached as %d after a failed batch; want 1", c)
	}
	// Repaired (no key has the word: no count), the retry applies.
	if err := s.db.Delete(bad, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	apply(8, failing[0].ev, failing[1].ev, failing[2].ev)
	checkApplyCache(t, s, "after the retry")
	if c, _ := s.cache.count("quuxgood"); c != 4 {
		t.Fatalf("quuxgood cached as %d after the retry; want 4", c)
	}
	apply(5, evs[40:59]...)
	checkApplyCache(t, s, "after more additions")

	// A replay with no cache, and one with a cache of 4 words, in other
	// batch sizes, write the same database.
	for _, c := range []struct {
		entries, batch int
	}{{0, 1000}, {4, 3}} {
		cfg := DefaultConfig()
		cfg.WordCountCacheEntries = c.entries
		r, err := Open(filepath.Join(t.TempDir(), "db"), cfg)
		if err != nil {
			t.Fatal(err)
		}
		applyAll(t, r, eventsFrom(t, 1, all...), c.batch)
		if n := checkApplyCache(t, r, fmt.Sprintf("replay with %d entries", c.entries)); n > c.entries {
			t.Fatalf("cache of %d entries holds %d", c.entries, n)
		}
		a, b := dumpPebble(t, s.db), dumpPebble(t, r.db)
		if len(a) != len(b) {
			t.Fatalf("cached store has %d entries, replay with a cache of %d has %d", len(a), c.entries, len(b))
		}
		for k, v := range a {
			if b[k] != v {
				t.Fatalf("entry %q differs between the cached store and a replay with a cache of %d", k, c.entries)
			}
		}
		r.Close()
	}
}

func dumpPebble(t *testing.T, db *pebble.DB) map[string]string {
	t.Helper()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for it.First(); it.Valid(); it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestApplyCacheValid: a cache current at another applied index than the
// store's (the bulk path ingested counts behind its back) empties itself.
func TestApplyCacheValid(t *testing.T) {
	c := applyCache{max: 8}
	c.valid(5)
	c.putCount("a", 1)
	c.putCounter("d20261101", [16]byte{1})
	c.valid(5)
	if _, ok := c.count("a"); !ok {
		t.Fatal("count dropped while current")
	}
	c.valid(9)
	if _, ok := c.count("a"); ok {
		t.Fatal("count kept after the applied index moved behind the cache's back")
	}
	if _, ok := c.counter("d20261101"); ok {
		t.Fatal("counter kept after the applied index moved behind the cache's back")
	}
}

// TestApplyCacheBounded: the counts never exceed max, the newest are kept,
// and a count found in the previous generation survives the next turn.
func TestApplyCacheBounded(t *testing.T) {
	c := applyCache{max: 8}
	for i := range 100 {
		c.putCount(fmt.Sprint("w", i), uint64(i))
		if n := len(c.cur) + len(c.prev); n > 8 {
			t.Fatalf("%d counts cached with max 8", n)
		}
		if n, ok := c.count(fmt.Sprint("w", i)); !ok || n != uint64(i) {
			t.Fatalf("newest count w%d: %d, %v", i, n, ok)
		}
	}
	// w96..w99 are current, w92..w95 previous: using w92 moves it.
	if _, ok := c.count("w92"); !ok {
		t.Fatal("w92 dropped early")
	}
	for i := 100; i < 103; i++ {
		c.putCount(fmt.Sprint("w", i), uint64(i))
	}
	if _, ok := c.count("w92"); !ok {
		t.Fatal("w92 dropped though used")
	}
	off := applyCache{}
	off.putCount("a", 1)
	if _, ok := off.count("a"); ok {
		t.Fatal("a cache of 0 entries cached")
	}
}

// TestSortedBatchEqualsBatch: committing a batch sorted and with its
// overwritten operations dropped (BenchmarkCommitOrder's variant) leaves
// the database as committing it as written does.
func TestSortedBatchEqualsBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	open := func() *pebble.DB {
		db, err := pebble.Open(t.TempDir(), &pebble.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	plain, sorted := open(), open()
	for round := range 5 {
		pb := plain.NewBatch()
		for i := range 500 {
			k := []byte(fmt.Sprintf("k%03d", rng.IntN(200)))
			if rng.IntN(4) == 0 {
				if err := pb.Delete(k, nil); err != nil {
					t.Fatal(err)
				}
			} else if err := pb.Set(k, []byte(fmt.Sprint(round, i)), nil); err != nil {
				t.Fatal(err)
			}
		}
		sb, err := sortedBatch(sorted, pb)
		if err != nil {
			t.Fatal(err)
		}
		if sb.Count() >= pb.Count() {
			t.Fatalf("sorted batch has %d operations of %d: none dropped", sb.Count(), pb.Count())
		}
		r := sb.Reader()
		var last []byte
		for {
			_, k, _, ok, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if last != nil && bytes.Compare(last, k) >= 0 {
				t.Fatalf("sorted batch has %q after %q", k, last)
			}
			last = k
		}
		if err := sb.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		if err := pb.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		sb.Close()
		a, b := dumpPebble(t, plain), dumpPebble(t, sorted)
		if len(a) != len(b) {
			t.Fatalf("round %d: %d entries committed as written, %d sorted", round, len(a), len(b))
		}
		for k, v := range a {
			if b[k] != v {
				t.Fatalf("round %d: %q is %q committed as written, %q sorted", round, k, v, b[k])
			}
		}
	}
}
