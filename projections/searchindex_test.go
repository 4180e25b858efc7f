package projections_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

var searchLim = projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: 20000}

// searchAgrees checks that a word search finds rec's key with exactly the
// latest version's fields, with and without its key bytes.
func searchAgrees(t *testing.T, ts *testStore, words []string, fpr pgpkey.Fingerprint) {
	t.Helper()
	latest, err := ts.store.ByFingerprint(fpr.Bytes())
	if err != nil || len(latest) != 1 {
		t.Fatalf("ByFingerprint: %d, %v", len(latest), err)
	}
	want := latest[0]
	full, err := ts.store.SearchWords(words, searchLim)
	if err != nil {
		t.Fatalf("SearchWords(%q): %v", words, err)
	}
	meta, err := ts.store.SearchWordsMeta(words, searchLim)
	if err != nil {
		t.Fatalf("SearchWordsMeta(%q): %v", words, err)
	}
	if len(full) != len(meta) {
		t.Fatalf("SearchWords(%q) has %d records, SearchWordsMeta %d", words, len(full), len(meta))
	}
	found := false
	for i, r := range full {
		m := meta[i]
		if !bytes.Equal(r.RID, m.RID) || r.Index != m.Index || r.Hash != m.Hash || r.SKS != m.SKS || !r.Created.Equal(m.Created) || m.Key != nil {
			t.Fatalf("SearchWordsMeta(%q)[%d] = %+v, SearchWords %+v", words, i, m, r)
		}
		if !bytes.Equal(r.RID, want.RID) {
			continue
		}
		found = true
		if r.Index != want.Index || r.Hash != want.Hash || r.SKS != want.SKS || !r.Created.Equal(want.Created) || !bytes.Equal(r.Key, want.Key) {
			t.Fatalf("SearchWords(%q) found %X@%d %s, latest is @%d %s", words, r.RID, r.Index, r.Hash, want.Index, want.Hash)
		}
		if err := ts.store.FillKey(m); err != nil || !bytes.Equal(m.Key, want.Key) {
			t.Fatalf("FillKey: %v, or other bytes than the latest version", err)
		}
	}
	if !found {
		t.Fatalf("SearchWords(%q) misses the key", words)
	}
}

// TestSearchFollowsUpdatesAndDeletes: a key's postings carry its newest
// version, so an update (a merge adding a user ID) rewrites the postings of
// the words it already had, a search by several words (counts, signatures)
// finds it through old and new user IDs alike, and a deletion removes
// postings and counts; the store then still equals a replay and its counts
// equal its postings (Check).
func TestSearchFollowsUpdatesAndDeletes(t *testing.T) {
	raw := fixtureKeys(t)[0]
	whole, err := pgpkey.ParseKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	ts := openTestStore(t, t.TempDir(), 2)
	for _, k := range fixtureKeys(t)[1:] {
		submit(t, ts, k.Raw)
	}
	first := &pgpkey.Key{Primary: whole.Primary, UIDs: whole.UIDs[:1], Subkeys: whole.Subkeys}
	submit(t, ts, first.Marshal())
	catchUp(t, ts)
	oldWords := projections.Words(first.UserIDs()[0])
	searchAgrees(t, ts, oldWords, whole.Fingerprint())

	uid := "Quuxly Zedd (searchindex) <quuxly.zedd@update.test>"
	second := &pgpkey.Key{Primary: whole.Primary, UIDs: append(slices.Clone(whole.UIDs), pgpkey.Group{Packet: pgpkey.Packet{Tag: pgpkey.TagUserID, Body: []byte(uid)}})}
	submit(t, ts, second.Marshal())
	catchUp(t, ts)
	// The old user ID's words now lead to the new version.
	searchAgrees(t, ts, oldWords, whole.Fingerprint())
	searchAgrees(t, ts, []string{"quuxly"}, whole.Fingerprint())
	searchAgrees(t, ts, projections.Words(uid), whole.Fingerprint())
	searchAgrees(t, ts, []string{"quuxly", oldWords[0]}, whole.Fingerprint())
	if res, fs := runCheck(t, ts); !res.OK() {
		t.Fatalf("after the update: %d findings: %v", res.Findings, fs)
	}

	if _, err := ts.log.Append(t.Context(), &eventlog.Event{Kind: eventlog.KindKeyDeleted, Origin: eventlog.OriginAdmin, Target: whole.Fingerprint().Bytes(), Reason: "test", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	catchUp(t, ts)
	for _, q := range [][]string{{"quuxly"}, {"quuxly", "zedd"}, projections.Words(uid)} {
		if recs, err := ts.store.SearchWordsMeta(q, searchLim); err != nil || len(recs) != 0 {
			t.Fatalf("SearchWordsMeta(%q) after deletion = %d records, %v", q, len(recs), err)
		}
	}
	if res, fs := runCheck(t, ts); !res.OK() {
		t.Fatalf("after the deletion: %d findings: %v", res.Findings, fs)
	}
}

// TestCheckFindsWrongWordCount: a count that disagrees with the postings
// is a finding of its own (a search trusts the counts).
func TestCheckFindsWrongWordCount(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), 8)
	for _, k := range fixtureKeys(t) {
		submit(t, ts, k.Raw)
	}
	catchUp(t, ts)
	// "example" is on several fixture keys; say it is on 1000.
	if err := ts.store.DB().Set([]byte("Wexample\x01"), []byte{0xe8, 0x07}, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	res, fs := runCheck(t, ts)
	if res.OK() {
		t.Fatal("a wrong word count passed the check")
	}
	found := false
	for _, f := range fs {
		found = found || strings.Contains(f.Text, `word "example" counts 1000 postings but has`)
	}
	if !found {
		t.Fatalf("no count finding among %v", fs)
	}
}

// TestSearchInsufficientlySpecificFromCounts: the per-word counts decide
// SKS's "insufficiently specific" error from the rarest word, and a word
// nobody has gives no result before any count is compared.
func TestSearchInsufficientlySpecificFromCounts(t *testing.T) {
	ts := openTestStore(t, t.TempDir(), 8)
	for _, k := range fixtureKeys(t) {
		submit(t, ts, k.Raw)
	}
	catchUp(t, ts)
	all, err := ts.store.SearchWordsMeta([]string{"example"}, searchLim)
	if err != nil || len(all) < 2 {
		t.Fatalf("example: %d, %v", len(all), err)
	}
	n := len(all)
	if _, err := ts.store.SearchWordsMeta([]string{"example"}, projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: n - 1}); !errors.Is(err, projections.ErrInsufficientlySpecific) {
		t.Fatalf("count %d over a limit of %d: %v", n, n-1, err)
	}
	if recs, err := ts.store.SearchWordsMeta([]string{"example"}, projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: n}); err != nil || len(recs) != n {
		t.Fatalf("count %d at a limit of %d: %d, %v", n, n, len(recs), err)
	}
	if recs, err := ts.store.SearchWordsMeta([]string{"example", "nosuchwordanywhere"}, projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: 0}); err != nil || len(recs) != 0 {
		t.Fatalf("a word nobody has: %d, %v; want no result and no error", len(recs), err)
	}
}

// TestSearchRejectsSignatureFalsePositives: a key with a hundred words has
// most bits of its word signature set, so the signature alone would let it
// match words it does not have; the exact check must turn them away while
// still finding the keys that have both words.
func TestSearchRejectsSignatureFalsePositives(t *testing.T) {
	keys := fixtureKeys(t)
	ka, err := pgpkey.ParseKey(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	kb, err := pgpkey.ParseKey(keys[1])
	if err != nil {
		t.Fatal(err)
	}
	var many, others []string
	for i := 0; i < 100; i++ {
		many = append(many, fmt.Sprintf("manyword%d", i))
		others = append(others, fmt.Sprintf("otherword%d", i))
	}
	withUID := func(k *pgpkey.Key, uid string) []byte {
		g := pgpkey.Group{Packet: pgpkey.Packet{Tag: pgpkey.TagUserID, Body: []byte(uid)}}
		return (&pgpkey.Key{Primary: k.Primary, UIDs: append(slices.Clone(k.UIDs), g)}).Marshal()
	}
	ts := openTestStore(t, t.TempDir(), 8)
	submit(t, ts, withUID(ka, strings.Join(many, " ")), withUID(kb, "manyword0 "+strings.Join(others, " ")))
	catchUp(t, ts)
	for _, w := range others {
		recs, err := ts.store.SearchWordsMeta([]string{"manyword1", w}, searchLim)
		if err != nil || len(recs) != 0 {
			t.Fatalf("manyword1 AND %s: %d records, %v; want none", w, len(recs), err)
		}
		recs, err = ts.store.SearchWordsMeta([]string{w, "manyword0"}, searchLim)
		if err != nil || len(recs) != 1 || recs[0].Hash == ka.Hash() {
			t.Fatalf("%s AND manyword0: %d records, %v; want the second key", w, len(recs), err)
		}
	}
}

// TestSearchCountsFollowCommits: "insufficiently specific" is decided on
// the stored count as it is now, through additions, deletions and words
// nobody had when first searched for.
func TestSearchCountsFollowCommits(t *testing.T) {
	keys := fixtureKeys(t)
	ts := openTestStore(t, t.TempDir(), 8)
	var parsed []*pgpkey.Key
	for _, raw := range keys {
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(strings.Fields(strings.ToLower(strings.Join(k.UserIDs(), " "))), "quuxcount") {
			t.Fatal("fixture already has the test word")
		}
		parsed = append(parsed, k)
	}
	uidKey := func(k *pgpkey.Key) []byte {
		g := pgpkey.Group{Packet: pgpkey.Packet{Tag: pgpkey.TagUserID, Body: []byte("Quuxcount <q@count.test>")}}
		return (&pgpkey.Key{Primary: k.Primary, UIDs: append(slices.Clone(k.UIDs), g)}).Marshal()
	}
	submit(t, ts, uidKey(parsed[0]), uidKey(parsed[1]))
	catchUp(t, ts)
	lim := projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: 2}
	for i := 0; i < 2; i++ {
		if recs, err := ts.store.SearchWordsMeta([]string{"quuxcount"}, lim); err != nil || len(recs) != 2 {
			t.Fatalf("two keys at a limit of 2: %d, %v", len(recs), err)
		}
	}
	submit(t, ts, uidKey(parsed[2]))
	catchUp(t, ts)
	if _, err := ts.store.SearchWordsMeta([]string{"quuxcount"}, lim); !errors.Is(err, projections.ErrInsufficientlySpecific) {
		t.Fatalf("three keys at a limit of 2: %v; want insufficiently specific (a stale cached count?)", err)
	}
	if _, err := ts.log.Append(t.Context(), &eventlog.Event{Kind: eventlog.KindKeyDeleted, Origin: eventlog.OriginAdmin, Target: parsed[2].Fingerprint().Bytes(), Reason: "test", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	catchUp(t, ts)
	if recs, err := ts.store.SearchWordsMeta([]string{"quuxcount"}, lim); err != nil || len(recs) != 2 {
		t.Fatalf("after deleting the third key: %d, %v", len(recs), err)
	}
	// A word nobody had, cached as such, is found once a key has it.
	if recs, _ := ts.store.SearchWordsMeta([]string{"quuxlater"}, lim); len(recs) != 0 {
		t.Fatal("a word nobody has found keys")
	}
	g := pgpkey.Group{Packet: pgpkey.Packet{Tag: pgpkey.TagUserID, Body: []byte("Quuxlater")}}
	submit(t, ts, (&pgpkey.Key{Primary: parsed[3].Primary, UIDs: append(slices.Clone(parsed[3].UIDs), g)}).Marshal())
	catchUp(t, ts)
	if recs, err := ts.store.SearchWordsMeta([]string{"quuxlater"}, lim); err != nil || len(recs) != 1 {
		t.Fatalf("a word added after it was searched: %d, %v", len(recs), err)
	}
}
