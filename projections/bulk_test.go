package projections_test

import (
	"context"
	"io"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// openStoreBulk opens a store whose catch-up of an empty store takes the
// bulk path from bulkMin events (0: never), with tiny sorts so that runs
// spill to disk and are merged.
func openStoreBulk(tb testing.TB, dir string, bulkMin int) *testStore {
	tb.Helper()
	return openStoreBulkSort(tb, dir, bulkMin, 16<<10)
}

// openStoreBulkSort is openStoreBulk with the sorts' buffer size (0: the
// defaults, for benchmarks).
func openStoreBulkSort(tb testing.TB, dir string, bulkMin, sortBytes int) *testStore {
	tb.Helper()
	return openStoreBulkConfig(tb, dir, bulkMin, sortBytes, nil)
}

// openStoreBulkConfig is openStoreBulkSort with a last change to the
// store's configuration (nil: none).
func openStoreBulkConfig(tb testing.TB, dir string, bulkMin, sortBytes int, change func(*projections.Config)) *testStore {
	tb.Helper()
	lcfg := eventlog.DefaultConfig()
	lcfg.NoSync = true
	lcfg.Logger = zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)
	log, err := eventlog.Open(filepath.Join(dir, "log"), lcfg)
	if err != nil {
		tb.Fatal(err)
	}
	scfg := projections.DefaultConfig()
	scfg.BulkMinEvents = bulkMin
	if sortBytes > 0 {
		// Small batches and sorts: more batches and spilled runs.
		scfg.BatchEvents = 64
		scfg.BulkSortBytes = sortBytes
	}
	scfg.Logger = lcfg.Logger
	if change != nil {
		change(&scfg)
	}
	store, err := projections.Open(filepath.Join(dir, "db"), scfg)
	if err != nil {
		tb.Fatal(err)
	}
	ts := &testStore{log: log, store: store, dir: dir}
	tb.Cleanup(func() { ts.close() })
	return ts
}

// copyLog appends events [first, end) of from's log to to's log (end 0:
// to the end).
func copyLog(tb testing.TB, from, to *testStore, first, end eventlog.Index) {
	tb.Helper()
	it := from.log.NewIterator(first, end)
	var evs []*eventlog.Event
	for {
		_, ev, err := it.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if _, err := to.log.Append(context.Background(), evs...); err != nil {
		tb.Fatal(err)
	}
}

func compareDBs(tb testing.TB, inc, bulk *projections.Store) {
	tb.Helper()
	a, b := dumpDB(tb, inc), dumpDB(tb, bulk)
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			tb.Fatalf("entry %q (%d bytes) missing after the bulk path", k, len(v))
		}
		if w != v {
			tb.Fatalf("entry %q differs: incremental %x, bulk %x", k, v, w)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			tb.Fatalf("entry %q only after the bulk path", k)
		}
	}
	if inc.Applied() != bulk.Applied() {
		tb.Fatalf("applied %d incrementally, %d with the bulk path", inc.Applied(), bulk.Applied())
	}
}

// bulkTestLog builds one log — distinct keys, then repeated and partial
// keys (merges, no-ops), a key that does not parse, an admin deletion and a
// block, more keys — applied event by event into the store it returns,
// with the number of distinct keys at its start.
func bulkTestLog(t *testing.T) (*testStore, int) {
	t.Helper()
	keys := append(fixtureKeys(t), debianKeys(t, 200)...)
	rng := rand.New(rand.NewSource(3))
	rng.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	inc := openStoreBulk(t, t.TempDir(), 0)
	distinct := len(keys) * 2 / 3
	var raws [][]byte
	for _, k := range keys[:distinct] {
		raws = append(raws, k.Raw)
	}
	raws = append(raws, []byte("\x99\x00\x01garbage"))
	submit(t, inc, raws...)
	// Then repeats (no-ops) and the rest of the keys.
	raws = raws[:0]
	for i := 0; i < 20; i++ {
		raws = append(raws, keys[rng.Intn(distinct)].Raw)
	}
	for _, k := range keys[distinct:] {
		raws = append(raws, k.Raw)
	}
	submit(t, inc, raws...)
	victim, err := pgpkey.ParseKey(keys[5])
	if err != nil {
		t.Fatal(err)
	}
	admin(t, inc, eventlog.KindKeyDeleted, victim.Fingerprint())
	blocked, err := pgpkey.ParseKey(keys[distinct+1])
	if err != nil {
		t.Fatal(err)
	}
	admin(t, inc, eventlog.KindKeyBlocked, blocked.Fingerprint())
	submit(t, inc, keys[distinct+1].Raw, keys[5].Raw)
	catchUp(t, inc)

	return inc, distinct
}

// TestBulkEqualsIncremental applies bulkTestLog's log event by event into
// one store and with the bulk path into another, and compares every Pebble
// entry.
func TestBulkEqualsIncremental(t *testing.T) {
	inc, distinct := bulkTestLog(t)

	for _, tc := range []struct {
		name      string
		upTo      eventlog.Index // events copied before the first catch-up (0: all)
		sortBytes int            // 0: openStoreBulk's (16 KiB)
		// ptreeElems bounds the prefix tree's elements in memory (0: the
		// default, every element in memory).
		ptreeElems int
	}{
		{"whole log", 0, 0, 0}, {"distinct part only", eventlog.Index(distinct + 1), 0, 0},
		// Sorts of 2 KiB: ≈ 270 runs of index entries, more than the
		// fan-in (sortFanIn), so runs are merged first.
		{"cascade merges", 0, 2 << 10, 0},
		// 10 elements in memory: the prefix tree's elements go through
		// their own sort (spilled runs of 5) and the tree is built
		// streaming, its root from a summary; the second version of a
		// key ends the bulk part, so elements past it are dropped.
		{"streamed prefix tree", 0, 0, 10},
		{"streamed prefix tree, distinct part only", eventlog.Index(distinct + 1), 0, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sortBytes := 16 << 10 // openStoreBulk's
			if tc.sortBytes > 0 {
				sortBytes = tc.sortBytes
			}
			bulk := openStoreBulkConfig(t, t.TempDir(), 1, sortBytes, func(c *projections.Config) {
				if tc.ptreeElems > 0 {
					c.BulkPtreeBytes = tc.ptreeElems * 24
				}
			})
			copyLog(t, inc, bulk, 1, tc.upTo)
			st := catchUp(t, bulk)
			if tc.upTo != 0 {
				// The rest arrives later and is applied event by event.
				copyLog(t, inc, bulk, tc.upTo, 0)
				st2 := catchUp(t, bulk)
				st.Added += st2.Added
				st.Rejected += st2.Rejected
				st.Deleted += st2.Deleted
			}
			if got := bulk.store.BulkApplied(); got < eventlog.Index(distinct) {
				t.Fatalf("bulk path applied up to %d, want at least the %d distinct keys", got, distinct)
			}
			if st.Added == 0 || st.Rejected != 1 || st.Deleted != 1 {
				t.Fatalf("stats %+v: want keys added, 1 rejected, 1 deleted", st)
			}
			compareDBs(t, inc.store, bulk.store)
			if inc.store.PtreeElements() != bulk.store.PtreeElements() {
				t.Fatal("prefix trees differ in size")
			}
			streamed, peak, build := projections.BulkPtreeStats(bulk.store)
			if want := tc.ptreeElems > 0; streamed != want {
				t.Fatalf("prefix tree elements sorted externally: %v, want %v", streamed, want)
			}
			if tc.ptreeElems > 0 {
				if peak > tc.ptreeElems {
					t.Fatalf("pass 1 held %d prefix tree elements, bound %d", peak, tc.ptreeElems)
				}
				if build.BigNodes == 0 || build.MaxHeld > build.MaxElems {
					t.Fatalf("streamed build: %d large nodes, held %d elements, bound %d", build.BigNodes, build.MaxHeld, build.MaxElems)
				}
			}
			// Reopened, the store holds the same and has nothing to redo.
			bulk.close()
			again := openStoreBulk(t, bulk.dir, 1)
			if st := catchUp(t, again); st != (projections.ApplyStats{}) {
				t.Fatalf("reopened store applied again: %+v", st)
			}
			compareDBs(t, inc.store, again.store)
		})
	}
}

// TestBulkInterruptedLeavesStoreEmpty cancels the bulk path and checks
// nothing of it is visible, then that catching up again ends as
// incremental application does.
func TestBulkInterruptedLeavesStoreEmpty(t *testing.T) {
	keys := debianKeys(t, 120)
	inc := openStoreBulk(t, t.TempDir(), 0)
	var raws [][]byte
	for _, k := range keys {
		raws = append(raws, k.Raw)
	}
	submit(t, inc, raws...)
	catchUp(t, inc)
	bulk := openStoreBulk(t, t.TempDir(), 1)
	copyLog(t, inc, bulk, 1, 0)
	before := dumpDB(t, bulk.store)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := bulk.store.CatchUp(ctx, bulk.log, nil); err == nil {
		t.Fatal("cancelled catch-up reported success")
	}
	if got := dumpDB(t, bulk.store); bulk.store.Applied() != 0 || len(got) != len(before) {
		t.Fatalf("after a cancelled bulk path: applied %d, %d entries (before: %d)", bulk.store.Applied(), len(got), len(before))
	}
	catchUp(t, bulk)
	if bulk.store.BulkApplied() == 0 {
		t.Fatal("bulk path did not run")
	}
	compareDBs(t, inc.store, bulk.store)
}
