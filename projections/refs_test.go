package projections_test

import (
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
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
