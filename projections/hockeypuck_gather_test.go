package projections

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

// newUploadFixture returns n generated keys (seed) to upload, an empty
// unsynced log and a store on it, configured by mutate; all closed by
// t.Cleanup.
func newUploadFixture(t *testing.T, n int, seed int64, mutate func(*Config)) (*pgpkey.Reader, *eventlog.Log, *Store) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: n, Seed: seed}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	lcfg := eventlog.DefaultConfig()
	lcfg.NoSync = true
	lcfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	log, err := eventlog.Open(filepath.Join(dir, "log"), lcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	scfg := DefaultConfig()
	scfg.Logger = lcfg.Logger
	if mutate != nil {
		mutate(&scfg)
	}
	s, err := Open(filepath.Join(dir, "db"), scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return pgpkey.NewReader(&buf), log, s
}

// uploadStream appends the fixture's keys one at a time, as uploads.
type uploadStream struct {
	t    *testing.T
	r    *pgpkey.Reader
	log  *eventlog.Log
	mu   sync.Mutex
	last eventlog.Index
}

// next appends the next key; false when all are in.
func (u *uploadStream) next(ctx context.Context) bool {
	raw, err := u.r.Next()
	if err != nil {
		return false
	}
	idx, err := u.log.Append(ctx, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: time.Now(), Key: raw.Raw})
	if err != nil {
		u.t.Error(err)
		return false
	}
	u.mu.Lock()
	u.last = idx
	u.mu.Unlock()
	return true
}

// appliedWithin reports whether the Hockeypuck dataset applies idx within
// d. Unlike WaitHockeypuckApplied it does not count as a waiter, which
// would end the deferral under test.
func appliedWithin(s *Store, idx eventlog.Index, d time.Duration) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if s.HockeypuckApplied() >= idx {
			return true
		}
	}
	return false
}

// TestHockeypuckWaiterEndsDeferral: uploads that never stop keep the
// dataset deferring (maxDefer an hour here), until someone waits for it
// (recon after fetching from a Hockeypuck peer): then it applies.
func TestHockeypuckWaiterEndsDeferral(t *testing.T) {
	const n = 5
	r, log, s := newUploadFixture(t, n, 3, nil)
	var keys [][]byte
	for {
		raw, err := r.Next()
		if err != nil {
			break
		}
		keys = append(keys, raw.Raw)
	}
	ctx, cancel := context.WithCancel(context.Background())
	next := 0
	upload := func(ctx context.Context) {
		// The same keys again and again: a stream that never ends.
		_, err := log.Append(ctx, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: time.Now(), Key: keys[next%len(keys)]})
		if err != nil && ctx.Err() == nil {
			t.Error(err)
		}
		next++
	}
	s.hp.gather = time.Millisecond
	s.hp.maxDefer = time.Hour
	s.hp.poll = func(ctx context.Context, d time.Duration) bool {
		upload(ctx) // the follower's goroutine only
		return ctx.Err() == nil
	}
	s.hp.rest = func(ctx context.Context, d time.Duration) bool { return ctx.Err() == nil }
	upload(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Follow(ctx, log) }()
	defer func() { cancel(); <-done }()
	for s.HockeypuckApplied() == 0 && log.LastIndex() < 20 {
		time.Sleep(time.Millisecond) // let the stream start
	}
	if got := s.HockeypuckApplied(); got != 0 {
		t.Fatalf("applied %d while uploads streamed and nobody waited, want 0", got)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := s.WaitHockeypuckApplied(wctx, 20); err != nil {
		t.Fatalf("a waiter did not end the deferral: %v", err)
	}
}

// TestHockeypuckDefersWhileLogGrows: while uploads keep arriving (one
// during each of the follower's polls), the Hockeypuck dataset applies
// nothing; once the log stands still it applies all of them in one batch,
// not one batch per upload.
func TestHockeypuckDefersWhileLogGrows(t *testing.T) {
	const n = 6
	r, log, s := newUploadFixture(t, n, 7, func(c *Config) { c.BatchEvents = 2 * n })
	ctx, cancel := context.WithCancel(context.Background())
	u := &uploadStream{t: t, r: r, log: log}
	s.hp.gather = time.Millisecond
	s.hp.maxDefer = time.Hour
	polls := 0
	s.hp.poll = func(ctx context.Context, d time.Duration) bool {
		polls++ // the follower's goroutine only
		u.next(ctx)
		return ctx.Err() == nil
	}
	u.next(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Follow(ctx, log) }()
	defer func() { cancel(); <-done }()
	if !appliedWithin(s, n, time.Minute) {
		t.Fatalf("Hockeypuck dataset did not apply the %d uploads once they stopped", n)
	}
	if got := s.hp.batches.Load(); got != 1 {
		t.Errorf("Hockeypuck dataset applied %d uploads in %d batches, want 1", n, got)
	}
	if polls != n {
		t.Errorf("%d polls, want %d (one per upload, and one that found the log standing still)", polls, n)
	}
}

// TestHockeypuckQuietInChunks: once the log stands still the dataset
// applies it a chunk at a time, asking between chunks whether uploads
// resumed: it polls again only when the log grew since it last found it
// still.
func TestHockeypuckQuietInChunks(t *testing.T) {
	const n = 10
	r, log, s := newUploadFixture(t, n+1, 5, nil)
	ctx, cancel := context.WithCancel(context.Background())
	u := &uploadStream{t: t, r: r, log: log}
	for range n {
		u.next(ctx)
	}
	s.hp.gather = time.Millisecond
	s.hp.maxDefer = time.Hour
	s.hp.chunk = 4
	polls := 0
	s.hp.poll = func(ctx context.Context, d time.Duration) bool {
		polls++ // the follower's goroutine only
		return ctx.Err() == nil
	}
	rests := 0
	s.hp.rest = func(ctx context.Context, d time.Duration) bool {
		rests++ // the follower's goroutine only
		return ctx.Err() == nil
	}
	var applied []eventlog.Index
	s.hp.committed = func() {
		applied = append(applied, s.HockeypuckApplied())
		if len(applied) == 1 {
			u.next(ctx) // an upload between two chunks
		}
	}
	done := make(chan struct{})
	go func() { defer close(done); s.Follow(ctx, log) }()
	defer func() { cancel(); <-done }()
	if !appliedWithin(s, n+1, time.Minute) {
		t.Fatalf("Hockeypuck dataset did not apply the %d uploads", n+1)
	}
	if got, want := fmt.Sprint(applied), "[4 8 11]"; got != want {
		t.Errorf("batches ended at %s, want %s", got, want)
	}
	if polls != 2 {
		t.Errorf("%d polls, want 2 (at the start, and after the upload between chunks)", polls)
	}
	if rests != 1 {
		t.Errorf("%d rests, want 1 (after the chunk during which the upload came; the unapplied rest of a still log is no reason to rest)", rests)
	}
}

// TestHockeypuckDefersAtMost: uploads that never stop do not hold the
// Hockeypuck dataset back for more than maxDefer.
func TestHockeypuckDefersAtMost(t *testing.T) {
	const n = 40
	r, log, s := newUploadFixture(t, n, 9, nil)
	ctx, cancel := context.WithCancel(context.Background())
	u := &uploadStream{t: t, r: r, log: log}
	var mu sync.Mutex
	clock := time.Unix(1e9, 0)
	s.hp.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	s.hp.gather = time.Second
	s.hp.maxDefer = 5 * time.Second
	s.hp.poll = func(ctx context.Context, d time.Duration) bool {
		mu.Lock()
		clock = clock.Add(d)
		mu.Unlock()
		u.next(ctx)
		return ctx.Err() == nil
	}
	s.hp.rest = func(ctx context.Context, d time.Duration) bool {
		u.next(ctx)
		return ctx.Err() == nil
	}
	firstBatch := make(chan eventlog.Index, 1)
	s.hp.committed = func() {
		select {
		case firstBatch <- s.HockeypuckApplied():
		default:
		}
		u.next(ctx) // uploads arrive during every catch-up too
	}
	u.next(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Follow(ctx, log) }()
	defer func() { cancel(); <-done }()
	if !appliedWithin(s, n, time.Minute) {
		t.Fatalf("Hockeypuck dataset did not apply the %d uploads", n)
	}
	// Behind from the first upload; five polls of a second each, each
	// bringing one more upload, end the deferral.
	if got := <-firstBatch; got != 6 {
		t.Errorf("first batch applied up to %d, want 6 (the uploads of the first %v)", got, s.hp.maxDefer)
	}
}

// TestHockeypuckBlockSurvivesReopen: the Hockeypuck dataset keeps its
// blocked fingerprints and suppressed hashes in memory; reopened, it must
// still refuse a blocked key and keep a deleted key's hash suppressed.
func TestHockeypuckBlockSurvivesReopen(t *testing.T) {
	var buf bytes.Buffer
	if _, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: 2, Seed: 11}); err != nil {
		t.Fatal(err)
	}
	r := pgpkey.NewReader(&buf)
	var raws [][]byte
	var fprs [][]byte
	for range 2 {
		raw, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		raws, fprs = append(raws, raw.Raw), append(fprs, k.Fingerprint().Bytes())
	}
	dir := t.TempDir()
	lcfg := eventlog.DefaultConfig()
	lcfg.NoSync = true
	lcfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	scfg := DefaultConfig()
	scfg.Logger = lcfg.Logger
	open := func() (*eventlog.Log, *Store) {
		log, err := eventlog.Open(filepath.Join(dir, "log"), lcfg)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(filepath.Join(dir, "db"), scfg)
		if err != nil {
			t.Fatal(err)
		}
		return log, s
	}
	ctx := context.Background()
	appendAndApply := func(log *eventlog.Log, s *Store, evs ...*eventlog.Event) {
		t.Helper()
		if _, err := log.Append(ctx, evs...); err != nil {
			t.Fatal(err)
		}
		if err := s.CatchUpHockeypuck(ctx, log, log.LastIndex()); err != nil {
			t.Fatal(err)
		}
	}
	key := func(b []byte) *eventlog.Event {
		return &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: time.Now(), Key: b}
	}
	admin := func(kind eventlog.Kind, fpr []byte) *eventlog.Event {
		return &eventlog.Event{Kind: kind, Origin: eventlog.OriginAdmin, Target: fpr, Reason: "test", Time: time.Now()}
	}

	log, s := open()
	appendAndApply(log, s, key(raws[1]))
	h1, err := HockeypuckHash(raws[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.HockeypuckByHash(h1); err != nil {
		t.Fatalf("key 1 before deletion: %v", err)
	}
	elems := s.HockeypuckPtreeElements()
	// Key 0 blocked before it ever arrives; key 1 deleted (blocked, its
	// hash suppressed in the tree).
	appendAndApply(log, s, admin(eventlog.KindKeyBlocked, fprs[0]), admin(eventlog.KindKeyDeleted, fprs[1]))
	s.Close()
	log.Close()

	log, s = open()
	defer log.Close()
	defer s.Close()
	appendAndApply(log, s, key(raws[0]))
	h0, err := HockeypuckHash(raws[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.HockeypuckByHash(h0); !errors.Is(err, ErrNotFound) {
		t.Errorf("blocked key stored after reopen: %v", err)
	}
	// Unblocked and back with the same content: the suppressed hash is
	// reused, not inserted a second time.
	appendAndApply(log, s, admin(eventlog.KindKeyUnblocked, fprs[1]), key(raws[1]))
	if _, err := s.HockeypuckByHash(h1); err != nil {
		t.Errorf("key 1 back after unblocking: %v", err)
	}
	if got := s.HockeypuckPtreeElements(); got != elems {
		t.Errorf("tree has %d elements, want %d (the suppressed hash reused)", got, elems)
	}
}

// TestHockeypuckRestsWhileLogGrows: while uploads keep arriving, the
// Hockeypuck dataset rests three times as long as it worked after each
// catch-up (so its signature checks leave the cores to the uploads), and
// catches up with all of them once they stop.
func TestHockeypuckRestsWhileLogGrows(t *testing.T) {
	const n = 40
	r, log, s := newUploadFixture(t, n, 9, nil)
	s.hp.gather = 0
	var mu sync.Mutex
	var rests []time.Duration
	s.hp.rest = func(ctx context.Context, d time.Duration) bool {
		mu.Lock()
		rests = append(rests, d)
		mu.Unlock()
		return sleepCtx(ctx, time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// An upload arrives during every catch-up: the follower's commit
	// appends the next one, until all n are in.
	var last eventlog.Index
	appendNext := func() {
		raw, err := r.Next()
		if err != nil {
			return // all n appended
		}
		idx, err := log.Append(ctx, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: time.Now(), Key: raw.Raw})
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		last = idx
		mu.Unlock()
	}
	s.hp.committed = appendNext
	appendNext()
	done := make(chan struct{})
	go func() { defer close(done); s.Follow(ctx, log) }()
	defer func() { cancel(); <-done }()
	for {
		mu.Lock()
		l := last
		mu.Unlock()
		if l == n {
			break
		}
		if err := s.WaitHockeypuckApplied(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	if err := s.WaitHockeypuckApplied(wctx, n); err != nil {
		t.Fatalf("the Hockeypuck dataset did not catch up once the uploads stopped: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(rests) == 0 {
		t.Fatalf("the Hockeypuck dataset never rested while %d uploads arrived in %d batches", n, s.hp.batches.Load())
	}
	for _, d := range rests {
		if d <= 0 || d > time.Second {
			t.Errorf("rest of %v: want (0, 1s]", d)
		}
	}
}

func TestRestWhileBusy(t *testing.T) {
	for _, c := range []struct {
		worked    time.Duration
		grew, lag eventlog.Index
		want      time.Duration
	}{
		{10 * time.Millisecond, 0, 0, 0},                     // the log stood still: catch up at full speed
		{10 * time.Millisecond, 5, 5, 30 * time.Millisecond}, // uploads arrived: a quarter of the time
		{time.Minute, 5, 5, time.Second},                     // never more than a second
		{10 * time.Millisecond, 5, hpMaxBusyLag, 0},          // too far behind: no rest
		{10 * time.Millisecond, 5, hpMaxBusyLag - 1, 30 * time.Millisecond},
	} {
		if got := restWhileBusy(c.worked, c.grew, c.lag); got != c.want {
			t.Errorf("restWhileBusy(%v, %d, %d) = %v, want %v", c.worked, c.grew, c.lag, got, c.want)
		}
	}
}
