package projections_test

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestFingerprintRefsFollowApplies asks for a key by its primary and its
// subkey fingerprint after each change (so the answers are cached in
// between) and checks each answer names the version just applied: a new
// subkey, a new user ID (the subkey's fingerprint list unchanged, only the
// key's latest pointer moves), and a deletion.
func TestFingerprintRefsFollowApplies(t *testing.T) {
	var whole *pgpkey.Key
	for _, raw := range fixtureKeys(t) {
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		if len(k.UIDs) >= 2 && len(k.Subkeys) >= 1 {
			whole = k
			break
		}
	}
	if whole == nil {
		t.Fatal("no fixture key with two user IDs and a subkey")
	}
	primary := whole.Fingerprint().Bytes()
	subkey := whole.SubkeyIDs()[0].Fingerprint.Bytes()
	ts := openTestStore(t, t.TempDir(), 4)

	// want asks twice (the second answer may come from the cache) and
	// checks both name version idx, or nothing when idx is 0.
	want := func(when string, fpr []byte, idx eventlog.Index) {
		t.Helper()
		for range 2 {
			refs, err := ts.store.FingerprintRefs(fpr)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case idx == 0 && len(refs) != 0:
				t.Fatalf("%s: %X names %d versions, want none", when, fpr, len(refs))
			case idx != 0 && (len(refs) != 1 || refs[0].Index != idx):
				t.Fatalf("%s: %X names %+v, want version %d", when, fpr, refs, idx)
			}
			recs, err := ts.store.ByFingerprint(fpr)
			if err != nil || len(recs) != len(refs) || len(recs) == 1 && recs[0].Index != idx {
				t.Fatalf("%s: ByFingerprint(%X) = %d records (%v), want version %d", when, fpr, len(recs), err, idx)
			}
		}
	}

	first := submit(t, ts, (&pgpkey.Key{Primary: whole.Primary, UIDs: whole.UIDs[:1]}).Marshal())
	catchUp(t, ts)
	want("one user ID", primary, first)
	want("one user ID", subkey, 0)

	second := submit(t, ts, (&pgpkey.Key{Primary: whole.Primary, UIDs: whole.UIDs[:1], Subkeys: whole.Subkeys}).Marshal())
	catchUp(t, ts)
	want("subkeys added", primary, second)
	want("subkeys added", subkey, second)

	third := submit(t, ts, whole.Marshal())
	catchUp(t, ts)
	want("user ID added", primary, third)
	want("user ID added", subkey, third)

	admin(t, ts, eventlog.KindKeyDeleted, whole.Fingerprint())
	catchUp(t, ts)
	want("deleted", primary, 0)
	want("deleted", subkey, 0)
}

// TestReadKeyEqualsVersion: ReadKey hands over the same key bytes as
// Version for every version of a key, and reports a deletion version as
// not found without calling back.
func TestReadKeyEqualsVersion(t *testing.T) {
	raw := fixtureKeys(t)[0]
	k, err := pgpkey.ParseKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	ts := openTestStore(t, t.TempDir(), 4)
	idx := submit(t, ts, k.Marshal())
	catchUp(t, ts)
	refs, err := ts.store.FingerprintRefs(k.Fingerprint().Bytes())
	if err != nil || len(refs) != 1 || refs[0].Index != idx {
		t.Fatalf("FingerprintRefs = %+v, %v; want version %d", refs, err, idx)
	}
	rec, err := ts.store.Version(refs[0])
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := ts.store.ReadKey(refs[0], func(key []byte) { got = append([]byte(nil), key...) }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, rec.Key) || len(got) == 0 {
		t.Fatalf("ReadKey gave %d bytes, Version %d; want the same bytes", len(got), len(rec.Key))
	}

	admin(t, ts, eventlog.KindKeyDeleted, k.Fingerprint())
	catchUp(t, ts)
	del := projections.Ref{RID: refs[0].RID, Index: ts.log.LastIndex()}
	if _, err := ts.store.Version(del); !errors.Is(err, projections.ErrNotFound) {
		t.Fatalf("Version of the deletion = %v, want ErrNotFound", err)
	}
	called := false
	if err := ts.store.ReadKey(del, func([]byte) { called = true }); !errors.Is(err, projections.ErrNotFound) || called {
		t.Fatalf("ReadKey of the deletion = %v (called back: %v), want ErrNotFound and no call", err, called)
	}
}

// TestReadKeyCopiesNothing: reading a version's key in place allocates at
// least half the key's length less than Version, which copies it (the
// cold op=get path armors in place: docs/benchmarks.md, stall work).
func TestReadKeyCopiesNothing(t *testing.T) {
	var k *pgpkey.Key
	for _, raw := range fixtureKeys(t) {
		c, err := pgpkey.ParseKey(raw)
		if err == nil && (k == nil || len(c.Marshal()) > len(k.Marshal())) {
			k = c
		}
	}
	ts := openTestStore(t, t.TempDir(), 4)
	submit(t, ts, k.Marshal())
	catchUp(t, ts)
	refs, err := ts.store.FingerprintRefs(k.Fingerprint().Bytes())
	if err != nil || len(refs) != 1 {
		t.Fatalf("FingerprintRefs = %+v, %v", refs, err)
	}
	const n = 200
	perCall := func(f func()) uint64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			f()
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / n
	}
	size := 0
	inPlace := perCall(func() {
		if err := ts.store.ReadKey(refs[0], func(key []byte) { size = len(key) }); err != nil {
			t.Fatal(err)
		}
	})
	copied := perCall(func() {
		if _, err := ts.store.Version(refs[0]); err != nil {
			t.Fatal(err)
		}
	})
	if inPlace+uint64(size)/2 > copied {
		t.Fatalf("ReadKey allocates %d bytes per call, Version %d, for a %d-byte key: want ReadKey to copy nothing", inPlace, copied, size)
	}
}
