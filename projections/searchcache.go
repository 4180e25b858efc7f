package projections

import (
	"errors"
	"strconv"
	"strings"
	"sync"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// searchCache keeps the answers of word searches (SearchWordsMeta: records
// without their key bytes, or SKS's two limit errors) for as long as the
// projections' applied index stays where it was when the search began.
// Every write to the word index is part of a batch that moves the applied
// index after it commits (applyBatch, bulkApply), and a search reads that
// index before it opens its snapshot, so an answer is only served while the
// database still holds what it was computed from, or something newer that
// a commit in flight made visible before the index moved: never an older
// state. Any applied batch empties the cache, so it helps a read-mostly
// server (an e-mail search's postings walk was half of its CPU).
//
// Bounded by cached records; when full, entries are dropped in map order.
// Safe for concurrent use; the zero value works.
type searchCache struct {
	mu      sync.RWMutex   // lookups never wait for each other
	applied eventlog.Index // the applied index the entries were computed at
	cost    int
	m       map[string]searchAnswer
}

type searchAnswer struct {
	recs []*Record // shared with every caller, never modified
	err  error
}

// searchCacheCost bounds the records (plus one per entry) a searchCache
// holds: about 150 bytes each, so about 5 MB.
const searchCacheCost = 32 << 10

// searchKey identifies a search: its words and limits.
func searchKey(words []string, lim SearchLimits) string {
	var b strings.Builder
	b.Grow(24 + 8*len(words))
	b.WriteString(strconv.Itoa(lim.MaxMatches))
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(lim.MaxInternalMatches))
	for _, w := range words {
		b.WriteByte(0) // words never contain NUL (Words splits on it)
		b.WriteString(w)
	}
	return b.String()
}

// get returns the answer cached for key at applied index at.
func (c *searchCache) get(key string, at eventlog.Index) (searchAnswer, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.applied != at {
		return searchAnswer{}, false
	}
	a, ok := c.m[key]
	return a, ok
}

// put caches an answer computed from a database at least at applied index
// at, read before the search began. An answer for a newer index than the
// cache's empties the cache; one for an older index is not kept.
func (c *searchCache) put(key string, at eventlog.Index, a searchAnswer) {
	cost := len(a.recs) + 1
	if cost > searchCacheCost/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case at < c.applied:
		return
	case at > c.applied || c.m == nil:
		c.applied, c.cost, c.m = at, 0, make(map[string]searchAnswer)
	}
	if _, ok := c.m[key]; ok {
		return
	}
	for k, old := range c.m {
		if c.cost+cost <= searchCacheCost {
			break
		}
		delete(c.m, k)
		c.cost -= len(old.recs) + 1
	}
	c.m[key] = a
	c.cost += cost
}

// cacheable reports whether a search's outcome may be cached: a result or
// one of SKS's limit errors, not a read failure.
func cacheable(err error) bool {
	return err == nil || errors.Is(err, ErrTooManyResponses) || errors.Is(err, ErrInsufficientlySpecific)
}

// copyRecords returns copies of the records, which the caller may modify
// (fillKey sets Key); the slices inside them are shared and never written.
func copyRecords(recs []*Record) []*Record {
	if recs == nil {
		return nil
	}
	vals := make([]Record, len(recs))
	out := make([]*Record, len(recs))
	for i, r := range recs {
		vals[i] = *r
		out[i] = &vals[i]
	}
	return out
}
