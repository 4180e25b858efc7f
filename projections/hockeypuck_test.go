package projections_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/cockroachdb/pebble"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

func hpTestKey(tb testing.TB, name string) []byte {
	tb.Helper()
	f, err := os.ReadFile(filepath.Join("pgpkey", "testdata", "hockeypuck", name))
	if err != nil {
		tb.Fatal(err)
	}
	blk, err := armor.Decode(bytes.NewReader(f))
	if err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(blk.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func catchUpHP(tb testing.TB, ts *testStore) {
	tb.Helper()
	if err := ts.store.CatchUpHockeypuck(context.Background(), ts.log, ts.log.LastIndex()); err != nil {
		tb.Fatal(err)
	}
}

// TestHockeypuckDataset: the second dataset holds every key under its
// Hockeypuck hash with Hockeypuck's bytes, has its own applied index
// (it does not move with CatchUp), catches up by itself, survives a
// reopen, and treats deletion as the SKS dataset does: the hash stays in
// its tree, suppressed, and is never served.
func TestHockeypuckDataset(t *testing.T) {
	dir := t.TempDir()
	ts := openTestStore(t, dir, 2)
	gentoo := hpTestKey(t, "gentoo-l1.asc")
	alice := hpTestKey(t, "alice_signed.asc")
	for _, k := range fixtureKeys(t) {
		submit(t, ts, k.Raw)
	}
	submit(t, ts, gentoo, alice, gentoo)
	catchUp(t, ts)
	if got := ts.store.HockeypuckApplied(); got != 0 {
		t.Fatalf("Hockeypuck dataset applied %d after the SKS CatchUp, want 0 (its own index)", got)
	}
	catchUpHP(t, ts)
	if got, want := ts.store.HockeypuckApplied(), ts.log.LastIndex(); got != want {
		t.Fatalf("Hockeypuck dataset applied %d, want %d", got, want)
	}
	hpGentoo := mustHashHex(t, "21eb8f7fdf500338aef41ed6f722a3ad")
	rec, err := ts.store.HockeypuckByHash(hpGentoo)
	if err != nil {
		t.Fatalf("Hockeypuck hash of gentoo-l1: %v", err)
	}
	if h, err := projections.HockeypuckHash(rec.Key); err != nil || h != hpGentoo {
		t.Errorf("served bytes hash to %s (%v), want %s", h, err, hpGentoo)
	}
	sks := mustHashHex(t, "0fa4cd2df7ede287ac0b7a608bf30faa")
	if _, err := ts.store.ByHash(sks); err != nil {
		t.Errorf("SKS hash of gentoo-l1: %v", err)
	}
	if _, err := ts.store.HockeypuckByHash(sks); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("SKS hash found in the Hockeypuck dataset: %v", err)
	}
	elems := ts.store.HockeypuckPtreeElements()
	if elems < 2 {
		t.Fatalf("Hockeypuck tree has %d elements", elems)
	}
	if res, fs := runCheck(t, ts); !res.OK() || len(fs) != 0 || res.HockeypuckHashes != int64(elems) {
		t.Fatalf("check: %+v", res)
	}

	// Deleted: never served, the hash stays in the tree.
	fpr, _ := pgpkey.ParseFingerprint("abd00913019d6354ba1d9a132839fe0d796198b1")
	admin(t, ts, eventlog.KindKeyDeleted, fpr)
	submit(t, ts, gentoo) // refused: blocked
	catchUp(t, ts)
	catchUpHP(t, ts)
	if _, err := ts.store.HockeypuckByHash(hpGentoo); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("deleted key served: %v", err)
	}
	if got := ts.store.HockeypuckPtreeElements(); got != elems {
		t.Errorf("tree has %d elements after the deletion, want %d", got, elems)
	}
	if res, _ := runCheck(t, ts); !res.OK() {
		t.Fatalf("check after deletion: %+v", res)
	}
	// Unblocked and uploaded again: the suppressed hash comes back.
	admin(t, ts, eventlog.KindKeyUnblocked, fpr)
	submit(t, ts, gentoo)
	ts.close()

	// Reopened: the dataset catches up from its own index.
	ts = openTestStore(t, dir, 2)
	catchUp(t, ts)
	catchUpHP(t, ts)
	if _, err := ts.store.HockeypuckByHash(hpGentoo); err != nil {
		t.Errorf("re-uploaded key: %v", err)
	}
	if got := ts.store.HockeypuckPtreeElements(); got != elems {
		t.Errorf("tree has %d elements, want %d", got, elems)
	}
	if res, fs := runCheck(t, ts); !res.OK() || len(fs) != 0 {
		t.Fatalf("check after reopen: %+v", res)
	}
}

// TestHockeypuckCheckFindsDamage: check verifies the second tree.
func TestHockeypuckCheckFindsDamage(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), 4)
	submit(t, ts, hpTestKey(t, "alice_signed.asc"))
	catchUp(t, ts)
	catchUpHP(t, ts)
	h := mustHashHex(t, "4b579f34dfc533283d425cf9e103f03f")
	if err := ts.store.DB().Delete(append([]byte{'h'}, h[:]...), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	res, fs := runCheck(t, ts)
	if res.OK() || !hasFinding(fs, "Hockeypuck dataset", "tree has") {
		t.Fatalf("damaged Hockeypuck hash index not found: %+v", res)
	}
}

func mustHashHex(tb testing.TB, s string) pgpkey.KeyHash {
	tb.Helper()
	h, err := pgpkey.ParseKeyHash(s)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}
