package projections_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

// BenchmarkSearchWords runs word searches on a generated store of
// GRAPEVINE_BENCH_SEARCH_KEYS keys (3,000 by default; grapevine-bench's
// HTTP rows use 100,000): "email" is the words of one key's e-mail address
// (what op=index by address does: 3-4 words, some on most keys), "word" a
// single ASCII word of at least 4 letters carried by at most 50 keys (the
// bench's word queries). b.N counts searches, cycling through 200 queries.
// The "meta" variants are what op=index&options=mr reads: records without
// their key bytes.
func BenchmarkSearchWords(b *testing.B) {
	n := 3000
	if v, err := strconv.Atoi(os.Getenv("GRAPEVINE_BENCH_SEARCH_KEYS")); err == nil && v > 0 {
		n = v
	}
	var buf bytes.Buffer
	if _, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: n, Seed: 7, RSAPoolSize: 2}); err != nil {
		b.Fatal(err)
	}
	ts := openTestStore(b, b.TempDir(), 256)
	r := pgpkey.NewReader(&buf)
	var raws [][]byte
	var emails, words [][]string
	wordKeys := make(map[string]int)
	for {
		raw, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		raws = append(raws, raw.Raw)
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			continue
		}
		seen := make(map[string]bool)
		for _, u := range k.UserIDs() {
			if e := projections.Email(u); e != "" && len(raws)%(n/200+1) == 0 && len(emails) < 200 {
				emails = append(emails, projections.Words(e))
			}
			for _, w := range projections.Words(u) {
				if !seen[w] {
					seen[w] = true
					wordKeys[w]++
				}
			}
		}
	}
	var rare []string
	for w, c := range wordKeys {
		if len(w) >= 4 && c <= 50 && isASCIILetters(w) {
			rare = append(rare, w)
		}
	}
	sort.Strings(rare)
	for i := 0; i < len(rare) && len(words) < 200; i += len(rare)/200 + 1 {
		words = append(words, []string{rare[i]})
	}
	submit(b, ts, raws...)
	catchUp(b, ts)
	lim := projections.SearchLimits{MaxMatches: 500, MaxInternalMatches: 20000}
	for _, c := range []struct {
		name    string
		queries [][]string
		meta    bool
	}{{"email", emails, false}, {"word", words, false}, {"email-meta", emails, true}, {"word-meta", words, true}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			// CPU time per search (the process's user+system time), which
			// a loaded machine disturbs far less than wall time.
			cpu0 := cpuTime()
			defer func() { b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op") }()
			for i := 0; i < b.N; i++ {
				search := ts.store.SearchWords
				if c.meta {
					search = ts.store.SearchWordsMeta
				}
				if _, err := search(c.queries[i%len(c.queries)], lim); err != nil && err != projections.ErrTooManyResponses {
					b.Fatal(err)
				}
			}
		})
	}
}

func isASCIILetters(w string) bool {
	for i := 0; i < len(w); i++ {
		if w[i] < 'a' || w[i] > 'z' {
			return false
		}
	}
	return true
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
