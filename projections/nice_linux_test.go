package projections

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestFollowAppliesOnLoweredThreads: Follow's two appliers (the SKS
// projections' and the Hockeypuck dataset's) each run on a thread of their
// own, BackgroundNice above the process's nice value, and still apply; and
// those threads end with Follow, so that no goroutine is ever scheduled on
// a lowered thread afterwards. (The main thread is the exception Go makes:
// a goroutine locked to it that returns leaves it parked for good, running
// nothing, since the main thread cannot exit.)
func TestFollowAppliesOnLoweredThreads(t *testing.T) {
	const bump = 7 // not the default (10): tests running beside this one use that
	own := testenv.OwnNice(t)
	lowered := min(own+bump, 19)
	if lowered == own {
		t.Skipf("the test runs at nice %d already: nothing lower to check", own)
	}
	// Threads lowered before (a parked main thread of an earlier run of
	// this test, with -count) are not this run's.
	before := testenv.ThreadsAtNice(t, 0, lowered)
	newLowered := func() (tids []int) {
		for _, tid := range testenv.ThreadsAtNice(t, 0, lowered) {
			if !slices.Contains(before, tid) {
				tids = append(tids, tid)
			}
		}
		return tids
	}

	const keys = 3
	r, log, s := newUploadFixture(t, keys, 17, func(c *Config) { c.BackgroundNice = bump })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); s.Follow(ctx, log) }()
	u := &uploadStream{t: t, r: r, log: log}
	for u.next(ctx) {
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := s.WaitApplied(wctx, keys); err != nil {
		t.Fatalf("SKS projections: %v", err)
	}
	if err := s.WaitHockeypuckApplied(wctx, keys); err != nil {
		t.Fatalf("Hockeypuck dataset: %v", err)
	}
	if tids := newLowered(); len(tids) != 2 {
		t.Errorf("threads %v at nice %d while following, want 2 (the two appliers); all: %v", tids, lowered, testenv.ThreadNices(t, 0))
	}

	cancel()
	<-done
	var left []int
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		left = slices.DeleteFunc(newLowered(), func(tid int) bool { return tid == os.Getpid() })
		if len(left) == 0 {
			return
		}
	}
	t.Errorf("threads %v still at nice %d after Follow returned: they went back to the runtime", left, lowered)
}

func TestBackgroundNiceValidate(t *testing.T) {
	for _, n := range []int{-1, 20} {
		c := DefaultConfig()
		c.BackgroundNice = n
		if err := c.Validate(); err == nil {
			t.Errorf("BackgroundNice %d: no error", n)
		}
	}
	for _, n := range []int{0, 19} {
		c := DefaultConfig()
		c.BackgroundNice = n
		if err := c.Validate(); err != nil {
			t.Errorf("BackgroundNice %d: %v", n, err)
		}
	}
}
