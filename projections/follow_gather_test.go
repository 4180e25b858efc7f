package projections

import (
	"context"
	"testing"
	"time"
)

// TestFollowGathersBurst: uploads arriving within FollowGather of the
// first are applied in one batch, not one batch each; nobody waits for
// them (a lookup would), so nothing hurries the follower.
func TestFollowGathersBurst(t *testing.T) {
	const n = 6
	r, log, s := newUploadFixture(t, n, 11, func(c *Config) { c.FollowGather = time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Follow(ctx, log) }()
	defer func() { cancel(); <-done }()
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
	for end := time.Now().Add(time.Minute); s.Applied() < n && time.Now().Before(end); {
		time.Sleep(5 * time.Millisecond) // not WaitApplied: it would hurry
	}
	if got := s.Applied(); got != n {
		t.Fatalf("applied %d of %d", got, n)
	}
	s.applyMu.Lock()
	added := s.lastBatchStats.Added
	s.applyMu.Unlock()
	if added != n {
		t.Errorf("the last batch added %d keys, want all %d in one batch", added, n)
	}
}

// TestWaitAppliedHurriesFollow: a reader waiting for an upload ends the
// follower's gathering: it is not held for FollowGather.
func TestWaitAppliedHurriesFollow(t *testing.T) {
	r, log, s := newUploadFixture(t, 1, 12, func(c *Config) { c.FollowGather = time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Follow(ctx, log) }()
	defer func() { cancel(); <-done }()
	u := &uploadStream{t: t, r: r, log: log}
	u.next(ctx)
	time.Sleep(20 * time.Millisecond) // let the follower start gathering
	wctx, wcancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer wcancel()
	if err := s.WaitApplied(wctx, 1); err != nil {
		t.Fatalf("waiting for an upload while the follower gathers for 1s: %v", err)
	}
}

func TestFollowGatherValidate(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, 2 * time.Second} {
		c := DefaultConfig()
		c.FollowGather = d
		if err := c.Validate(); err == nil {
			t.Errorf("FollowGather %v: Validate accepted it", d)
		}
	}
	c := DefaultConfig()
	c.FollowGather = 0
	if err := c.Validate(); err != nil {
		t.Errorf("FollowGather 0: %v", err)
	}
}
