package projections_test

import (
	"slices"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestSearchCacheFollowsApplies: a word search asked again after more keys
// were applied answers with them, though the first answers were cached;
// and SearchWords, whose records carry the keys, answers copies: the
// shared answers of SearchWordsMeta keep no key bytes.
func TestSearchCacheFollowsApplies(t *testing.T) {
	raws, keys := generatedKeys(t, 200, 11)
	words := make([]map[string]bool, len(keys))
	for i, k := range keys {
		words[i] = userIDWords(k)
	}
	half := len(raws) / 2
	// A word carried by keys of both halves, but not by too many.
	word := ""
	for w := range words[half] {
		first, second := 0, 0
		for i, ws := range words {
			if ws[w] && i < half {
				first++
			} else if ws[w] {
				second++
			}
		}
		if first > 0 && second > 0 && first+second < 100 && (word == "" || w < word) {
			word = w
		}
	}
	if word == "" {
		t.Fatal("no word shared by both halves of the corpus")
	}
	ts := openTestStore(t, t.TempDir(), 16)
	lim := projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: 20000}
	search := func() []*projections.Record {
		t.Helper()
		recs, err := ts.store.SearchWordsMeta([]string{word}, lim)
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	hashes := func(recs []*projections.Record) []pgpkey.KeyHash {
		var out []pgpkey.KeyHash
		for _, r := range recs {
			out = append(out, r.Hash)
		}
		return out
	}

	submit(t, ts, raws[:half]...)
	catchUp(t, ts)
	before := search()
	if len(before) == 0 {
		t.Fatalf("%q: no keys after the first half", word)
	}
	full, err := ts.store.SearchWords([]string{word}, lim)
	if err != nil || len(full) != len(before) || full[0].Key == nil {
		t.Fatalf("SearchWords %q: %d records (err %v), first with key %v; want %d with keys", word, len(full), err, len(full) > 0 && full[0].Key != nil, len(before))
	}
	again := search()
	if again[0].Key != nil {
		t.Fatalf("SearchWords filled the key of a shared SearchWordsMeta answer")
	}

	submit(t, ts, raws[half:]...)
	catchUp(t, ts)
	after := search()
	// What an uncached search of the same database answers: a new store
	// opened on it has an empty cache.
	ts.close()
	fresh := openTestStore(t, ts.dir, 16)
	want, err := fresh.store.SearchWordsMeta([]string{word}, lim)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) <= len(again) || !slices.Equal(hashes(after), hashes(want)) {
		t.Fatalf("%q after applying more keys: %d keys %v, want %d %v (before: %d)", word, len(after), hashes(after), len(want), hashes(want), len(again))
	}
}
