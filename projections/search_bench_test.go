package projections_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

// BenchmarkSearchWords runs word searches on a generated 3,000-key store:
// "email" is the words of one key's e-mail address (what op=index by
// address does: 3-4 words, some on most keys), "word" a single word of a
// user ID. b.N counts searches, cycling through 200 queries.
func BenchmarkSearchWords(b *testing.B) {
	var buf bytes.Buffer
	if _, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: 3000, Seed: 7, RSAPoolSize: 2}); err != nil {
		b.Fatal(err)
	}
	ts := openTestStore(b, b.TempDir(), 256)
	r := pgpkey.NewReader(&buf)
	var raws [][]byte
	var emails, words [][]string
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
		if err != nil || len(raws)%15 != 0 {
			continue
		}
		for _, u := range k.UserIDs() {
			if e := projections.Email(u); e != "" && len(emails) < 200 {
				emails = append(emails, projections.Words(e))
			}
			if ws := projections.Words(u); len(ws) > 0 && len(words) < 200 {
				words = append(words, ws[:1])
			}
			break
		}
	}
	submit(b, ts, raws...)
	catchUp(b, ts)
	lim := projections.SearchLimits{MaxMatches: 100000, MaxInternalMatches: 100000}
	for _, c := range []struct {
		name    string
		queries [][]string
	}{{"email", emails}, {"word", words}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := ts.store.SearchWords(c.queries[i%len(c.queries)], lim); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
