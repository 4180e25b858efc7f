package projections_test

import (
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestAdmitReportsBlockedAndStored: Admit says whether the key is blocked
// and whether the store holds it, so the upload path needs no lookups of
// its own for "blocked" and "added or updated".
func TestAdmitReportsBlockedAndStored(t *testing.T) {
	keys := fixtureKeys(t)
	ts := openTestStore(t, t.TempDir(), 8)
	lim := pgpkey.DefaultLimits()
	whole, err := pgpkey.ParseKey(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	part, err := projections.ParseEventKey((&pgpkey.Key{Primary: whole.Primary, UIDs: whole.UIDs[:1]}).Marshal())
	if err != nil {
		t.Fatal(err)
	}
	ad, err := ts.store.Admit(part, lim)
	if err != nil || !ad.Novel || ad.Stored || ad.Blocked {
		t.Fatalf("empty store: Admit = novel %v stored %v blocked %v, %v; want novel only", ad.Novel, ad.Stored, ad.Blocked, err)
	}
	submit(t, ts, part.Marshal())
	catchUp(t, ts)
	ad, err = ts.store.Admit(whole, lim)
	if err != nil || !ad.Novel || !ad.Stored || ad.Blocked {
		t.Fatalf("part stored: Admit(whole) = novel %v stored %v blocked %v, %v; want novel and stored", ad.Novel, ad.Stored, ad.Blocked, err)
	}
	admin(t, ts, eventlog.KindKeyBlocked, whole.Fingerprint())
	catchUp(t, ts)
	ad, err = ts.store.Admit(whole, lim)
	if err != nil || ad.Novel || !ad.Blocked {
		t.Fatalf("blocked: Admit = novel %v blocked %v, %v; want blocked, not novel", ad.Novel, ad.Blocked, err)
	}
}

// TestBlockedAndSuppressedSurviveReopen: the SKS dataset keeps its blocked
// fingerprints and suppressed hashes in memory; reopened, a store must
// still refuse a blocked key (upload and apply) and reuse a deleted key's
// suppressed hash when the key comes back.
func TestBlockedAndSuppressedSurviveReopen(t *testing.T) {
	keys := fixtureKeys(t)
	dir := t.TempDir()
	ts := openTestStore(t, dir, 8)
	bob, err := pgpkey.ParseKey(keys[1])
	if err != nil {
		t.Fatal(err)
	}
	alice, err := pgpkey.ParseKey(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	submit(t, ts, keys[0].Raw)
	catchUp(t, ts)
	elems := ts.store.PtreeElements()
	admin(t, ts, eventlog.KindKeyBlocked, bob.Fingerprint())
	admin(t, ts, eventlog.KindKeyDeleted, alice.Fingerprint())
	catchUp(t, ts)
	ts.close()

	ts = openTestStore(t, dir, 8)
	if blocked, err := ts.store.Blocked(bob.Fingerprint().Bytes()); err != nil || !blocked {
		t.Fatalf("after reopen: Blocked(bob) = %v, %v; want true", blocked, err)
	}
	if ad, err := ts.store.Admit(bob, pgpkey.DefaultLimits()); err != nil || !ad.Blocked || ad.Novel {
		t.Fatalf("after reopen: Admit(bob) = blocked %v novel %v, %v", ad.Blocked, ad.Novel, err)
	}
	submit(t, ts, keys[1].Raw) // as recon or mail would append it
	if st := catchUp(t, ts); st.Refused != 1 {
		t.Errorf("after reopen: applying a blocked key: %+v, want it refused", st)
	}
	if recs, _ := ts.store.ByFingerprint(bob.Fingerprint().Bytes()); len(recs) != 0 {
		t.Error("after reopen: blocked key stored")
	}
	// Alice unblocked and back with the same content: her hash, suppressed
	// in the tree, is reused rather than inserted twice.
	admin(t, ts, eventlog.KindKeyUnblocked, alice.Fingerprint())
	submit(t, ts, keys[0].Raw)
	catchUp(t, ts)
	if _, err := ts.store.ByHash(alice.Hash()); err != nil {
		t.Errorf("alice back after unblocking: %v", err)
	}
	if got := ts.store.PtreeElements(); got != elems {
		t.Errorf("prefix tree has %d elements, want %d (the suppressed hash reused)", got, elems)
	}
}
