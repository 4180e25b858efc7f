package projections_test

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

func admin(t *testing.T, ts *testStore, kind eventlog.Kind, fpr pgpkey.Fingerprint) {
	t.Helper()
	if _, err := ts.log.Append(context.Background(), &eventlog.Event{Kind: kind, Origin: eventlog.OriginAdmin, Target: fpr.Bytes(), Reason: "test", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteSticks: a deleted key leaves every projection, stays deleted
// across replay, cannot come back (same or changed), and its hash stays in
// the prefix tree so that recon neither serves nor refetches it.
func TestDeleteSticks(t *testing.T) {
	keys := fixtureKeys(t)
	ts := openTestStore(t, t.TempDir(), 8)
	for _, k := range keys {
		submit(t, ts, k.Raw)
	}
	catchUp(t, ts)
	alice, _ := pgpkey.ParseKey(keys[0])
	treeBefore := ts.store.PtreeElements()
	admin(t, ts, eventlog.KindKeyDeleted, alice.Fingerprint())
	st := catchUp(t, ts)
	if st.Deleted != 1 {
		t.Fatalf("stats %+v, want 1 deleted", st)
	}
	check := func(when string) {
		t.Helper()
		if recs, _ := ts.store.ByFingerprint(alice.Fingerprint().Bytes()); len(recs) != 0 {
			t.Fatalf("%s: deleted key found by fingerprint", when)
		}
		if recs, _ := ts.store.ByKeyID(alice.KeyID()); len(recs) != 0 {
			t.Fatalf("%s: deleted key found by key ID", when)
		}
		for _, sk := range alice.SubkeyIDs() {
			if recs, _ := ts.store.ByFingerprint(sk.Fingerprint.Bytes()); len(recs) != 0 {
				t.Fatalf("%s: deleted key found by subkey", when)
			}
		}
		if recs, _ := ts.store.SearchWords([]string{"alice"}, projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: 20000}); len(recs) != 0 {
			t.Fatalf("%s: deleted key found by word search", when)
		}
		if _, err := ts.store.ByHash(alice.Hash()); !errors.Is(err, projections.ErrNotFound) {
			t.Fatalf("%s: deleted key served by hash: %v", when, err)
		}
		if got := ts.store.PtreeElements(); got != treeBefore {
			t.Fatalf("%s: prefix tree has %d elements, want %d (the deleted hash stays, suppressed)", when, got, treeBefore)
		}
		if n, _ := ts.store.KeyCount(); n != int64(len(keys)-1) {
			t.Fatalf("%s: %d keys, want %d", when, n, len(keys)-1)
		}
		if novel, _ := ts.store.Novel(alice); novel {
			t.Fatalf("%s: deleted key is novel again", when)
		}
		n := 0
		ts.store.ScanAsOf(ts.store.Applied(), func(r *projections.Record) error {
			if r.Hash == alice.Hash() {
				t.Fatalf("%s: dump holds the deleted key", when)
			}
			n++
			return nil
		})
	}
	check("after delete")
	// Uploaded again, or a changed copy: refused.
	changed := (&pgpkey.Key{Primary: alice.Primary, UIDs: append(append([]pgpkey.Group(nil), alice.UIDs...), pgpkey.Group{Packet: pgpkey.Packet{Tag: 13, Body: []byte("Alice Again <again@example.org>")}})}).Marshal()
	submit(t, ts, keys[0].Raw, changed)
	if st := catchUp(t, ts); st.Refused != 2 {
		t.Fatalf("stats %+v, want 2 refused", st)
	}
	check("after resubmission")

	// Replay from the log gives the same state.
	fresh := openTestStore(t, t.TempDir(), 3)
	it := ts.log.NewIterator(1, 0)
	for {
		_, ev, err := it.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		fresh.log.Append(context.Background(), ev)
	}
	catchUp(t, fresh)
	a, b := dumpDB(t, ts.store), dumpDB(t, fresh.store)
	if len(a) != len(b) {
		t.Fatalf("replay after delete differs: %d vs %d entries", len(a), len(b))
	}
	for k, v := range a {
		if b[k] != v {
			t.Fatalf("replay after delete differs at %q", k)
		}
	}

	// Unblocked, the key may be uploaded again; its hash was in the tree
	// all along, so the tree does not grow.
	admin(t, ts, eventlog.KindKeyUnblocked, alice.Fingerprint())
	submit(t, ts, keys[0].Raw)
	if st := catchUp(t, ts); st.Added != 1 {
		t.Fatalf("after unblock: %+v, want the key added", st)
	}
	if recs, _ := ts.store.ByFingerprint(alice.Fingerprint().Bytes()); len(recs) != 1 {
		t.Fatal("unblocked key not stored")
	}
	if got := ts.store.PtreeElements(); got != treeBefore {
		t.Fatalf("after re-adding: %d tree elements, want %d", got, treeBefore)
	}
}

func TestBlockRefusesUnknownKey(t *testing.T) {
	keys := fixtureKeys(t)
	ts := openTestStore(t, t.TempDir(), 8)
	bob, _ := pgpkey.ParseKey(keys[1])
	admin(t, ts, eventlog.KindKeyBlocked, bob.Fingerprint())
	submit(t, ts, keys[1].Raw)
	if st := catchUp(t, ts); st.Refused != 1 || st.Added != 0 {
		t.Fatalf("stats %+v, want the blocked key refused", st)
	}
	if blocked, _ := ts.store.Blocked(bob.Fingerprint().Bytes()); !blocked {
		t.Fatal("Blocked = false")
	}
}
