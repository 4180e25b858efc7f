package hkp_test

import (
	"testing"

	"github.com/grapevine-keyserver/grapevine/hkp"
)

// TestMRIndexFromCache: a machine-readable index answered from cached index
// entries is byte-identical to the first, computed answer, whether the
// cache was filled by an MR index, by an HTML index (summaries only) or is
// too small to hold the answer's keys.
func TestMRIndexFromCache(t *testing.T) {
	queries := []string{"example", "alice", "bob", "grace", "example+org", "0x3B03A965A519A6CAE8B09425CED1786732CA2E5C", "nosuchword"}
	fresh := func(mutate func(*hkp.Config)) *testServer {
		ts := newTestServer(t, mutate)
		ts.uploadFixtures(t, "keys-a.pgp", "keys-b.pgp", "grace.pgp")
		return ts
	}
	mr := func(ts *testServer, q string) (int, string) {
		resp, body := ts.get(t, "/pks/lookup?op=index&options=mr&search="+q)
		return resp.StatusCode, resp.Header.Get("X-HKP-Results-Count") + "\n" + body
	}

	a := fresh(nil)
	want := map[string]string{}
	hits := 0
	for _, q := range queries {
		code, body := mr(a, q)
		want[q] = body
		if code == 200 {
			hits++
		}
	}
	if hits < 4 {
		t.Fatalf("only %d of %d queries found keys", hits, len(queries))
	}
	for _, q := range queries { // now from the cache
		if _, got := mr(a, q); got != want[q] {
			t.Errorf("%s from the cache:\n%s\nwant\n%s", q, got, want[q])
		}
	}

	b := fresh(nil)
	for _, q := range queries {
		b.get(t, "/pks/lookup?op=index&search="+q) // HTML: caches summaries only
		b.get(t, "/pks/lookup?op=vindex&search="+q)
	}
	for _, q := range queries {
		if _, got := mr(b, q); got != want[q] {
			t.Errorf("%s after an HTML index:\n%s\nwant\n%s", q, got, want[q])
		}
	}

	c := fresh(func(cfg *hkp.Config) { cfg.SummaryCacheKeys = 1 })
	for i := 0; i < 2; i++ {
		for _, q := range queries {
			if _, got := mr(c, q); got != want[q] {
				t.Errorf("%s with a one-key cache:\n%s\nwant\n%s", q, got, want[q])
			}
		}
	}
}
