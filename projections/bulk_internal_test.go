package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/sstable"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestBulkFallsBackForUnknownProjection registers a projection the bulk
// path does not build: catching up an empty store must then apply event by
// event (all applied indexes must agree), not skip the new projection.
func TestBulkFallsBackForUnknownProjection(t *testing.T) {
	data, err := os.ReadFile(testenv.RequireFile(t, "/usr/share/keyrings/debian-keyring.gpg", "debian-keyring"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	log, err := eventlog.Open(filepath.Join(dir, "log"), eventlog.Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var evs []*eventlog.Event
	for len(data) > 0 && len(evs) < 40 {
		raw, err := pgpkey.FirstKey(data)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginImport, Time: time.Now(), Key: raw.Raw})
		data = data[len(raw.Raw):]
	}
	if _, err := log.Append(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	saved := Projections
	Projections = append(slices.Clone(Projections), "test-extra")
	defer func() { Projections = saved }()
	cfg := DefaultConfig()
	cfg.BulkMinEvents = 1
	s, err := Open(filepath.Join(dir, "db"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CatchUp(context.Background(), log, nil); err != nil {
		t.Fatal(err)
	}
	if s.BulkApplied() != 0 {
		t.Fatalf("bulk path applied up to %d with a projection it does not build", s.BulkApplied())
	}
	applied, err := s.AppliedIndexes()
	if err != nil {
		t.Fatal(err)
	}
	if applied["test-extra"] != eventlog.Index(len(evs)) {
		t.Fatalf("extra projection applied %d, want %d", applied["test-extra"], len(evs))
	}
}

// The sort orders by the first 8 key bytes as an integer first (by radix
// when there are many): keys that tie there (shorter than 8 bytes and zero-padded, or sharing 8 bytes) must
// still come out in bytes.Compare order, in memory and merged from runs.
func TestSorterOrder(t *testing.T) {
	var keys [][]byte
	for _, k := range []string{"", "\x00", "a", "ab", "ab\x00", "ab\x00\x00", "ab\x00\x01", "abcdefgh", "abcdefgh\x00",
		"abcdefghi", "abcdefgg\xff", "\xff\xff\xff\xff\xff\xff\xff\xff", "\xff\xff\xff\xff\xff\xff\xff\xff\x00", "abcdefgha"} {
		keys = append(keys, []byte(k))
	}
	// A pair larger than a run reader's buffer (runReadBytes) is copied out, the
	// others are read in place.
	keys = append(keys, bytes.Repeat([]byte("z"), 3<<19))
	rng := rand.New(rand.NewPCG(1, 2))
	// Enough keys for the radix sort (radixMin), with long runs of equal
	// 8-byte prefixes.
	for range 3 * radixMin {
		k := make([]byte, rng.IntN(12))
		for i := range k {
			k[i] = "ab\x00\xff"[rng.IntN(4)]
		}
		keys = append(keys, k)
	}
	// And many sharing their first 8 bytes (as the postings of one word),
	// sorted by the next 8 first: tails shorter and longer than 8 bytes.
	for range 2 * radixMin {
		k := []byte("Wgmail\x00\x14")[:6+rng.IntN(3)]
		for range rng.IntN(20) {
			k = append(k, "ab\x00\xff"[rng.IntN(4)])
		}
		keys = append(keys, k)
	}
	for _, limit := range []int{1 << 20, 256, 256 << 10} { // in memory; spilled runs; runs sorted by radix
		s := newSorter(t.TempDir(), "t", limit)
		for _, k := range keys {
			if err := s.add(k, append([]byte("v"), k...)); err != nil {
				t.Fatal(err)
			}
		}
		it, err := s.iter()
		if err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		for {
			k, v, ok, err := it.next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if !bytes.Equal(v, append([]byte("v"), k...)) {
				t.Fatalf("limit %d: key %.20q carries value %.20q", limit, k, v)
			}
			got = append(got, bytes.Clone(k))
		}
		it.close()
		want := slices.Clone(keys)
		slices.SortFunc(want, bytes.Compare)
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("limit %d (%d runs): order differs from bytes.Compare", limit, len(s.runs))
		}
	}
}

// debianEvents returns the first n keys of the Debian keyring as
// KeySubmitted events, with the keys parsed.
func debianEvents(t testing.TB, n int) ([]*eventlog.Event, []*pgpkey.Key) {
	t.Helper()
	data, err := os.ReadFile(testenv.RequireFile(t, "/usr/share/keyrings/debian-keyring.gpg", "debian-keyring"))
	if err != nil {
		t.Fatal(err)
	}
	var evs []*eventlog.Event
	var keys []*pgpkey.Key
	for len(data) > 0 && len(evs) < n {
		raw, err := pgpkey.FirstKey(data)
		if err != nil {
			t.Fatal(err)
		}
		data = data[len(raw.Raw):]
		k, err := ParseEventKey(raw.Raw)
		if err != nil {
			continue
		}
		evs = append(evs, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginImport, Time: time.Now(), Key: raw.Raw})
		keys = append(keys, k)
	}
	return evs, keys
}

// TestBulkPrepareReusesArenas: once a batch's arenas are back, preparing
// the next batch writes the records and index entries into them instead of
// allocating each event's (the 100k corpus allocated 620 MB there).
func TestBulkPrepareReusesArenas(t *testing.T) {
	evs, keys := debianEvents(t, 40)
	var keyBytes int
	idxs := make([]eventlog.Index, len(evs))
	for i, ev := range evs {
		keyBytes += len(ev.Key)
		idxs[i] = eventlog.Index(i + 1)
	}
	s := &Store{cfg: DefaultConfig()}
	s.cfg.Workers = 2
	ar := newBulkArenas()
	prepare := func() {
		b := s.prepareBatch(idxs, evs, keys, ar)
		for i := range b.preps {
			if len(b.preps[i].val) < len(evs[i].Key)/2 || len(b.preps[i].index) == 0 {
				t.Fatalf("event %d prepared without its record or index entries", i)
			}
		}
		ar.put(&b)
	}
	prepare()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 10
	for range runs {
		prepare()
	}
	runtime.ReadMemStats(&after)
	if got := int(after.TotalAlloc-before.TotalAlloc) / runs; got > keyBytes/2 {
		t.Fatalf("preparing %d keys of %d bytes allocated %d bytes per batch", len(evs), keyBytes, got)
	}
}

// TestBulkPrepareArenasKeepEvents: events prepared into arenas that fill
// up (fresh arenas mid-batch, keys larger than an arena's room) keep their
// own bytes: each equals what a lone prepare of that event gives.
func TestBulkPrepareArenasKeepEvents(t *testing.T) {
	evs, keys := debianEvents(t, 300)
	idxs := make([]eventlog.Index, len(evs))
	for i := range evs {
		idxs[i] = eventlog.Index(i + 1)
	}
	s := &Store{cfg: DefaultConfig()}
	s.cfg.Workers = 3
	ar := newBulkArenas()
	// A small arena to start with: most events need a fresh one.
	ar.free <- make([]byte, 0, 1000)
	b := s.prepareBatch(idxs, evs, keys, ar)
	if len(b.arenas) < 2 {
		t.Fatalf("%d arenas for %d events", len(b.arenas), len(evs))
	}
	for i := range evs {
		var own []byte
		want := prepareBulk(idxs[i], evs[i], keys[i], &own)
		got := b.preps[i]
		if !bytes.Equal(got.recKey, want.recKey) || !bytes.Equal(got.val, want.val) || !bytes.Equal(got.index, want.index) {
			t.Fatalf("event %d: prepared bytes differ from a lone prepare", i)
		}
	}
}

// TestBulkRecordTablesUncompressed: the bulk path writes the records'
// sstables without compression (key material and signatures do not
// compress: Snappy saved 3 % of their bytes for 6 % of an import's CPU)
// and every other table with the store's compression.
func TestBulkRecordTablesUncompressed(t *testing.T) {
	evs, _ := debianEvents(t, 60)
	dir := t.TempDir()
	log, err := eventlog.Open(filepath.Join(dir, "log"), eventlog.Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	if _, err := log.Append(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.BulkMinEvents = 1
	s, err := Open(filepath.Join(dir, "db"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CatchUp(context.Background(), log, nil); err != nil {
		t.Fatal(err)
	}
	if s.BulkApplied() == 0 {
		t.Fatal("bulk path not taken")
	}
	// The ingest may have been queued behind the memtable (a flushable
	// ingest): flush it into the levels.
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	levels, err := s.db.SSTables(pebble.WithProperties())
	if err != nil {
		t.Fatal(err)
	}
	var records, others int
	for _, tables := range levels {
		for _, tb := range tables {
			name := tb.Properties.CompressionName
			if tb.Smallest.UserKey[0] == prefixRecord {
				records++
				if name != sstable.NoCompression.String() {
					t.Errorf("records table %s: compression %q", tb.FileNum, name)
				}
			} else if name != sstable.SnappyCompression.String() {
				t.Errorf("table %s from %q: compression %q", tb.FileNum, tb.Smallest.UserKey, name)
			} else {
				others++
			}
		}
	}
	if records == 0 || others == 0 {
		t.Fatalf("%d records tables, %d others", records, others)
	}
}

// TestBulkArenasBounded: the arenas kept for reuse are bounded in number
// and size, whatever batches hand back (a very large key grows an arena).
func TestBulkArenasBounded(t *testing.T) {
	ar := newBulkArenas()
	b := &bulkBatch{arenas: [][]byte{make([]byte, 0, 64<<20)}}
	for range 2 * bulkArenasKept {
		b.arenas = append(b.arenas, make([]byte, 0, bulkArenaBytes))
	}
	ar.put(b)
	if b.arenas != nil {
		t.Fatal("batch keeps its arenas after put")
	}
	if got := len(ar.free); got != bulkArenasKept {
		t.Fatalf("%d arenas kept, want %d", got, bulkArenasKept)
	}
	for range bulkArenasKept {
		if m := ar.get(); cap(m) > 2*bulkArenaBytes || len(m) != 0 {
			t.Fatalf("arena of len %d, cap %d handed out", len(m), cap(m))
		}
	}
}

// TestSorterSpillsReuseWriter: spilling a run allocates no new 1 MiB write
// buffer each time (small sort buffers spill often: ≈ 40 runs for the
// 100k corpus).
func TestSorterSpillsReuseWriter(t *testing.T) {
	s := newSorter(t.TempDir(), "t", 64<<10)
	defer s.free()
	k, v := make([]byte, 16), make([]byte, 1000)
	add := func(n int) {
		for i := range n {
			binary.BigEndian.PutUint64(k, uint64(i))
			if err := s.add(k, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(200) // the first spill makes the writer and maps the buffers
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	add(2000) // ≈ 30 more spills
	runtime.ReadMemStats(&after)
	if len(s.runs) < 20 {
		t.Fatalf("%d runs: the test needs many spills", len(s.runs))
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Fatalf("%d spills allocated %d bytes", len(s.runs)-1, got)
	}
}

// TestSorterParts: a sort read back in key ranges gives, range after
// range, exactly the sorted pairs; the ranges can be read at the same
// time; and no range cuts a group (here: the pairs sharing a key up to
// '/'), in memory and from spilled runs.
func TestSorterParts(t *testing.T) {
	group := func(k []byte) []byte {
		if i := bytes.IndexByte(k, '/'); i >= 0 {
			return k[:i]
		}
		return k
	}
	rng := rand.New(rand.NewPCG(3, 4))
	var keys [][]byte
	// Few large groups, so that the ranges' bounds fall inside them.
	for range 6000 {
		keys = append(keys, fmt.Appendf(nil, "g%d/%08d", rng.IntN(5), rng.IntN(1e8)))
	}
	for range 2000 {
		keys = append(keys, fmt.Appendf(nil, "%08x", rng.Uint32()))
	}
	want := slices.Clone(keys)
	slices.SortFunc(want, bytes.Compare)
	for _, limit := range []int{1 << 20, 16 << 10} { // in memory; spilled runs
		for _, parts := range []int{1, 2, 3, 7} {
			s := newPartSorter(t.TempDir(), "t", limit, parts, group)
			// Each range is read once: with 7 of them the runs' pages are
			// punched out behind the readers too.
			s.consume = parts == 7
			for _, k := range keys {
				if err := s.add(k, append([]byte("v"), k...)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.seal(); err != nil {
				t.Fatal(err)
			}
			if parts > 1 && s.nparts() < 2 {
				t.Fatalf("limit %d, %d parts asked: %d ranges", limit, parts, s.nparts())
			}
			got := make([][][]byte, s.nparts())
			errs := make([]error, s.nparts())
			var wg sync.WaitGroup
			for p := range got {
				wg.Add(1)
				go func() {
					defer wg.Done()
					it, err := s.iterPart(p)
					if err != nil {
						errs[p] = err
						return
					}
					defer it.close()
					for {
						k, v, ok, err := it.next()
						if err != nil || !ok {
							errs[p] = err
							return
						}
						if !bytes.Equal(v, append([]byte("v"), k...)) {
							errs[p] = fmt.Errorf("key %q carries value %q", k, v)
							return
						}
						got[p] = append(got[p], bytes.Clone(k))
					}
				}()
			}
			wg.Wait()
			var all [][]byte
			for p, r := range got {
				if errs[p] != nil {
					t.Fatal(errs[p])
				}
				if p > 0 && len(r) > 0 && len(all) > 0 && bytes.Equal(group(all[len(all)-1]), group(r[0])) {
					t.Fatalf("limit %d, %d parts: group %q cut between ranges %d and %d", limit, parts, group(r[0]), p-1, p)
				}
				all = append(all, r...)
			}
			if !slices.EqualFunc(all, want, bytes.Equal) {
				t.Fatalf("limit %d, %d parts (%d runs, %d ranges): the ranges do not give the sorted pairs", limit, parts, len(s.runs), s.nparts())
			}
			if s.consume {
				s.free()
				continue
			}
			it, err := s.iter()
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for {
				_, _, ok, err := it.next()
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				n++
			}
			it.close()
			if n != len(want) {
				t.Fatalf("limit %d, %d parts: iter gave %d pairs, want %d", limit, parts, n, len(want))
			}
			s.free()
		}
	}
}

// TestBulkGroupsStayWhole: the bounds of the key ranges of the bulk
// sorts are prefixes that keep together what passes 3 and 4 write
// together: a record ID's versions, a fingerprint's list, a word's
// postings (and so its count, W<word>\x01, written after them).
func TestBulkGroupsStayWhole(t *testing.T) {
	rid := bytes.Repeat([]byte{0xab}, 20)
	for _, c := range []struct {
		group   func([]byte) []byte
		members [][]byte
		others  [][]byte // keys of other groups, each on one side of every member
	}{
		{recordGroup, [][]byte{recordKey(rid, 1), recordKey(rid, 1<<40)},
			[][]byte{recordKey(bytes.Repeat([]byte{0xab}, 19), 7), recordKey(append(bytes.Clone(rid), 0), 0), recordKey(bytes.Repeat([]byte{0xac}, 20), 0)}},
		{indexGroup, [][]byte{binary.BigEndian.AppendUint64(fprKey(rid), 1), binary.BigEndian.AppendUint64(fprKey(rid), 99)},
			[][]byte{binary.BigEndian.AppendUint64(fprKey(rid[:19]), 5), hashKey([16]byte{1})}},
		{indexGroup, [][]byte{wordKey(prefixWord, "foo", rid), wordKey(prefixWord, "foo", rid[:10])},
			[][]byte{wordKey(prefixWord, "fo", rid), wordKey(prefixWord, "foobar", rid), wordKey(prefixEmail, "foo", rid)}},
	} {
		for _, m := range c.members {
			g := c.group(m)
			for _, m2 := range c.members {
				if !bytes.HasPrefix(m2, g) {
					t.Fatalf("group %q of %q is not a prefix of member %q", g, m, m2)
				}
			}
			// Every other key is below every member, or at or above the
			// bound and above every member.
			for _, o := range c.others {
				below := bytes.Compare(o, g) < 0
				for _, m2 := range c.members {
					if below != (bytes.Compare(o, m2) < 0) {
						t.Fatalf("bound %q (of %q) separates %q from member %q", g, m, o, m2)
					}
				}
			}
		}
	}
}

// TestSorterConsumeFreesRuns: reading the ranges of a sort that is read
// once frees the run files' pages behind the readers (punched holes), so
// that the sstables written meanwhile reuse memory instead of taking
// fresh pages; the pairs still come back whole and in order.
func TestSorterConsumeFreesRuns(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.Create(filepath.Join(dir, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	probe.Write(make([]byte, 1<<16))
	if err := punchHole(probe, 0, 1<<16); err != nil {
		t.Skipf("the file system of %s cannot punch holes: %v", dir, err)
	}
	probe.Close()
	for _, consume := range []bool{false, true} {
		s := newPartSorter(dir, fmt.Sprintf("c%v", consume), 4<<20, 2, nil)
		s.consume = consume
		k, v := make([]byte, 16), bytes.Repeat([]byte{0x5a}, 1000)
		const n = 40000 // ≈ 40 MB: 10 runs of 4 MiB
		for i := range n {
			binary.BigEndian.PutUint64(k, uint64(i)*0x9e3779b97f4a7c15) // scattered
			if err := s.add(k, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.seal(); err != nil {
			t.Fatal(err)
		}
		blocks := func() (total int64) {
			for _, r := range s.runs {
				var st syscall.Stat_t
				if err := syscall.Stat(r.path, &st); err != nil {
					t.Fatal(err)
				}
				total += st.Blocks * 512
			}
			return total
		}
		before := blocks()
		got := 0
		for p := range s.nparts() {
			it, err := s.iterPart(p)
			if err != nil {
				t.Fatal(err)
			}
			var prev []byte
			for {
				k, v2, ok, err := it.next()
				if err != nil {
					t.Fatal(err)
				}
				if !ok {
					break
				}
				if bytes.Compare(prev, k) > 0 || !bytes.Equal(v, v2) {
					t.Fatalf("consume %v: pair %d out of order or damaged", consume, got)
				}
				prev = append(prev[:0], k...)
				got++
			}
			it.close()
		}
		after := blocks()
		if got != n {
			t.Fatalf("consume %v: %d pairs back of %d", consume, got, n)
		}
		t.Logf("consume %v: %d runs hold %d bytes before the merge, %d after", consume, len(s.runs), before, after)
		if consume && after > before/4 {
			t.Fatalf("consumed runs still hold %d of %d bytes", after, before)
		}
		if !consume && after < before {
			t.Fatalf("runs not consumed shrank from %d to %d bytes", before, after)
		}
		s.free()
	}
}

// TestBulkPrepareAllocatesLittle: preparing an event writes its index
// entries' keys straight into the arena; building each key on its own
// first (the layout.go builders) was about 25 allocations a key, a
// quarter of the import's allocation count.
func TestBulkPrepareAllocatesLittle(t *testing.T) {
	evs, keys := debianEvents(t, 40)
	arena := make([]byte, 0, 64<<20)
	var entries int
	for i, ev := range evs {
		p := prepareBulk(eventlog.Index(i+1), ev, keys[i], &arena)
		for ix := p.index; len(ix) > 0; entries++ {
			kl, n := binary.Uvarint(ix)
			vl, m := binary.Uvarint(ix[n:])
			ix = ix[n+m+int(kl+vl):]
		}
	}
	arena = arena[:0]
	allocs := testing.AllocsPerRun(5, func() {
		a := arena[:0]
		for i, ev := range evs {
			prepareBulk(eventlog.Index(i+1), ev, keys[i], &a)
		}
	})
	// What preparing must allocate besides the entries: the user IDs,
	// their words and e-mail addresses, the subkey IDs. Measured in the
	// same build, since the race detector changes their counts (about 38
	// allocations a key under -race against 26 without, most in Words).
	given := testing.AllocsPerRun(5, func() {
		for _, k := range keys {
			for _, u := range k.UserIDs() {
				Words(u)
				Email(u)
			}
			k.SubkeyIDs()
		}
	})
	perKey := allocs / float64(len(evs))
	ownPerKey := (allocs - given) / float64(len(evs))
	perEntry := float64(entries) / float64(len(evs))
	t.Logf("%.1f allocations per key, %.1f besides the user IDs' words and the subkey IDs (%d index entries for %d keys)", perKey, ownPerKey, entries, len(evs))
	if ownPerKey > perEntry/4 {
		t.Fatalf("preparing allocated %.1f times per key besides the words and IDs, for %.1f index entries per key: want at most a quarter of one per entry", ownPerKey, perEntry)
	}
}

// BenchmarkBulkPrepare prepares the first 300 keys of the Debian keyring
// (record, index entries) into one arena, as pass 1's workers do.
func BenchmarkBulkPrepare(b *testing.B) {
	evs, keys := debianEvents(b, 300)
	var size int64
	for _, ev := range evs {
		size += int64(len(ev.Key))
	}
	arena := make([]byte, 0, 64<<20)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		a := arena[:0]
		for i, ev := range evs {
			prepareBulk(eventlog.Index(i+1), ev, keys[i], &a)
		}
	}
}
