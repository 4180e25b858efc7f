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
