package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

// keyInLogFixture is a log and a store over it, with the store reading
// keys back from the log (Config.Log) unless withoutLog.
type keyInLogFixture struct {
	t   *testing.T
	dir string
	log *eventlog.Log
	s   *Store
}

func newKeyInLogFixture(t *testing.T, withLog bool) *keyInLogFixture {
	return newKeyInLogFixtureBulk(t, withLog, 0)
}

func newKeyInLogFixtureBulk(t *testing.T, withLog bool, bulkMinEvents int) *keyInLogFixture {
	t.Helper()
	f := &keyInLogFixture{t: t, dir: t.TempDir()}
	lcfg := eventlog.DefaultConfig()
	lcfg.NoSync = true
	var err error
	if f.log, err = eventlog.Open(filepath.Join(f.dir, "log"), lcfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.log.Close() })
	f.openWith(withLog, bulkMinEvents)
	t.Cleanup(func() { f.s.Close() })
	return f
}

func (f *keyInLogFixture) open(withLog bool) {
	f.openWith(withLog, 0) // the applier's path, which writes references
}

func (f *keyInLogFixture) openWith(withLog bool, bulkMinEvents int) {
	f.t.Helper()
	cfg := DefaultConfig()
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(f.t)).Level(zerolog.WarnLevel)
	cfg.BulkMinEvents = bulkMinEvents
	if withLog {
		cfg.Log = f.log
	}
	var err error
	if f.s, err = Open(filepath.Join(f.dir, "db"), cfg); err != nil {
		f.t.Fatal(err)
	}
}

// submit appends keys as uploads and applies them.
func (f *keyInLogFixture) submit(keys ...[]byte) eventlog.Index {
	f.t.Helper()
	var last eventlog.Index
	for _, k := range keys {
		var err error
		last, err = f.log.Append(context.Background(), &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: time.Now(), Key: k})
		if err != nil {
			f.t.Fatal(err)
		}
	}
	if _, err := f.s.CatchUp(context.Background(), f.log, nil); err != nil {
		f.t.Fatal(err)
	}
	return last
}

// storedValue is the raw Pebble value of record rid@idx.
func (f *keyInLogFixture) storedValue(rid []byte, idx eventlog.Index) []byte {
	f.t.Helper()
	v, closer, err := f.s.db.Get(recordKey(rid, idx))
	if err != nil {
		f.t.Fatalf("record %X@%d: %v", rid, idx, err)
	}
	defer closer.Close()
	return bytes.Clone(v)
}

func corpusKeys(tb testing.TB, n int, seed int64) []*pgpkey.RawKey {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: n, Seed: seed}); err != nil {
		tb.Fatal(err)
	}
	keys, err := pgpkey.Decode(buf.Bytes())
	if err != nil {
		tb.Fatal(err)
	}
	return keys
}

// canonicalKeys returns the keys of the 30-key corpus of seed 7 that are
// submitted in SKS's canonical form (their versions are kept in the log),
// at least two, of different sizes.
func canonicalKeys(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	for _, r := range corpusKeys(t, 30, 7) {
		k, err := ParseEventKey(r.Raw)
		if err == nil && bytes.Equal(k.Marshal(), r.Raw) {
			out = append(out, r.Raw)
		}
	}
	if len(out) < 2 || len(out[0]) == len(out[1]) {
		t.Fatalf("corpus has %d keys in canonical form: want two of different sizes", len(out))
	}
	return out
}

// TestRecordKeyInLog: a version whose canonical key is its event's key, byte
// for byte, is stored as a reference to the event (a header and the key's
// length); any other version whole. Every way of reading a version gives
// the same key either way.
func TestRecordKeyInLog(t *testing.T) {
	f := newKeyInLogFixture(t, true)
	var refs, whole int
	for i, raw := range corpusKeys(t, 30, 7) {
		k, err := ParseEventKey(raw.Raw)
		if err != nil {
			t.Fatal(err)
		}
		canonical := k.Marshal()
		idx := f.submit(raw.Raw)
		rid := RecordID(k)
		v := f.storedValue(rid, idx)
		if bytes.Equal(canonical, raw.Raw) {
			refs++
			if len(v) != recordHeaderBytes+4 || v[1]&flagKeyInLog == 0 || int(binary.BigEndian.Uint32(v[recordHeaderBytes:])) != len(canonical) {
				t.Fatalf("key %d, canonical as submitted: stored value of %d bytes, flags %08b: want a reference to the event", i, len(v), v[1])
			}
		} else {
			whole++
			if v[1]&flagKeyInLog != 0 || !bytes.Equal(v[recordHeaderBytes:], canonical) {
				t.Fatalf("key %d, not canonical as submitted: stored value of %d bytes, flags %08b: want the key whole", i, len(v), v[1])
			}
		}
		f.checkReads(rid, idx, canonical)
	}
	if refs == 0 || whole == 0 {
		t.Fatalf("corpus gave %d keys canonical as submitted and %d not: want some of each", refs, whole)
	}
	t.Logf("%d references, %d whole", refs, whole)
}

// checkReads reads version rid@idx every way a reader can and wants key.
func (f *keyInLogFixture) checkReads(rid []byte, idx eventlog.Index, key []byte) {
	f.t.Helper()
	rec, err := f.s.Latest(rid)
	if err != nil || rec.Index != idx || !bytes.Equal(rec.Key, key) {
		f.t.Fatalf("Latest(%X): index %v, %d key bytes, %v: want %d, %d", rid, rec.Index, len(rec.Key), err, idx, len(key))
	}
	if rec, err = f.s.Version(Ref{RID: rid, Index: idx}); err != nil || !bytes.Equal(rec.Key, key) {
		f.t.Fatalf("Version(%X@%d): %v, key differs", rid, idx, err)
	}
	var got []byte
	if err := f.s.ReadKey(Ref{RID: rid, Index: idx}, func(k []byte) { got = bytes.Clone(k) }); err != nil || !bytes.Equal(got, key) {
		f.t.Fatalf("ReadKey(%X@%d): %v, key differs", rid, idx, err)
	}
	meta := &Record{RID: rid, Index: idx}
	if err := f.s.FillKey(meta); err != nil || !bytes.Equal(meta.Key, key) {
		f.t.Fatalf("FillKey(%X@%d): %v, key differs", rid, idx, err)
	}
	byHash, err := f.s.ByHash(rec.Hash)
	if err != nil || !bytes.Equal(byHash.Key, key) {
		f.t.Fatalf("ByHash(%s): %v, key differs", rec.Hash, err)
	}
	found := false
	err = f.s.ScanAsOf(idx, func(r *Record) error {
		if bytes.Equal(r.RID, rid) {
			found = bytes.Equal(r.Key, key)
		}
		return nil
	})
	if err != nil || !found {
		f.t.Fatalf("ScanAsOf(%d): %v, found %v with the key", idx, err, found)
	}
}

// TestRecordMergedKeyWhole: a version merged from a stored key and a new
// submission is not the event's key, so it is stored whole; the merge
// reads the stored version back from the log.
func TestRecordMergedKeyWhole(t *testing.T) {
	f := newKeyInLogFixture(t, true)
	var k *pgpkey.Key
	for _, raw := range corpusKeys(t, 30, 7) {
		c, err := ParseEventKey(raw.Raw)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.UIDs) > 1 && len(c.Subkeys) > 0 {
			k = c
			break
		}
	}
	if k == nil {
		t.Fatal("no corpus key with two user IDs and a subkey")
	}
	rid := RecordID(k)
	// The first version as a client sends it; the second adds the other
	// user IDs, sent without the subkeys.
	firstPart := (&pgpkey.Key{Primary: k.Primary, DirectSigs: k.DirectSigs, UIDs: k.UIDs[:1], Subkeys: k.Subkeys}).Marshal()
	secondPart := (&pgpkey.Key{Primary: k.Primary, DirectSigs: k.DirectSigs, UIDs: k.UIDs[1:]}).Marshal()

	first := f.submit(firstPart)
	if v := f.storedValue(rid, first); v[1]&flagKeyInLog == 0 {
		t.Fatalf("first version (canonical as submitted) stored whole: %d bytes", len(v))
	}
	second := f.submit(secondPart)
	v := f.storedValue(rid, second)
	if v[1]&flagKeyInLog != 0 || !bytes.Equal(v[recordHeaderBytes:], k.Marshal()) {
		t.Fatalf("merged version: stored value of %d bytes, flags %08b: want the whole merged key (%d bytes)", len(v), v[1], len(k.Marshal()))
	}
	f.checkReads(rid, second, k.Marshal())
	old, err := f.s.Version(Ref{RID: rid, Index: first})
	if err != nil || !bytes.Equal(old.Key, firstPart) {
		t.Fatalf("first version: %v, key differs", err)
	}
}

// TestRecordsWholeWithoutLog: a store opened without the log stores every
// version whole, and one that holds references says so when read without
// the log, instead of answering an empty key.
func TestRecordsWholeWithoutLog(t *testing.T) {
	canonical := canonicalKeys(t)[0]
	k, _ := ParseEventKey(canonical)
	rid := RecordID(k)

	f := newKeyInLogFixture(t, false)
	idx := f.submit(canonical)
	if v := f.storedValue(rid, idx); v[1]&flagKeyInLog != 0 || !bytes.Equal(v[recordHeaderBytes:], canonical) {
		t.Fatalf("without the log: stored value of %d bytes, flags %08b: want the key whole", len(v), v[1])
	}

	g := newKeyInLogFixture(t, true)
	idx = g.submit(canonical)
	g.s.Close()
	g.open(false)
	if _, err := g.s.Latest(rid); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("reference read without the log: %v, want an error saying the key is in the log", err)
	}
	var called bool
	if err := g.s.ReadKey(Ref{RID: rid, Index: idx}, func([]byte) { called = true }); err == nil || called {
		t.Fatalf("ReadKey without the log: %v (called %v), want an error", err, called)
	}
}

// TestRecordKeyInLogMismatch: a reference whose event is not the key it
// was written for (a store put beside another log) is an error, not a
// wrong key.
func TestRecordKeyInLogMismatch(t *testing.T) {
	canon := canonicalKeys(t)
	f := newKeyInLogFixture(t, true)
	idx := f.submit(canon[0])
	k, _ := ParseEventKey(canon[0])

	// Another log whose event at idx carries a different key.
	other, err := eventlog.Open(filepath.Join(t.TempDir(), "log"), eventlog.Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for i := eventlog.Index(1); i <= idx; i++ {
		if _, err := other.Append(context.Background(), &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Key: canon[1]}); err != nil {
			t.Fatal(err)
		}
	}
	f.s.cfg.Log = other
	if _, err := f.s.Latest(RecordID(k)); !errors.Is(err, errBadRecord) {
		t.Fatalf("reference into the wrong log: %v, want errBadRecord", err)
	}
}

// TestSchema3Upgraded: a schema 3 store (every version whole) opens as
// schema 4 and is marked so before anything writes a reference; other
// versions still ask for a replay.
func TestSchema3Upgraded(t *testing.T) {
	f := newKeyInLogFixture(t, true)
	raw := corpusKeys(t, 1, 7)[0].Raw
	k, _ := ParseEventKey(raw)
	f.submit(raw)
	setSchema := func(v uint64) {
		if err := f.s.db.Set(metaKey("schema"), binary.BigEndian.AppendUint64(nil, v), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		f.s.Close()
	}
	setSchema(3)
	f.open(true)
	if v, err := f.s.getUint64(metaKey("schema")); err != nil || v != schemaVersion {
		t.Fatalf("schema after opening a schema 3 store: %d, %v; want %d", v, err, schemaVersion)
	}
	if _, err := f.s.Latest(RecordID(k)); err != nil {
		t.Fatal(err)
	}
	setSchema(2)
	cfg := DefaultConfig()
	if _, err := Open(filepath.Join(f.dir, "db"), cfg); !errors.Is(err, ErrSchemaChanged) {
		t.Fatalf("schema 2 store: %v, want ErrSchemaChanged", err)
	}
}

// TestCheckBulkAgainstReferences: the bulk path stores every version
// whole, the applier (which Check's replay uses) a reference where it can;
// Check takes the two for the same version.
func TestCheckBulkAgainstReferences(t *testing.T) {
	f := newKeyInLogFixtureBulk(t, true, 16)
	var keys [][]byte
	for _, r := range corpusKeys(t, 40, 7) {
		keys = append(keys, r.Raw)
	}
	f.submit(keys...)
	if f.s.BulkApplied() == 0 {
		t.Fatal("the bulk path did not build the store")
	}
	it, err := f.s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRecord}, UpperBound: []byte{prefixRecord + 1}})
	if err != nil {
		t.Fatal(err)
	}
	for it.First(); it.Valid(); it.Next() {
		if it.Value()[1]&flagKeyInLog != 0 {
			t.Fatalf("bulk path stored record %X as a reference", it.Key())
		}
	}
	it.Close()
	var findings []Finding
	res, err := f.s.Check(context.Background(), f.log, CheckOptions{TempDir: t.TempDir()}, func(x Finding) { findings = append(findings, x) })
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.Differences != 0 {
		t.Fatalf("Check of a bulk-built store: %d differences, findings %v", res.Differences, findings)
	}
}

// BenchmarkReadKey reads the keys of 2,000 corpus versions in place, kept
// whole in Pebble or as references read from the log's segment files (the
// log's in-memory tail off, as for a key uploaded long ago).
func BenchmarkReadKey(b *testing.B) {
	raws := corpusKeys(b, 2000, 7)
	for _, mode := range []string{"whole", "log"} {
		b.Run(mode, func(b *testing.B) {
			dir := b.TempDir()
			lcfg := eventlog.DefaultConfig()
			lcfg.NoSync, lcfg.TailBytes = true, -1
			log, err := eventlog.Open(filepath.Join(dir, "log"), lcfg)
			if err != nil {
				b.Fatal(err)
			}
			defer log.Close()
			cfg := DefaultConfig()
			cfg.BulkMinEvents = 0
			if mode == "log" {
				cfg.Log = log
			}
			s, err := Open(filepath.Join(dir, "db"), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var refs []Ref
			for _, raw := range raws {
				k, err := ParseEventKey(raw.Raw)
				if err != nil {
					b.Fatal(err)
				}
				idx, err := log.Append(context.Background(), &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Key: k.Marshal()})
				if err != nil {
					b.Fatal(err)
				}
				refs = append(refs, Ref{RID: RecordID(k), Index: idx})
			}
			if _, err := s.CatchUp(context.Background(), log, nil); err != nil {
				b.Fatal(err)
			}
			if err := s.db.Flush(); err != nil {
				b.Fatal(err)
			}
			n := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := s.ReadKey(refs[i%len(refs)], func(k []byte) { n += len(k) }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
