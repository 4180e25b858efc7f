package recon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// Keys is what fetching needs from the key store. *projections.Store
// implements it.
type Keys interface {
	// ByHash returns the stored key with this SKS hash, or an error
	// wrapping projections.ErrNotFound.
	ByHash(h pgpkey.KeyHash) (*projections.Record, error)
	// Novel reports whether storing k would change anything.
	Novel(k *pgpkey.Key) (bool, error)
	// WaitApplied blocks until the projections have applied idx.
	WaitApplied(ctx context.Context, idx eventlog.Index) error
}

// Appender appends events durably to the log. *eventlog.Log implements it.
type Appender interface {
	Append(ctx context.Context, events ...*eventlog.Event) (eventlog.Index, error)
}

// FetchStats says what fetching one session's missing hashes did.
type FetchStats struct {
	// Skipped hashes were not asked for: already stored, remembered as
	// fruitless for this peer (Config.NegativeTTL), or being fetched for
	// another session.
	Skipped int
	// Asked is the number of hashes asked for.
	Asked int
	// Requests and FailedRequests count hashquery requests.
	Requests, FailedRequests int
	// Received counts the keys in the responses.
	Received int
	// Bad counts keys dropped: unparseable, more than one key in a
	// string, a hash we did not ask for, or a duplicate.
	Bad int
	// Added counts keys appended to the log; Unchanged keys we already
	// held in full.
	Added, Unchanged int
	// NotReturned counts hashes asked for that no returned key has:
	// unknown to the peer, or normalised differently (spec recon.md §11.5).
	NotReturned int
	// GaveUp counts hashes not fetched because requests kept failing.
	GaveUp int
	// NotInTree counts appended keys whose hash was not in our tree once
	// applied (merged into a stored key, or normalised differently).
	NotInTree int
	// LastIndex is the log index of the last event appended, 0 if none.
	LastIndex eventlog.Index
	Took      time.Duration
}

// fetcher fetches missing keys with POST /pks/hashquery (spec recon.md
// §11) and appends the new ones to the log.
type fetcher struct {
	cfg    *Config
	keys   Keys
	app    Appender
	client *http.Client
	neg    *negCache

	mu       sync.Mutex
	inflight map[pgpkey.KeyHash]struct{}
}

func newFetcher(cfg *Config, keys Keys, app Appender) *fetcher {
	dial := sourceDialer(cfg.DialTimeout, cfg.DialAddrs)
	tr := &http.Transport{
		DialContext:            dial,
		DisableKeepAlives:      true, // SKS answers HTTP/1.0 and closes anyway
		DisableCompression:     true, // SKS sends no Accept-Encoding either (§11.4)
		ForceAttemptHTTP2:      false,
		Proxy:                  nil, // peers are reached directly, as SKS does
		ResponseHeaderTimeout:  cfg.FetchTimeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &fetcher{
		cfg:      cfg,
		keys:     keys,
		app:      app,
		client:   &http.Client{Transport: tr},
		neg:      newNegCache(cfg.NegativeTTL, cfg.NegativeMax),
		inflight: make(map[pgpkey.KeyHash]struct{}),
	}
}

// claim filters hashes down to those worth asking peer for and marks them
// in flight; release undoes the mark.
func (f *fetcher) claim(peer string, hashes []pgpkey.KeyHash, st *FetchStats) []pgpkey.KeyHash {
	now := time.Now()
	var want []pgpkey.KeyHash
	for _, h := range hashes {
		if f.neg.has(peer, h, now) {
			st.Skipped++
			continue
		}
		if _, err := f.keys.ByHash(h); err == nil {
			// Stored since the session's snapshot was taken.
			st.Skipped++
			continue
		}
		want = append(want, h)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := want[:0]
	for _, h := range want {
		if _, busy := f.inflight[h]; busy {
			st.Skipped++
			continue
		}
		f.inflight[h] = struct{}{}
		out = append(out, h)
	}
	return out
}

func (f *fetcher) release(hashes []pgpkey.KeyHash) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range hashes {
		delete(f.inflight, h)
	}
}

// fetchParallel is how many hashquery requests one fetch keeps in flight
// while requests succeed: the peer looks keys up, we parse the previous
// answers and append them to the log, all at once. After a failure only
// one request is out until one succeeds again, so a struggling peer is
// probed gently and the halving below stays predictable.
const fetchParallel = 4

// fetched is the answer to one hashquery request, parsed by the goroutine
// that sent it.
type fetched struct {
	batch []pgpkey.KeyHash
	raw   [][]byte
	keys  []*pgpkey.Key // keys[i] parsed from raw[i]; nil if it did not parse
	errs  []error       // why keys[i] is nil
	err   error         // the request failed
	seq   int           // the order it was sent in
}

// fetch asks the HKP server at addr for hashes (sorted, as SKS sends them)
// in batches of adaptive size, up to fetchParallel requests at once, and
// appends each new key as an event from peer. Answers that arrived
// together are appended together. One bad key never costs the others; a
// failed request is retried with smaller batches, and after
// MaxFetchFailures failures in a row the rest is given up for this round.
// It returns ctx's error or the first append error; everything else is
// counted in FetchStats and logged.
func (f *fetcher) fetch(ctx context.Context, log zerolog.Logger, peer string, addr netip.AddrPort, hashes []pgpkey.KeyHash) (st FetchStats, err error) {
	start := time.Now()
	defer func() { st.Took = time.Since(start) }()
	todo := f.claim(peer, hashes, &st)
	defer f.release(todo)
	if len(todo) == 0 {
		return st, nil
	}
	st.Asked = len(todo)
	url := "http://" + addr.String() + "/pks/hashquery"

	// Requests run in their own goroutines and report on done; every one
	// started is waited for before fetch returns.
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan *fetched, fetchParallel)
	out := 0
	defer func() {
		cancel()
		for ; out > 0; out-- {
			<-done
		}
	}()
	// seq numbers the requests; only the success of a request sent after
	// the last failure counts for growing the batch size again.
	seq, failSeq := 0, 0
	send := func(batch []pgpkey.KeyHash) {
		st.Requests++
		out++
		seq++
		go func(seq int) {
			r := f.requestParsed(rctx, url, batch)
			r.seq = seq
			done <- r
		}(seq)
	}

	var appended []pgpkey.KeyHash
	var retry [][]pgpkey.KeyHash // failed batches, tried again first
	var ready []*fetched         // answers received, not handled yet
	rest := todo
	size, failures := f.cfg.FetchBatch, 0
	for {
		// Fill the window: several requests while they succeed, one
		// while the peer is failing.
		for out < fetchParallel && (failures == 0 || out == 0) && len(ready) == 0 && (len(retry) > 0 || len(rest) > 0) {
			if err := ctx.Err(); err != nil {
				return st, err
			}
			if n := len(retry); n > 0 {
				b := retry[n-1]
				retry = retry[:n-1]
				if len(b) > size {
					// Halve what failed; the other half waits its turn.
					retry = append(retry, b[size:])
					b = b[:size]
				}
				send(b)
				continue
			}
			b := rest[:min(size, len(rest))]
			rest = rest[len(b):]
			send(b)
		}
		if len(ready) == 0 {
			if out == 0 {
				break
			}
			ready = append(ready, <-done)
			out--
		}
		r := ready[0]
		ready = ready[1:]
		if r.err != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			st.FailedRequests++
			failures++
			failSeq = seq
			log.Warn().Err(r.err).Str("url", url).Int("hashes", len(r.batch)).Msg("hashquery failed")
			if failures >= f.cfg.MaxFetchFailures {
				// Give up on everything not answered yet, the requests
				// still out included (cancelled: no waiting for a peer
				// that fails); keep the answers that arrived.
				st.GaveUp += len(r.batch) + len(rest)
				for _, b := range retry {
					st.GaveUp += len(b)
				}
				retry, rest = nil, nil
				cancel()
				for ; out > 0; out-- {
					ready = append(ready, <-done)
				}
				var ok []*fetched
				for _, o := range ready {
					if o.err != nil {
						st.GaveUp += len(o.batch)
					} else {
						ok = append(ok, o)
					}
				}
				ready = nil
				if err := f.storeAll(ctx, log, peer, ok, &st, &appended); err != nil {
					return st, err
				}
				break
			}
			if len(r.batch) == 1 {
				// This hash fails on its own. If the peer answered and the
				// answer was unusable (a key over the limits, say), it will
				// fail again: remember it. A transport failure is not the
				// hash's fault.
				var be *badResponseError
				if errors.As(r.err, &be) {
					f.neg.add(peer, r.batch[0], time.Now())
				}
				st.GaveUp++
				continue
			}
			size = max(1, len(r.batch)/2)
			retry = append(retry, r.batch)
			continue
		}
		if r.seq > failSeq {
			failures = 0
			size = min(f.cfg.FetchBatch, 2*size)
		}
		// Append this answer with the others that are already in, in one
		// log append; failed ones wait for the next round.
		for more := true; more && out > 0; {
			select {
			case o := <-done:
				out--
				ready = append(ready, o)
			default:
				more = false
			}
		}
		batch := []*fetched{r}
		failed := ready[:0]
		for _, o := range ready {
			if o.err == nil {
				batch = append(batch, o)
			} else {
				failed = append(failed, o)
			}
		}
		ready = failed
		if err := f.storeAll(ctx, log, peer, batch, &st, &appended); err != nil {
			return st, err
		}
	}
	if len(appended) > 0 {
		f.checkApplied(ctx, log, peer, appended, &st)
	}
	return st, nil
}

// requestParsed sends one hashquery and parses the keys of the answer.
func (f *fetcher) requestParsed(ctx context.Context, url string, batch []pgpkey.KeyHash) *fetched {
	r := &fetched{batch: batch}
	r.raw, r.err = f.request(ctx, url, batch)
	if r.err != nil {
		return r
	}
	r.keys = make([]*pgpkey.Key, len(r.raw))
	r.errs = make([]error, len(r.raw))
	for i, b := range r.raw {
		r.keys[i], r.errs[i] = parseOneKey(b)
	}
	return r
}

// storeAll appends the new keys of several answers in one append and adds
// their requested hashes to appended.
func (f *fetcher) storeAll(ctx context.Context, log zerolog.Logger, peer string, rs []*fetched, st *FetchStats, appended *[]pgpkey.KeyHash) error {
	added, err := f.store(ctx, log, peer, rs, st)
	*appended = append(*appended, added...)
	return err
}

// request sends one hashquery and decodes the answer within Limits.
func (f *fetcher) request(ctx context.Context, url string, batch []pgpkey.KeyHash) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.FetchTimeout)
	defer cancel()
	hs := make([][wire.KeyHashSize]byte, len(batch))
	for i, h := range batch {
		hs[i] = h
	}
	body := wire.EncodeHashQuery(hs)
	// A bytes.Reader body gives a Content-Length and no chunking, which
	// SKS's HTTP server needs (§11.3).
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Close = true
	req.Header.Set("User-Agent", "grapevine")
	req.Header.Set("Content-Type", "sks/hashquery")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("hashquery: HTTP status %s", resp.Status)
	}
	lim := f.cfg.Limits
	lim.MaxHashQueryCount = len(batch) // a peer returns at most what was asked
	norm := wire.DefaultLimits()
	if lim.MaxHashQueryBytes <= 0 {
		lim.MaxHashQueryBytes = norm.MaxHashQueryBytes
	}
	// Length fields are checked before anything is allocated; the
	// LimitReader also stops a peer that streams forever.
	r := io.LimitReader(resp.Body, int64(lim.MaxHashQueryBytes)+4+4*int64(len(batch))+2)
	keys, err := wire.DecodeKeyStrings(r, lim)
	if err != nil {
		if errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrTooLarge) {
			return nil, &badResponseError{err}
		}
		return nil, fmt.Errorf("hashquery response: %w", err)
	}
	return keys, nil
}

// badResponseError is a hashquery answer that arrived but breaks the format
// or the limits.
type badResponseError struct{ err error }

func (e *badResponseError) Error() string { return "hashquery response: " + e.err.Error() }
func (e *badResponseError) Unwrap() error { return e.err }

// store checks the parsed keys of answers and appends the new ones, all
// in one append. It returns the requested hashes of the appended keys.
func (f *fetcher) store(ctx context.Context, log zerolog.Logger, peer string, rs []*fetched, st *FetchStats) ([]pgpkey.KeyHash, error) {
	var events []*eventlog.Event
	var added []pgpkey.KeyHash
	now := time.Now()
	kh, own := f.keys.(KeyHasher) // a dataset with its own hashes (dataset.go)
	for _, r := range rs {
		asked := make(map[pgpkey.KeyHash]bool, len(r.batch)) // true once returned
		for _, h := range r.batch {
			asked[h] = false
		}
		st.Received += len(r.raw)
		for i, b := range r.raw {
			k, err := r.keys[i], r.errs[i]
			if err != nil && !own {
				st.Bad++
				log.Warn().Err(err).Int("key", i).Int("bytes", len(b)).Msg("dropped unparseable key from hashquery")
				continue
			}
			var h pgpkey.KeyHash
			var novel bool
			if own {
				h, novel, err = kh.KeyHash(b, k)
			} else {
				h = k.Hash()
			}
			if err != nil {
				st.Bad++
				log.Warn().Err(err).Int("key", i).Msg("dropped key from hashquery that the dataset does not keep")
				continue
			}
			returned, ok := asked[h]
			if !ok {
				st.Bad++
				log.Warn().Str("key_hash", h.String()).Msg("dropped key from hashquery that was not asked for")
				continue
			}
			if returned {
				st.Bad++
				continue
			}
			asked[h] = true
			if !own {
				novel, err = f.keys.Novel(k)
			}
			if err != nil {
				return nil, fmt.Errorf("novelty of %s: %w", h, err)
			}
			if !novel {
				st.Unchanged++
				f.neg.add(peer, h, now)
				continue
			}
			events = append(events, &eventlog.Event{
				Kind:   eventlog.KindKeySubmitted,
				Origin: eventlog.OriginRecon,
				Peer:   peer,
				Key:    b,
			})
			added = append(added, h)
		}
		for h, returned := range asked {
			if !returned {
				st.NotReturned++
				f.neg.add(peer, h, now)
			}
		}
	}
	if len(events) == 0 {
		return nil, nil
	}
	idx, err := f.app.Append(ctx, events...)
	if errors.Is(err, eventlog.ErrTooLarge) || errors.Is(err, eventlog.ErrInvalid) {
		// Append stores all or nothing: find the events the log refuses
		// and keep the others.
		var kept []pgpkey.KeyHash
		for i, e := range events {
			j, err := f.app.Append(ctx, e)
			switch {
			case errors.Is(err, eventlog.ErrTooLarge) || errors.Is(err, eventlog.ErrInvalid):
				st.Bad++
				f.neg.add(peer, added[i], now)
				log.Warn().Err(err).Str("key_hash", added[i].String()).Int("bytes", len(e.Key)).Msg("dropped fetched key the log refuses")
			case err != nil:
				return kept, fmt.Errorf("append fetched key %s: %w", added[i], err)
			default:
				kept = append(kept, added[i])
				st.Added++
				st.LastIndex = j
			}
		}
		return kept, nil
	}
	if err != nil {
		return nil, fmt.Errorf("append %d fetched keys: %w", len(events), err)
	}
	st.Added += len(events)
	st.LastIndex = idx
	return added, nil
}

// parseOneKey parses a hashquery key string, which must hold exactly one
// key.
//
// The Reader reads into a slab of just the string's size (one byte more,
// so that the read finding EOF needs no new slab): the key it hands out is
// a slice of its slab, and a whole answer's keys are held until they are
// appended — with NewReader's 64 KiB slabs a 1.4 KB key pinned 64 KiB.
func parseOneKey(b []byte) (*pgpkey.Key, error) {
	r := pgpkey.NewReaderSize(bytes.NewReader(b), len(b)+1)
	raw, err := r.Next()
	if err != nil {
		return nil, err
	}
	if _, err := r.Next(); err != io.EOF {
		return nil, errors.New("more than one key in one key string")
	}
	return pgpkey.ParseKey(raw)
}

// checkApplied waits for the appended keys to be applied, then remembers
// every requested hash that is not in the store: its key merged into one
// we hold, or canonicalises to another hash. Without this the peer's hash
// would be missing again in every round (spec recon.md §11.5 hazard 2).
func (f *fetcher) checkApplied(ctx context.Context, log zerolog.Logger, peer string, hashes []pgpkey.KeyHash, st *FetchStats) {
	wctx, cancel := context.WithTimeout(ctx, f.cfg.ApplyWait)
	defer cancel()
	if err := f.keys.WaitApplied(wctx, st.LastIndex); err != nil {
		log.Warn().Err(err).Uint64("index", uint64(st.LastIndex)).Msg("fetched keys not applied in time")
		return
	}
	now := time.Now()
	for _, h := range hashes {
		if _, err := f.keys.ByHash(h); errors.Is(err, projections.ErrNotFound) {
			st.NotInTree++
			f.neg.add(peer, h, now)
		}
	}
}

// negCache remembers (peer, hash) pairs that yielded nothing, for a TTL,
// at most max of them; the oldest go first. It is safe for concurrent use.
type negCache struct {
	mu    sync.Mutex
	ttl   time.Duration
	max   int
	m     map[negKey]time.Time // expiry
	order fifo[negEntry]
}

type negKey struct {
	peer string
	h    pgpkey.KeyHash
}

type negEntry struct {
	k      negKey
	expiry time.Time
}

func newNegCache(ttl time.Duration, max int) *negCache {
	return &negCache{ttl: ttl, max: max, m: make(map[negKey]time.Time)}
}

func (c *negCache) has(peer string, h pgpkey.KeyHash, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.m[negKey{peer, h}]
	return ok && now.Before(exp)
}

func (c *negCache) add(peer string, h pgpkey.KeyHash, now time.Time) {
	if c.ttl <= 0 || c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := negKey{peer, h}
	exp := now.Add(c.ttl)
	if old, ok := c.m[k]; ok && old.Equal(exp) {
		return
	}
	c.m[k] = exp
	c.order.push(negEntry{k, exp})
	if c.order.len() > 2*c.max+16 {
		// Renewals left stale entries behind: rebuild the queue from the
		// map, oldest first.
		c.order.clear()
		for k, exp := range c.m {
			c.order.push(negEntry{k, exp})
		}
		slices.SortFunc(c.order.items, func(a, b negEntry) int { return a.expiry.Compare(b.expiry) })
	}
	// Drop expired entries and, past max, the oldest. An entry whose
	// expiry no longer matches the map was renewed later and is skipped.
	for c.order.len() > 0 {
		e := c.order.front()
		cur, ok := c.m[e.k]
		stale := !ok || !cur.Equal(e.expiry)
		if !stale && !now.After(e.expiry) && len(c.m) <= c.max {
			break
		}
		c.order.pop()
		if !stale {
			delete(c.m, e.k)
		}
	}
}

func (c *negCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// httpAddr is where a peer's keys are fetched: its IP on the recon
// connection and the "http port" from its Config (spec recon.md §11.1).
func httpAddr(remote net.Addr, port int) (netip.AddrPort, bool) {
	if port < 1 || port > 65535 {
		return netip.AddrPort{}, false
	}
	var ip netip.Addr
	switch a := remote.(type) {
	case *net.TCPAddr:
		ip = a.AddrPort().Addr()
	default:
		ap, err := netip.ParseAddrPort(remote.String())
		if err != nil {
			return netip.AddrPort{}, false
		}
		ip = ap.Addr()
	}
	if !ip.IsValid() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), true
}
