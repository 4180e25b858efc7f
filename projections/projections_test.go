package projections_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// readRawKeys reads every key of a binary key file.
func readRawKeys(tb testing.TB, path string, max int) []*pgpkey.RawKey {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r := pgpkey.NewReader(f)
	var out []*pgpkey.RawKey
	for max <= 0 || len(out) < max {
		k, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		out = append(out, k)
	}
	return out
}

func fixtureKeys(tb testing.TB) []*pgpkey.RawKey {
	var keys []*pgpkey.RawKey
	for _, f := range []string{"keys-a.pgp", "keys-b.pgp", "grace.pgp"} {
		keys = append(keys, readRawKeys(tb, testenv.SharedFile(tb, "fixtures/sks/test-keys/"+f), 0)...)
	}
	return keys
}

func debianKeys(tb testing.TB, max int) []*pgpkey.RawKey {
	p := testenv.RequireFile(tb, "/usr/share/keyrings/debian-keyring.gpg", "debian-keyring")
	return readRawKeys(tb, p, max)
}

type testStore struct {
	log   *eventlog.Log
	store *projections.Store
	dir   string
}

func openTestStore(tb testing.TB, dir string, batch int) *testStore {
	tb.Helper()
	lcfg := eventlog.DefaultConfig()
	lcfg.NoSync = true
	lcfg.Logger = zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)
	log, err := eventlog.Open(filepath.Join(dir, "log"), lcfg)
	if err != nil {
		tb.Fatal(err)
	}
	scfg := projections.DefaultConfig()
	scfg.BatchEvents = batch
	scfg.Logger = lcfg.Logger
	scfg.Log = log
	store, err := projections.Open(filepath.Join(dir, "db"), scfg)
	if err != nil {
		tb.Fatal(err)
	}
	ts := &testStore{log: log, store: store, dir: dir}
	tb.Cleanup(func() { ts.close() })
	return ts
}

func (ts *testStore) close() {
	if ts.store != nil {
		ts.store.Close()
		ts.store = nil
	}
	if ts.log != nil {
		ts.log.Close()
		ts.log = nil
	}
}

func submit(tb testing.TB, ts *testStore, raws ...[]byte) eventlog.Index {
	tb.Helper()
	var evs []*eventlog.Event
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i, r := range raws {
		evs = append(evs, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP,
			Time: t0.Add(time.Duration(i) * time.Minute), Key: r})
	}
	last, err := ts.log.Append(context.Background(), evs...)
	if err != nil {
		tb.Fatal(err)
	}
	return last
}

func catchUp(tb testing.TB, ts *testStore) projections.ApplyStats {
	tb.Helper()
	st, err := ts.store.CatchUp(context.Background(), ts.log, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// dumpDB returns every key/value of the store's database.
func dumpDB(tb testing.TB, s *projections.Store) map[string]string {
	tb.Helper()
	it, err := s.DB().NewIter(nil)
	if err != nil {
		tb.Fatal(err)
	}
	out := make(map[string]string)
	for it.First(); it.Valid(); it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	if err := it.Close(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func canonicalHash(tb testing.TB, raw *pgpkey.RawKey) pgpkey.KeyHash {
	k, err := pgpkey.ParseKey(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return k.Hash()
}

func TestLookupsAfterApply(t *testing.T) {
	keys := fixtureKeys(t)
	ts := openTestStore(t, t.TempDir(), 16)
	var raws [][]byte
	for _, k := range keys {
		raws = append(raws, k.Raw)
	}
	submit(t, ts, raws...)
	st := catchUp(t, ts)
	if got, want := st.Added, int64(len(keys)); got != want {
		t.Fatalf("added %d, want %d", got, want)
	}
	if n, _ := ts.store.KeyCount(); n != int64(len(keys)) {
		t.Fatalf("KeyCount = %d, want %d", n, len(keys))
	}
	for _, raw := range keys {
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		fpr := k.Fingerprint()
		t.Run(fpr.String(), func(t *testing.T) {
			recs, err := ts.store.ByFingerprint(fpr.Bytes())
			if err != nil || len(recs) != 1 || recs[0].Hash != k.Hash() {
				t.Fatalf("ByFingerprint = %v, %v; want one record with hash %s", recs, err, k.Hash())
			}
			if recs, _ := ts.store.ByKeyID(k.KeyID()); len(recs) != 1 {
				t.Fatalf("ByKeyID(%s) = %d records, want 1", k.KeyID(), len(recs))
			}
			if recs, _ := ts.store.ByShortID(k.KeyID().Short()); len(recs) != 1 {
				t.Fatalf("ByShortID = %d records, want 1", len(recs))
			}
			for _, sk := range k.SubkeyIDs() {
				if recs, _ := ts.store.ByFingerprint(sk.Fingerprint.Bytes()); len(recs) != 1 || recs[0].Hash != k.Hash() {
					t.Fatalf("subkey %s does not find its key", sk.Fingerprint)
				}
				if recs, _ := ts.store.ByKeyID(sk.KeyID); len(recs) != 1 {
					t.Fatalf("subkey ID %s does not find its key", sk.KeyID)
				}
			}
			rec, err := ts.store.ByHash(k.Hash())
			if err != nil || !bytes.Equal(rec.Key, k.Marshal()) {
				t.Fatalf("ByHash: %v; key bytes differ: %v", err, err == nil)
			}
			for _, uid := range k.UserIDs() {
				words := projections.Words(uid)
				recs, err := ts.store.SearchWords(words, projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: 20000})
				if err != nil || !containsHash(recs, k.Hash()) {
					t.Fatalf("SearchWords(%q) = %d records, %v; want the key", words, len(recs), err)
				}
				if e := projections.Email(uid); e != "" {
					recs, err := ts.store.SearchEmail(e, 0)
					if err != nil || !containsHash(recs, k.Hash()) {
						t.Fatalf("SearchEmail(%q) misses the key: %v", e, err)
					}
				}
			}
		})
	}
	if got := ts.store.PtreeElements(); got != len(keys) {
		t.Errorf("prefix tree holds %d elements, want %d", got, len(keys))
	}
	if recs, _ := ts.store.SearchWords([]string{"nosuchword"}, projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: 20000}); len(recs) != 0 {
		t.Errorf("unknown word found %d keys", len(recs))
	}
}

func containsHash(recs []*projections.Record, h pgpkey.KeyHash) bool {
	for _, r := range recs {
		if r.Hash == h {
			return true
		}
	}
	return false
}

func TestSearchLimits(t *testing.T) {
	keys := fixtureKeys(t)
	ts := openTestStore(t, t.TempDir(), 64)
	for _, k := range keys {
		submit(t, ts, k.Raw)
	}
	catchUp(t, ts)
	// Every fixture key has an example.org address (fixtures README).
	words := []string{"example"}
	all, err := ts.store.SearchWords(words, projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: 20000})
	if err != nil || len(all) < 2 {
		t.Fatalf("SearchWords(example) = %d, %v; want >= 2", len(all), err)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Created.After(all[i-1].Created) {
			t.Fatalf("results not newest first at %d", i)
		}
	}
	if _, err := ts.store.SearchWords(words, projections.SearchLimits{MaxMatches: len(all), MaxInternalMatches: 20000}); !errors.Is(err, projections.ErrTooManyResponses) {
		t.Errorf("MaxMatches=%d: err %v, want ErrTooManyResponses (SKS fails at >= max_matches)", len(all), err)
	}
	if _, err := ts.store.SearchWords(words, projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: 1}); !errors.Is(err, projections.ErrInsufficientlySpecific) {
		t.Errorf("MaxInternalMatches=1: err %v, want ErrInsufficientlySpecific", err)
	}
}

// TestReplayEqualsIncremental applies the same events once incrementally in
// small random batches and once in one catch-up, and compares every byte of
// the two databases.
func TestReplayEqualsIncremental(t *testing.T) {
	keys := append(fixtureKeys(t), debianKeys(t, 150)...)
	rng := rand.New(rand.NewSource(1))
	// Submit some keys twice and some split, so merges and no-ops happen.
	var raws [][]byte
	for _, k := range keys {
		raws = append(raws, k.Raw)
	}
	for i := 0; i < 40; i++ {
		raws = append(raws, keys[rng.Intn(len(keys))].Raw)
	}
	rng.Shuffle(len(raws), func(i, j int) { raws[i], raws[j] = raws[j], raws[i] })

	inc := openTestStore(t, t.TempDir(), 7)
	for len(raws) > 0 {
		n := min(len(raws), 1+rng.Intn(20))
		submit(t, inc, raws[:n]...)
		raws = raws[n:]
		catchUp(t, inc)
	}
	full := openTestStore(t, t.TempDir(), 4096)
	// Copy the log event by event so both stores see identical events.
	it := inc.log.NewIterator(1, 0)
	for {
		_, ev, err := it.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := full.log.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	catchUp(t, full)
	a, b := dumpDB(t, inc.store), dumpDB(t, full.store)
	if len(a) != len(b) {
		t.Fatalf("incremental has %d entries, replay %d", len(a), len(b))
	}
	for k, v := range a {
		if b[k] != v {
			t.Fatalf("entry %q differs between incremental and replay", k)
		}
	}
	if inc.store.PtreeElements() != full.store.PtreeElements() {
		t.Fatal("prefix trees differ in size")
	}
}

// TestMergeOrderIndependent submits a key in parts, one user ID or subkey
// each, in every rotation order, and checks the stored hash equals the hash
// of the whole key.
func TestMergeOrderIndependent(t *testing.T) {
	for _, raw := range fixtureKeys(t) {
		whole, err := pgpkey.ParseKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		var parts [][]byte
		for _, u := range whole.UIDs {
			p := &pgpkey.Key{Primary: whole.Primary, UIDs: []pgpkey.Group{u}}
			parts = append(parts, p.Marshal())
		}
		for _, sk := range whole.Subkeys {
			p := &pgpkey.Key{Primary: whole.Primary, UIDs: whole.UIDs[:1], Subkeys: []pgpkey.Group{sk}}
			parts = append(parts, p.Marshal())
		}
		if len(whole.DirectSigs) > 0 {
			p := &pgpkey.Key{Primary: whole.Primary, DirectSigs: whole.DirectSigs, UIDs: whole.UIDs[:1]}
			parts = append(parts, p.Marshal())
		}
		for rot := 0; rot < len(parts); rot++ {
			order := append(append([][]byte(nil), parts[rot:]...), parts[:rot]...)
			ts := openTestStore(t, t.TempDir(), 1+rot)
			submit(t, ts, order...)
			catchUp(t, ts)
			recs, err := ts.store.ByFingerprint(whole.Fingerprint().Bytes())
			if err != nil || len(recs) != 1 {
				t.Fatalf("%s: %d records, %v", whole.Fingerprint(), len(recs), err)
			}
			if got, want := recs[0].Hash, whole.Hash(); got != want {
				t.Fatalf("%s rotation %d: hash %s, want %s", whole.Fingerprint(), rot, got, want)
			}
			if got := ts.store.PtreeElements(); got != 1 {
				t.Fatalf("prefix tree holds %d elements after merges, want 1 (old hashes must leave)", got)
			}
			if _, err := ts.store.ByHash(whole.Hash()); err != nil {
				t.Fatalf("hash index misses merged hash: %v", err)
			}
			ts.close()
		}
	}
}

func TestScanAsOf(t *testing.T) {
	keys := fixtureKeys(t)
	ts := openTestStore(t, t.TempDir(), 3)
	whole, _ := pgpkey.ParseKey(keys[0])
	part := (&pgpkey.Key{Primary: whole.Primary, UIDs: whole.UIDs[:1]}).Marshal()
	submit(t, ts, part)        // 1: first version of key 0
	submit(t, ts, keys[1].Raw) // 2
	submit(t, ts, keys[0].Raw) // 3: key 0 gains the rest
	catchUp(t, ts)
	hashesAt := func(at eventlog.Index) map[pgpkey.KeyHash]bool {
		out := make(map[pgpkey.KeyHash]bool)
		if err := ts.store.ScanAsOf(at, func(r *projections.Record) error { out[r.Hash] = true; return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	partKey, _ := projections.ParseEventKey(part)
	cases := []struct {
		at   eventlog.Index
		want []pgpkey.KeyHash
	}{
		{0, nil},
		{1, []pgpkey.KeyHash{partKey.Hash()}},
		{2, []pgpkey.KeyHash{partKey.Hash(), canonicalHash(t, keys[1])}},
		{3, []pgpkey.KeyHash{whole.Hash(), canonicalHash(t, keys[1])}},
	}
	for _, c := range cases {
		got := hashesAt(c.at)
		if len(got) != len(c.want) {
			t.Fatalf("at %d: %d keys, want %d", c.at, len(got), len(c.want))
		}
		for _, h := range c.want {
			if !got[h] {
				t.Fatalf("at %d: missing %s", c.at, h)
			}
		}
	}
	if err := ts.store.ScanAsOf(4, func(*projections.Record) error { return nil }); err == nil {
		t.Fatal("ScanAsOf past applied index succeeded")
	}
}

func TestNovel(t *testing.T) {
	keys := fixtureKeys(t)
	ts := openTestStore(t, t.TempDir(), 8)
	whole, _ := pgpkey.ParseKey(keys[0])
	part, _ := projections.ParseEventKey((&pgpkey.Key{Primary: whole.Primary, UIDs: whole.UIDs[:1]}).Marshal())
	if novel, err := ts.store.Novel(whole); err != nil || !novel {
		t.Fatalf("empty store: Novel = %v, %v", novel, err)
	}
	submit(t, ts, keys[0].Raw)
	catchUp(t, ts)
	if novel, _ := ts.store.Novel(whole); novel {
		t.Error("same key again reported novel")
	}
	if novel, _ := ts.store.Novel(part); novel {
		t.Error("a subset of the stored key reported novel")
	}
	other, _ := pgpkey.ParseKey(keys[1])
	if novel, _ := ts.store.Novel(other); !novel {
		t.Error("another key reported not novel")
	}
}

func TestRejectedEventKeptOutOfIndexes(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), 8)
	keys := fixtureKeys(t)
	submit(t, ts, []byte("garbage"), keys[0].Raw, []byte{0x99, 0xff, 0xff})
	st := catchUp(t, ts)
	if st.Rejected != 2 || st.Added != 1 {
		t.Fatalf("stats %+v, want 2 rejected and 1 added", st)
	}
	if got := ts.store.Applied(); got != 3 {
		t.Fatalf("applied %d, want 3 (rejected events still advance)", got)
	}
}

func TestReopenResumes(t *testing.T) {
	dir := t.TempDir()
	keys := fixtureKeys(t)
	ts := openTestStore(t, dir, 2)
	for _, k := range keys[:3] {
		submit(t, ts, k.Raw)
	}
	catchUp(t, ts)
	for _, k := range keys[3:] {
		submit(t, ts, k.Raw)
	}
	ts.close()
	ts = openTestStore(t, dir, 2)
	if got := ts.store.Applied(); got != 3 {
		t.Fatalf("reopened applied %d, want 3", got)
	}
	catchUp(t, ts)
	if n, _ := ts.store.KeyCount(); n != int64(len(keys)) {
		t.Fatalf("after resume KeyCount = %d, want %d", n, len(keys))
	}
	if ts.store.PtreeElements() != len(keys) {
		t.Fatalf("after resume prefix tree holds %d, want %d", ts.store.PtreeElements(), len(keys))
	}
}

var _ = pebble.ErrNotFound

// generatedKeys returns the n keys of the generated corpus of seed (two
// RSA moduli, so it is quick to make), each as submitted and canonical.
func generatedKeys(tb testing.TB, n int, seed int64) (raws [][]byte, keys []*pgpkey.Key) {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: n, Seed: seed, RSAPoolSize: 2}); err != nil {
		tb.Fatal(err)
	}
	decoded, err := pgpkey.Decode(buf.Bytes())
	if err != nil {
		tb.Fatal(err)
	}
	for _, raw := range decoded {
		k, err := pgpkey.Canonicalize(raw.Packets)
		if err != nil {
			tb.Fatal(err)
		}
		raws, keys = append(raws, raw.Raw), append(keys, k)
	}
	return raws, keys
}

// userIDWords returns the search words of k's user IDs, as a set.
func userIDWords(k *pgpkey.Key) map[string]bool {
	ws := make(map[string]bool)
	for _, u := range k.UserIDs() {
		for _, w := range projections.Words(u) {
			ws[w] = true
		}
	}
	return ws
}
