package projections_test

import (
	"math/rand"
	"slices"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestSearchWordsMatchesScan checks word search against its definition on
// a generated corpus: the keys whose user IDs, together, hold every query
// word, newest first (ties in record-ID order). Queries take 1-4 words of
// one key (a hit), words of two keys (usually no hit) and common words,
// so that the intersection is exercised with candidates missing from
// every other word's postings, from some, and from none.
func TestSearchWordsMatchesScan(t *testing.T) {
	raws, _ := generatedKeys(t, 300, 7)
	ts := openTestStore(t, t.TempDir(), 64)
	submit(t, ts, raws...)
	catchUp(t, ts)

	type key struct {
		rec   *projections.Record
		words map[string]bool
	}
	var keys []key
	if err := ts.store.ScanAsOf(ts.store.Applied(), func(rec *projections.Record) error {
		k, err := projections.ParseEventKey(rec.Key)
		if err != nil {
			return err
		}
		keys = append(keys, key{rec, userIDWords(k)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := func(words []string) []pgpkey.KeyHash {
		var recs []*projections.Record
		for _, k := range keys {
			all := true
			for _, w := range words {
				all = all && k.words[w]
			}
			if all {
				recs = append(recs, k.rec)
			}
		}
		slices.SortStableFunc(recs, func(a, b *projections.Record) int { return b.Created.Compare(a.Created) })
		var out []pgpkey.KeyHash
		for _, r := range recs {
			out = append(out, r.Hash)
		}
		return out
	}
	wordsOf := func(k key) []string {
		var ws []string
		for w := range k.words {
			ws = append(ws, w)
		}
		slices.Sort(ws)
		return ws
	}

	rng := rand.New(rand.NewSource(1))
	var queries [][]string
	for i := 0; i < 300; i++ {
		a := wordsOf(keys[rng.Intn(len(keys))])
		rng.Shuffle(len(a), func(i, j int) { a[i], a[j] = a[j], a[i] })
		q := a[:1+rng.Intn(min(4, len(a)))]
		switch i % 3 {
		case 1: // one word of another key too
			b := wordsOf(keys[rng.Intn(len(keys))])
			q = append(slices.Clone(q), b[rng.Intn(len(b))])
		case 2: // a common word
			q = append(slices.Clone(q), []string{"org", "example", "com", "test"}[rng.Intn(4)])
		}
		queries = append(queries, slices.Compact(q))
	}
	hits := 0
	// Twice: the second pass answers from what the first learnt about
	// each version's words (wordfacts.go), with no seek.
	for i, q := range append(slices.Clone(queries), queries...) {
		got, err := ts.store.SearchWords(q, projections.SearchLimits{MaxMatches: 100000, MaxInternalMatches: 100000})
		if err != nil {
			t.Fatalf("SearchWords(%q): %v", q, err)
		}
		var gotHashes []pgpkey.KeyHash
		for _, r := range got {
			gotHashes = append(gotHashes, r.Hash)
		}
		if w := want(q); !slices.Equal(gotHashes, w) {
			t.Errorf("SearchWords(%q) = %v, want %v", q, gotHashes, w)
		}
		if len(got) > 0 && i < len(queries) {
			hits++
		}
	}
	if hits < len(queries)/3 || hits == len(queries) {
		t.Errorf("%d of %d queries hit: the queries do not exercise both outcomes", hits, len(queries))
	}
}
