package projections

import (
	"context"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// TestFollowGathersBurst: uploads arriving within FollowGather of the
// first are applied in one batch, not one batch each; nobody waits for
// them (a lookup would), so nothing hurries the follower.
func TestFollowGathersBurst(t *testing.T) {
	const n = 6
	r, log, s := newUploadFixture(t, n, 11, func(c *Config) { c.FollowGather, c.FollowGatherMax = time.Second, 2*time.Second })
	ctx := startFollow(t, s, log)
	u := &uploadStream{t: t, r: r, log: log}
	// An event appended while the follower applies is applied at once,
	// ungathered: let it start and find the log empty first.
	time.Sleep(20 * time.Millisecond)
	u.next(ctx)
	time.Sleep(50 * time.Millisecond) // time enough to apply one event
	if got := s.Applied(); got != 0 {
		t.Fatalf("applied %d within 50 ms of the first upload, want it gathering", got)
	}
	for u.next(ctx) {
	}
	waitAppliedQuietly(t, s, n)
	if added := lastBatchAdded(s); added != n {
		t.Errorf("the last batch added %d keys, want all %d in one batch", added, n)
	}
}

// TestWaitAppliedHurriesFollow: a reader waiting for an upload ends the
// follower's gathering: it is not held for FollowGather.
func TestWaitAppliedHurriesFollow(t *testing.T) {
	r, log, s := newUploadFixture(t, 1, 12, func(c *Config) { c.FollowGather, c.FollowGatherMax = time.Second, 2*time.Second })
	ctx := startFollow(t, s, log)
	u := &uploadStream{t: t, r: r, log: log}
	u.next(ctx)
	time.Sleep(20 * time.Millisecond) // let the follower start gathering
	wctx, wcancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer wcancel()
	if err := s.WaitApplied(wctx, 1); err != nil {
		t.Fatalf("waiting for an upload while the follower gathers for 1s: %v", err)
	}
}

// TestFollowGathersWhileLogGrows: events keep gathering while each comes
// within FollowGather of the one before; the burst is applied in one batch
// once the log stands still.
func TestFollowGathersWhileLogGrows(t *testing.T) {
	const n = 6
	r, log, s := newUploadFixture(t, n, 13, func(c *Config) { c.FollowGather, c.FollowGatherMax = time.Second, 10*time.Second })
	ctx := startFollow(t, s, log)
	u := &uploadStream{t: t, r: r, log: log}
	time.Sleep(20 * time.Millisecond) // let the follower find the log empty
	for u.next(ctx) {
		time.Sleep(100 * time.Millisecond) // a tenth of FollowGather
	}
	if got := s.Applied(); got != 0 {
		t.Fatalf("applied %d while the log kept growing, want it gathering", got)
	}
	waitAppliedQuietly(t, s, n)
	if added := lastBatchAdded(s); added != n {
		t.Errorf("the last batch added %d keys, want all %d in one batch", added, n)
	}
}

// TestFollowGatherEnough: gathering ends once gatherEnough events wait,
// without waiting for the log to stand still.
func TestFollowGatherEnough(t *testing.T) {
	const n = 4
	r, log, s := newUploadFixture(t, n, 14, func(c *Config) { c.FollowGather, c.FollowGatherMax = 10*time.Second, 10*time.Second })
	s.gatherEnough = n
	ctx := startFollow(t, s, log)
	u := &uploadStream{t: t, r: r, log: log}
	time.Sleep(20 * time.Millisecond)
	for u.next(ctx) {
		time.Sleep(20 * time.Millisecond) // the follower gathers from the first
	}
	start := time.Now()
	waitAppliedQuietly(t, s, n)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%d events applied after %v: gathering went on past gatherEnough", n, d)
	}
	if added := lastBatchAdded(s); added != n {
		t.Errorf("the last batch added %d keys, want %d", added, n)
	}
}

// TestFollowGatherMax: a log that never stands still is still applied,
// every FollowGatherMax.
func TestFollowGatherMax(t *testing.T) {
	const n = 20
	r, log, s := newUploadFixture(t, n, 15, func(c *Config) { c.FollowGather, c.FollowGatherMax = 200*time.Millisecond, 200*time.Millisecond })
	ctx := startFollow(t, s, log)
	u := &uploadStream{t: t, r: r, log: log}
	time.Sleep(20 * time.Millisecond)
	for u.next(ctx) {
		time.Sleep(50 * time.Millisecond) // a second of appends, never still for FollowGather
	}
	if got := s.Applied(); got == 0 {
		t.Errorf("nothing applied during a second of appends with FollowGatherMax 200ms")
	}
	waitAppliedQuietly(t, s, n)
}

// startFollow runs s.Follow on log until the test ends, and returns the
// context it runs under.
func startFollow(t *testing.T, s *Store, log *eventlog.Log) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Follow(ctx, log) }()
	t.Cleanup(func() { cancel(); <-done })
	return ctx
}

// waitAppliedQuietly waits up to a minute for the projections to apply
// idx, without WaitApplied, which would hurry the follower.
func waitAppliedQuietly(t *testing.T, s *Store, idx eventlog.Index) {
	t.Helper()
	for end := time.Now().Add(time.Minute); s.Applied() < idx && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := s.Applied(); got < idx {
		t.Fatalf("applied %d of %d", got, idx)
	}
}

// lastBatchAdded is how many keys the last applied batch added.
func lastBatchAdded(s *Store) int {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return int(s.lastBatchStats.Added)
}

func TestFollowGatherValidate(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, 11 * time.Second} {
		c := DefaultConfig()
		c.FollowGather = d
		if err := c.Validate(); err == nil {
			t.Errorf("FollowGather %v: Validate accepted it", d)
		}
	}
	for _, d := range []time.Duration{time.Millisecond, 11 * time.Second} {
		c := DefaultConfig()
		c.FollowGatherMax = d
		if err := c.Validate(); err == nil {
			t.Errorf("FollowGatherMax %v with FollowGather %v: Validate accepted it", d, c.FollowGather)
		}
	}
	c := DefaultConfig()
	c.FollowGather, c.FollowGatherMax = 0, 0
	if err := c.Validate(); err != nil {
		t.Errorf("FollowGather 0: %v", err)
	}
}
