package recon

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// gatePeer holds every hashquery until `want` of them are in flight at
// once, then answers them all. A fetch that sends one request at a time
// never gets an answer (the peer gives up after a long while and answers
// 503, so a broken fetch fails instead of hanging).
type gatePeer struct {
	fakePeer
	want int

	mu      sync.Mutex
	in, max int
	open    chan struct{}
}

func (p *gatePeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.in++
	p.max = max(p.max, p.in)
	if p.in >= p.want {
		select {
		case <-p.open:
		default:
			close(p.open)
		}
	}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.in--
		p.mu.Unlock()
	}()
	select {
	case <-p.open:
		p.fakePeer.ServeHTTP(w, r)
	case <-time.After(20 * time.Second):
		http.Error(w, "no parallel requests", http.StatusServiceUnavailable)
	}
}

// stallPeer holds every request until the client cancels it (or, if it
// never does, a long while, then answers 503), except the one that asks
// for fail: that one fails once `others` requests are being held.
type stallPeer struct {
	fail   pgpkey.KeyHash
	others int
	held   chan struct{} // one value per request being held

	mu                  sync.Mutex
	cancelled, timedOut int
}

func (p *stallPeer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hs, err := wire.DecodeHashQuery(r.Body, wire.Limits{})
	if err != nil || len(hs) != 1 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if pgpkey.KeyHash(hs[0]) == p.fail {
		for range p.others {
			select {
			case <-p.held:
			case <-time.After(20 * time.Second):
			}
		}
		http.Error(w, "broken", http.StatusInternalServerError)
		return
	}
	p.held <- struct{}{}
	select {
	case <-r.Context().Done():
		p.mu.Lock()
		p.cancelled++
		p.mu.Unlock()
	case <-time.After(20 * time.Second):
		p.mu.Lock()
		p.timedOut++
		p.mu.Unlock()
		http.Error(w, "stalled", http.StatusServiceUnavailable)
	}
}

func TestFetchParallel(t *testing.T) {
	tks := loadTestKeys(t)
	all := map[pgpkey.KeyHash][]byte{}
	for _, k := range tks {
		all[k.hash] = k.raw
	}
	ctx := t.Context()
	log := zerolog.New(zerolog.NewTestWriter(t))

	t.Run("requests-in-parallel", func(t *testing.T) {
		store := newFakeStore()
		p := &gatePeer{fakePeer: fakePeer{keys: all}, want: fetchParallel, open: make(chan struct{})}
		cfg := testFetchConfig(t)
		cfg.FetchBatch = 1
		cfg.FetchTimeout = time.Minute
		f := newFetcher(cfg, store, store)
		srv := httptest.NewServer(p)
		t.Cleanup(srv.Close)
		addr := netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))
		st, err := f.fetch(ctx, log, "peer", addr, hashesOf(tks))
		if err != nil {
			t.Fatal(err)
		}
		if st.Added != len(tks) || st.FailedRequests != 0 || st.Requests != len(tks) {
			t.Errorf("stats %+v", st)
		}
		if p.max < fetchParallel || p.max > fetchParallel {
			t.Errorf("at most %d requests at once, want %d", p.max, fetchParallel)
		}
	})

	t.Run("failure-among-parallel-requests", func(t *testing.T) {
		// Three requests of two hashes at once; the one holding the
		// poisoned hash fails, is halved, and only that hash is lost.
		store := newFakeStore()
		p := &fakePeer{keys: all, poison: map[pgpkey.KeyHash]bool{tks[3].hash: true}}
		cfg := testFetchConfig(t)
		cfg.FetchBatch = 2
		f := newFetcher(cfg, store, store)
		st, err := f.fetch(ctx, log, "peer", startPeer(t, p), hashesOf(tks))
		if err != nil {
			t.Fatal(err)
		}
		if st.Added != len(tks)-1 || st.GaveUp != 1 || st.FailedRequests != 2 || store.stored[tks[3].hash] {
			t.Errorf("stats %+v", st)
		}
	})

	t.Run("giving-up-cancels-requests-out", func(t *testing.T) {
		// The first failure is the last allowed: the requests still out
		// are cancelled, not waited for (FetchTimeout is a minute).
		store := newFakeStore()
		hs := hashesOf(tks)
		p := &stallPeer{fail: hs[0], others: fetchParallel - 1, held: make(chan struct{}, len(hs))}
		cfg := testFetchConfig(t)
		cfg.FetchBatch = 1
		cfg.MaxFetchFailures = 1
		cfg.FetchTimeout = time.Minute
		f := newFetcher(cfg, store, store)
		srv := httptest.NewServer(p)
		t.Cleanup(srv.Close)
		st, err := f.fetch(ctx, log, "peer", netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://")), hs)
		if err != nil {
			t.Fatal(err)
		}
		if st.GaveUp != len(tks) || st.Added != 0 || st.Requests != fetchParallel {
			t.Errorf("stats %+v", st)
		}
		srv.Close() // waits for the handlers
		if p.cancelled != fetchParallel-1 || p.timedOut != 0 {
			t.Errorf("%d requests cancelled, %d held until the peer gave up; want %d and 0", p.cancelled, p.timedOut, fetchParallel-1)
		}
	})

	t.Run("give-up-with-requests-out", func(t *testing.T) {
		// Every request fails: after MaxFetchFailures the fetch stops,
		// waits for what is out, and counts every hash as given up.
		store := newFakeStore()
		p := &fakePeer{status: 500}
		cfg := testFetchConfig(t)
		cfg.FetchBatch = 1
		cfg.MaxFetchFailures = 2
		f := newFetcher(cfg, store, store)
		st, err := f.fetch(ctx, log, "peer", startPeer(t, p), hashesOf(tks))
		if err != nil {
			t.Fatal(err)
		}
		if st.GaveUp+st.Added != len(tks) || st.Added != 0 || st.FailedRequests < 2 || f.neg.len() != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}
