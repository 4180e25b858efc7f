package recon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// fakeStore is Keys and Appender in memory. Appended keys are stored under
// their hash, except those in divert, which are stored under another hash
// (as when a fetched key merges into one we hold).
type fakeStore struct {
	mu     sync.Mutex
	stored map[pgpkey.KeyHash]bool
	divert map[pgpkey.KeyHash]bool
	maxKey int // if not 0, Append refuses a call with a larger key, as eventlog does
	events []*eventlog.Event
}

func newFakeStore() *fakeStore {
	return &fakeStore{stored: map[pgpkey.KeyHash]bool{}, divert: map[pgpkey.KeyHash]bool{}}
}

func (s *fakeStore) ByHash(h pgpkey.KeyHash) (*projections.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stored[h] {
		return &projections.Record{Hash: h}, nil
	}
	return nil, projections.ErrNotFound
}

func (s *fakeStore) Novel(k *pgpkey.Key) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.stored[k.Hash()], nil
}

func (s *fakeStore) WaitApplied(ctx context.Context, idx eventlog.Index) error { return nil }

func (s *fakeStore) Append(ctx context.Context, evs ...*eventlog.Event) (eventlog.Index, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range evs {
		if s.maxKey > 0 && len(e.Key) > s.maxKey {
			return 0, fmt.Errorf("append: %w", eventlog.ErrTooLarge)
		}
	}
	for _, e := range evs {
		k, err := parseOneKey(e.Key)
		if err != nil {
			return 0, err
		}
		h := k.Hash()
		if s.divert[h] {
			h[0] ^= 0xff
		}
		s.stored[h] = true
		s.events = append(s.events, e)
	}
	return eventlog.Index(len(s.events)), nil
}

type testKey struct {
	raw  []byte
	hash pgpkey.KeyHash
}

func loadTestKeys(t *testing.T) []testKey {
	t.Helper()
	var out []testKey
	for _, name := range []string{"keys-a.pgp", "keys-b.pgp"} {
		b, err := os.ReadFile(testenv.SharedFile(t, "fixtures/sks/test-keys/"+name))
		if err != nil {
			t.Fatal(err)
		}
		r := pgpkey.NewReader(bytes.NewReader(b))
		for {
			raw, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			k, err := pgpkey.ParseKey(raw)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, testKey{raw.Raw, k.Hash()})
		}
	}
	return out
}

// fakePeer is an HKP server whose /pks/hashquery answers with keys[h] for
// every requested h, in reverse order as SKS does, shaped by the test.
type fakePeer struct {
	keys     map[pgpkey.KeyHash][]byte
	extra    [][]byte                // added to every answer
	poison   map[pgpkey.KeyHash]bool // an answer holding one of these claims a key over the limit
	status   int                     // if not 0, every answer has this status
	stall    bool                    // answer headers, then nothing
	requests [][]pgpkey.KeyHash
	mu       sync.Mutex
}

func (p *fakePeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hs, err := wire.DecodeHashQuery(r.Body, wire.Limits{})
	if err != nil || r.URL.Path != "/pks/hashquery" || r.Method != http.MethodPost {
		http.Error(w, "bad request", 400)
		return
	}
	p.mu.Lock()
	var req []pgpkey.KeyHash
	for _, h := range hs {
		req = append(req, h)
	}
	p.requests = append(p.requests, req)
	p.mu.Unlock()
	if p.status != 0 {
		w.WriteHeader(p.status)
		return
	}
	var keys [][]byte
	for _, h := range slices.Backward(req) {
		if p.poison[h] {
			body := binary.BigEndian.AppendUint32(nil, 1)
			body = binary.BigEndian.AppendUint32(body, 1<<30)
			w.Write(body)
			return
		}
		if k, ok := p.keys[h]; ok {
			keys = append(keys, k)
		}
	}
	keys = append(keys, p.extra...)
	if p.stall {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return
	}
	w.Write(wire.EncodeKeyStrings(keys))
}

func testFetchConfig(t *testing.T) *Config {
	cfg := DefaultConfig()
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t))
	cfg.FetchTimeout = 2 * time.Second
	cfg.Limits.MaxKeyStringBytes = 1 << 20
	cfg.MaxFetchFailures = 8
	return &cfg
}

func startPeer(t *testing.T, p *fakePeer) netip.AddrPort {
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))
}

func hashesOf(tks []testKey) []pgpkey.KeyHash {
	var out []pgpkey.KeyHash
	for _, k := range tks {
		out = append(out, k.hash)
	}
	slices.SortFunc(out, func(a, b pgpkey.KeyHash) int { return bytes.Compare(a[:], b[:]) })
	return out
}

func TestFetch(t *testing.T) {
	tks := loadTestKeys(t)
	if len(tks) != 6 {
		t.Fatalf("%d test keys", len(tks))
	}
	all := map[pgpkey.KeyHash][]byte{}
	for _, k := range tks {
		all[k.hash] = k.raw
	}
	var unknown pgpkey.KeyHash
	unknown[0] = 0x77
	ctx := t.Context()
	log := zerolog.New(zerolog.NewTestWriter(t))

	t.Run("all-returned", func(t *testing.T) {
		store := newFakeStore()
		p := &fakePeer{keys: all}
		f := newFetcher(testFetchConfig(t), store, store)
		st, err := f.fetch(ctx, log, "peer:11370", startPeer(t, p), hashesOf(tks))
		if err != nil {
			t.Fatal(err)
		}
		if st.Asked != 6 || st.Added != 6 || st.Requests != 1 || st.Bad+st.NotReturned+st.NotInTree != 0 {
			t.Errorf("stats %+v", st)
		}
		for _, e := range store.events {
			if e.Origin != eventlog.OriginRecon || e.Peer != "peer:11370" || e.Kind != eventlog.KindKeySubmitted {
				t.Errorf("event %v %v %q", e.Kind, e.Origin, e.Peer)
			}
		}
		// Stored now: a second fetch asks for nothing.
		st, _ = f.fetch(ctx, log, "peer:11370", startPeer(t, p), hashesOf(tks))
		if st.Asked != 0 || st.Skipped != 6 {
			t.Errorf("second fetch %+v", st)
		}
	})

	t.Run("one-bad-key-never-loses-the-rest", func(t *testing.T) {
		store := newFakeStore()
		garbage := []byte{0x99, 0x00, 0x03, 1, 2, 3}     // a truncated key packet
		twoKeys := slices.Concat(tks[0].raw, tks[1].raw) // two keys in one string
		some := map[pgpkey.KeyHash][]byte{tks[0].hash: tks[0].raw, tks[1].hash: tks[1].raw}
		// Two good keys, and three bad strings in their place (tks[5]
		// was not asked for).
		p := &fakePeer{keys: some, extra: [][]byte{garbage, twoKeys, tks[5].raw}}
		f := newFetcher(testFetchConfig(t), store, store)
		st, err := f.fetch(ctx, log, "peer", startPeer(t, p), hashesOf(tks[:5]))
		if err != nil {
			t.Fatal(err)
		}
		if st.Added != 2 || st.Bad != 3 || st.NotReturned != 3 {
			t.Errorf("added %d bad %d not returned %d, want 2, 3, 3 (%+v)", st.Added, st.Bad, st.NotReturned, st)
		}
		if store.stored[tks[5].hash] {
			t.Error("key that was not asked for was stored")
		}
	})

	t.Run("not-returned-is-remembered", func(t *testing.T) {
		store := newFakeStore()
		p := &fakePeer{keys: all}
		f := newFetcher(testFetchConfig(t), store, store)
		addr := startPeer(t, p)
		st, _ := f.fetch(ctx, log, "peer", addr, []pgpkey.KeyHash{unknown})
		if st.NotReturned != 1 {
			t.Errorf("stats %+v", st)
		}
		st, _ = f.fetch(ctx, log, "peer", addr, []pgpkey.KeyHash{unknown})
		if st.Asked != 0 || st.Skipped != 1 || len(p.requests) != 1 {
			t.Errorf("refetched a fruitless hash: %+v, %d requests", st, len(p.requests))
		}
		// Another peer may have it.
		st, _ = f.fetch(ctx, log, "other", addr, []pgpkey.KeyHash{unknown})
		if st.Asked != 1 {
			t.Errorf("other peer: %+v", st)
		}
	})

	t.Run("merged-or-renormalised-is-remembered", func(t *testing.T) {
		store := newFakeStore()
		store.divert[tks[2].hash] = true
		p := &fakePeer{keys: all}
		f := newFetcher(testFetchConfig(t), store, store)
		addr := startPeer(t, p)
		st, _ := f.fetch(ctx, log, "peer", addr, hashesOf(tks[:3]))
		if st.Added != 3 || st.NotInTree != 1 {
			t.Errorf("stats %+v", st)
		}
		st, _ = f.fetch(ctx, log, "peer", addr, []pgpkey.KeyHash{tks[2].hash})
		if st.Asked != 0 {
			t.Errorf("refetched a hash that merged away: %+v", st)
		}
	})

	t.Run("unchanged-is-remembered", func(t *testing.T) {
		store := newFakeStore()
		p := &fakePeer{keys: map[pgpkey.KeyHash][]byte{unknown: tks[0].raw}}
		store.stored[tks[0].hash] = true
		f := newFetcher(testFetchConfig(t), store, store)
		st, _ := f.fetch(ctx, log, "peer", startPeer(t, p), []pgpkey.KeyHash{unknown})
		// The key answering for "unknown" has another hash: dropped.
		if st.Bad != 1 || st.NotReturned != 1 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("oversized-key-isolated-by-halving", func(t *testing.T) {
		store := newFakeStore()
		p := &fakePeer{keys: all, poison: map[pgpkey.KeyHash]bool{tks[3].hash: true}}
		cfg := testFetchConfig(t)
		f := newFetcher(cfg, store, store)
		st, err := f.fetch(ctx, log, "peer", startPeer(t, p), hashesOf(tks))
		if err != nil {
			t.Fatal(err)
		}
		if st.Added != 5 || st.GaveUp != 1 || st.FailedRequests == 0 {
			t.Errorf("stats %+v", st)
		}
		if !f.neg.has("peer", tks[3].hash, time.Now()) {
			t.Error("the hash whose answer is too large is not remembered")
		}
	})

	t.Run("key-the-log-refuses", func(t *testing.T) {
		store := newFakeStore()
		sizes := []int{len(tks[0].raw), len(tks[1].raw), len(tks[2].raw)}
		biggest := slices.Index(sizes, slices.Max(sizes))
		store.maxKey = slices.Max(sizes) - 1
		p := &fakePeer{keys: all}
		f := newFetcher(testFetchConfig(t), store, store)
		st, err := f.fetch(ctx, log, "peer", startPeer(t, p), hashesOf(tks[:3]))
		if err != nil {
			t.Fatal(err)
		}
		if st.Added != 2 || st.Bad != 1 || store.stored[tks[biggest].hash] {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("more-keys-than-asked", func(t *testing.T) {
		store := newFakeStore()
		p := &fakePeer{keys: all, extra: [][]byte{tks[0].raw, tks[0].raw}}
		f := newFetcher(testFetchConfig(t), store, store)
		st, _ := f.fetch(ctx, log, "peer", startPeer(t, p), []pgpkey.KeyHash{tks[1].hash})
		if st.Added != 0 || st.FailedRequests != 1 {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("peer-down-gives-up-without-blacklisting", func(t *testing.T) {
		store := newFakeStore()
		p := &fakePeer{status: 500}
		cfg := testFetchConfig(t)
		cfg.MaxFetchFailures = 3
		f := newFetcher(cfg, store, store)
		st, err := f.fetch(ctx, log, "peer", startPeer(t, p), hashesOf(tks))
		if err != nil {
			t.Fatal(err)
		}
		if st.FailedRequests != 3 || st.GaveUp != 6 || f.neg.len() != 0 {
			t.Errorf("stats %+v, %d remembered", st, f.neg.len())
		}
	})

	t.Run("stalled-answer-times-out", func(t *testing.T) {
		store := newFakeStore()
		p := &fakePeer{keys: all, stall: true}
		cfg := testFetchConfig(t)
		cfg.FetchTimeout = 200 * time.Millisecond
		cfg.MaxFetchFailures = 2
		f := newFetcher(cfg, store, store)
		start := time.Now()
		st, err := f.fetch(ctx, log, "peer", startPeer(t, p), hashesOf(tks))
		if err != nil {
			t.Fatal(err)
		}
		if st.FailedRequests != 2 || time.Since(start) > 5*time.Second {
			t.Errorf("stats %+v after %v", st, time.Since(start))
		}
	})

	t.Run("batches-adapt", func(t *testing.T) {
		store := newFakeStore()
		p := &fakePeer{keys: all}
		cfg := testFetchConfig(t)
		cfg.FetchBatch = 4
		f := newFetcher(cfg, store, store)
		f.fetch(ctx, log, "peer", startPeer(t, p), hashesOf(tks))
		var sizes []int
		for _, r := range p.requests {
			sizes = append(sizes, len(r))
		}
		slices.Sort(sizes) // the two requests run in parallel
		if !slices.Equal(sizes, []int{2, 4}) {
			t.Errorf("batch sizes %v, want 4 and 2", sizes)
		}
	})

	t.Run("cancelled", func(t *testing.T) {
		store := newFakeStore()
		p := &fakePeer{keys: all}
		f := newFetcher(testFetchConfig(t), store, store)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := f.fetch(cctx, log, "peer", startPeer(t, p), hashesOf(tks))
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v", err)
		}
	})
}

func TestNegCacheBounds(t *testing.T) {
	c := newNegCache(time.Hour, 3)
	now := time.Now()
	var hs []pgpkey.KeyHash
	for i := range 5 {
		var h pgpkey.KeyHash
		h[0] = byte(i)
		hs = append(hs, h)
		c.add("p", h, now)
	}
	if c.len() != 3 || c.has("p", hs[0], now) || !c.has("p", hs[4], now) {
		t.Errorf("len %d; oldest kept %v; newest kept %v", c.len(), c.has("p", hs[0], now), c.has("p", hs[4], now))
	}
	later := now.Add(2 * time.Hour)
	if c.has("p", hs[4], later) {
		t.Error("entry outlived its TTL")
	}
	c.add("p", hs[0], later)
	if c.len() != 1 {
		t.Errorf("expired entries kept: len %d", c.len())
	}
	for i := range 10000 {
		c.add("p", hs[1], later.Add(time.Duration(i))) // renewals must not grow the queue without bound
	}
	if c.order.len() > 2*3+16 {
		t.Errorf("queue length %d", c.order.len())
	}
}

// TestParseOneKeyAllocatesItsSize: a hashquery answer's keys are held
// until appended, and a key's packets keep the whole buffer it was read
// into alive, so parsing one must not allocate a buffer many times its
// size (NewReader's 64 KiB slab held 45 of the corpus's 1.4 KB keys' worth
// of memory for each key while an empty node fetched 100k keys). The
// smallest of three measurements is taken, so that another goroutine
// allocating meanwhile cannot fail it.
func TestParseOneKeyAllocatesItsSize(t *testing.T) {
	keys := loadTestKeys(t)
	var total int
	for _, k := range keys {
		total += len(k.raw)
	}
	avg := float64(total) / float64(len(keys))
	const rounds = 20
	best := -1.0
	for range 3 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range rounds {
			for _, k := range keys {
				if _, err := parseOneKey(k.raw); err != nil {
					t.Fatal(err)
				}
			}
		}
		runtime.ReadMemStats(&after)
		perKey := float64(after.TotalAlloc-before.TotalAlloc) / float64(rounds*len(keys))
		if best < 0 || perKey < best {
			best = perKey
		}
	}
	t.Logf("%d keys of %.0f bytes on average: %.0f bytes allocated per parse", len(keys), avg, best)
	if best > 16<<10 {
		t.Fatalf("%.0f bytes allocated per parse of a %.0f-byte key, want under 16 KiB", best, avg)
	}
}
