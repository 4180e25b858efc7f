package projections

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
)

// waitPresenceReady waits until the store's presence filter finished its
// scan.
func waitPresenceReady(t *testing.T, s *Store) *presenceFilter {
	t.Helper()
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if f := s.presence.cur.Load(); f != nil && f.ready.Load() {
			return f
		}
	}
	t.Fatal("presence filter not ready within a minute")
	return nil
}

// restartPresence builds a new presence filter, as the applier does,
// under its lock.
func restartPresence(s *Store) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.startPresence(0)
}

// checkPresenceHoldsStored fails unless the filter may hold every key of
// the L, F and H spaces in the database: a miss there would answer "not
// found" for a stored key. It returns how many it checked.
func checkPresenceHoldsStored(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	for _, prefix := range []byte{prefixLatest, prefixFpr, prefixHash} {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefix}, UpperBound: []byte{prefix + 1}})
		if err != nil {
			t.Fatal(err)
		}
		for ok := it.First(); ok; ok = it.Next() {
			n++
			if !s.presence.mayHold(it.Key()) {
				t.Errorf("presence filter lost stored key %q", it.Key())
			}
			if _, closer, err := s.lookupReader().Get(it.Key()); err != nil {
				t.Errorf("lookup of stored key %q: %v", it.Key(), err)
			} else {
				closer.Close()
			}
		}
		it.Close()
	}
	return n
}

// absentKeys are random keys of the filtered spaces, never stored.
func absentKeys(n int) [][]byte {
	var out [][]byte
	for i := range n {
		var b [16]byte
		rand.Read(b[:])
		switch i % 3 {
		case 0:
			out = append(out, latestKey(b[:]))
		case 1:
			out = append(out, fprKey(append(b[:], 1, 2, 3, 4)))
		default:
			out = append(out, hashKey(b))
		}
	}
	return out
}

// missed counts the absent keys the filter answers for.
func missed(s *Store, keys [][]byte) int {
	n := 0
	for _, k := range keys {
		if !s.presence.mayHold(k) {
			n++
		}
	}
	return n
}

// TestPresenceFilterRace: keys applied while a new filter is being built —
// after its snapshot, before its scan — are held once it is ready, as are
// those applied before and after; keys never stored are answered without
// a read.
func TestPresenceFilterRace(t *testing.T) {
	const n = 30
	r, log, s := newUploadFixture(t, n, 21, func(c *Config) { c.BulkMinEvents = 0 })
	ctx := context.Background()
	u := &uploadStream{t: t, r: r, log: log}
	apply := func(k int) {
		for range k {
			u.next(ctx)
		}
		if _, err := s.CatchUp(ctx, log, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitPresenceReady(t, s)
	apply(10) // into the filter built at Open

	release := make(chan struct{})
	s.presence.scanHook = func() { <-release }
	restartPresence(s)
	apply(10) // while the new filter's scan waits
	absent := absentKeys(300)
	if got := missed(s, absent); got != 0 {
		t.Errorf("a filter whose scan has not run answered %d absent keys, want 0", got)
	}
	close(release)
	waitPresenceReady(t, s)
	apply(10) // after
	if got := checkPresenceHoldsStored(t, s); got < 3*n {
		t.Fatalf("checked %d stored keys, want at least %d", got, 3*n)
	}
	if got := missed(s, absent); got < 270 {
		t.Errorf("the filter answered %d of 300 absent keys, want at least 270", got)
	}
	before := s.presence.skipped.Load()
	for _, k := range absent {
		if _, closer, err := s.lookupReader().Get(k); err == nil {
			closer.Close()
			t.Fatalf("absent key %q found", k)
		}
	}
	if got := s.presence.skipped.Load() - before; got < 270 {
		t.Errorf("%d of 300 absent reads skipped, want at least 270", got)
	}
}

// TestPresenceFilterSkipsApplierReads: applying new keys reads none of
// their L, F and H keys from the database (each would miss).
func TestPresenceFilterSkipsApplierReads(t *testing.T) {
	const n = 12
	r, log, s := newUploadFixture(t, n, 22, func(c *Config) { c.BulkMinEvents = 0 })
	ctx := context.Background()
	waitPresenceReady(t, s)
	u := &uploadStream{t: t, r: r, log: log}
	for u.next(ctx) {
	}
	if _, err := s.CatchUp(ctx, log, nil); err != nil {
		t.Fatal(err)
	}
	// Per new key: its latest record, its hash owner and the list of its
	// primary fingerprint at least (subkeys add more); a few may be false
	// positives.
	if got := s.presence.skipped.Load(); got < 3*n-3 {
		t.Errorf("applying %d new keys skipped %d reads, want at least %d", n, got, 3*n-3)
	}
	checkPresenceHoldsStored(t, s)
}

// TestPresenceFilterAfterBulk: the bulk path writes sstables without the
// filter; a filter built before it must not answer for what it ingested.
func TestPresenceFilterAfterBulk(t *testing.T) {
	const n = 40
	r, log, s := newUploadFixture(t, n, 23, func(c *Config) { c.BulkMinEvents = 8 })
	ctx := context.Background()
	waitPresenceReady(t, s) // of the empty store
	u := &uploadStream{t: t, r: r, log: log}
	for u.next(ctx) {
	}
	if _, err := s.CatchUp(ctx, log, nil); err != nil {
		t.Fatal(err)
	}
	if s.BulkApplied() == 0 {
		t.Fatal("the bulk path did not run")
	}
	waitPresenceReady(t, s)
	if got := checkPresenceHoldsStored(t, s); got < 3*n {
		t.Fatalf("checked %d stored keys, want at least %d", got, 3*n)
	}
}

// TestPresenceFilterGrows: a filter that took in more keys than it was
// sized for is replaced by a larger one, which holds every stored key.
func TestPresenceFilterGrows(t *testing.T) {
	const n = 30
	r, log, s := newUploadFixture(t, n, 24, func(c *Config) { c.BulkMinEvents = 0; c.BatchEvents = 4 })
	ctx := context.Background()
	s.presence.minKeys = 16
	restartPresence(s)
	first := waitPresenceReady(t, s)
	u := &uploadStream{t: t, r: r, log: log}
	for u.next(ctx) {
	}
	if _, err := s.CatchUp(ctx, log, nil); err != nil {
		t.Fatal(err)
	}
	f := waitPresenceReady(t, s)
	if f == first || f.capacity <= first.capacity {
		t.Fatalf("filter of capacity %d still in use after %d keys entered (now %d)", first.capacity, first.added.Load(), f.capacity)
	}
	// Sized from what the outgrown filter took in, not from the key count
	// (here 30 keys, whose 8 entries each would be 240): else a store
	// with more entries per key than that would rebuild at every batch.
	if f.capacity < 2*first.added.Load() {
		t.Errorf("the new filter has room for %d, want at least twice the %d its predecessor took in", f.capacity, first.added.Load())
	}
	checkPresenceHoldsStored(t, s)
}

// TestPresenceFilterOff: without the filter every read goes to the
// database.
func TestPresenceFilterOff(t *testing.T) {
	r, log, s := newUploadFixture(t, 5, 25, func(c *Config) { c.BulkMinEvents = 0; c.PresenceFilter = false })
	ctx := context.Background()
	u := &uploadStream{t: t, r: r, log: log}
	for u.next(ctx) {
	}
	if _, err := s.CatchUp(ctx, log, nil); err != nil {
		t.Fatal(err)
	}
	if got := missed(s, absentKeys(30)); got != 0 || s.presence.skipped.Load() != 0 {
		t.Errorf("filter off, yet it answered %d absent keys and skipped %d reads", got, s.presence.skipped.Load())
	}
}

// TestPresenceFilterOutgrownBySize: a filter that took in far more entries
// than the key count suggests (keys with many subkeys, deleted keys'
// records) is replaced by one sized from what it took in, not from the key
// count, so that it is not outgrown again at once.
func TestPresenceFilterOutgrownBySize(t *testing.T) {
	r, log, s := newUploadFixture(t, 2, 26, func(c *Config) { c.BulkMinEvents = 0 })
	ctx := context.Background()
	s.presence.minKeys = 16
	restartPresence(s)
	first := waitPresenceReady(t, s)
	for _, k := range absentKeys(100) { // entries the key count does not foresee
		s.presence.add(k)
	}
	u := &uploadStream{t: t, r: r, log: log}
	u.next(ctx)
	if _, err := s.CatchUp(ctx, log, nil); err != nil {
		t.Fatal(err)
	}
	f := waitPresenceReady(t, s)
	if f == first {
		t.Fatalf("filter of capacity %d still in use after %d entries", first.capacity, first.added.Load())
	}
	if f.capacity < 2*first.added.Load() {
		t.Errorf("the new filter has room for %d, want at least twice the %d its predecessor took in", f.capacity, first.added.Load())
	}
	u.next(ctx)
	if _, err := s.CatchUp(ctx, log, nil); err != nil {
		t.Fatal(err)
	}
	if s.presence.cur.Load() != f {
		t.Error("the new filter was replaced again by the next batch")
	}
	checkPresenceHoldsStored(t, s)
}
