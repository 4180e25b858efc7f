package main

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"testing"

	"github.com/rs/zerolog"
)

// TestTuneGC: serve raises GOGC to at least 400 and sets a 1 GiB memory
// limit when the environment sets neither, and leaves what the environment
// sets (no heap goal floor then).
func TestTuneGC(t *testing.T) {
	oldPercent := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(oldPercent); debug.SetMemoryLimit(oldLimit) })

	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	p, l, stop := tuneGC(getenv, zerolog.Nop())
	stop()
	if p < serveGCPercent || l != serveMemoryLimit {
		t.Errorf("nothing set: GC percent %d, memory limit %d; want ≥ %d, %d", p, l, serveGCPercent, serveMemoryLimit)
	}
	if got := gcPercent(); got != serveGCPercent {
		t.Errorf("after stopping the floor GOGC is %d, want %d", got, serveGCPercent)
	}

	debug.SetGCPercent(150)
	debug.SetMemoryLimit(3 << 30)
	env["GOGC"], env["GOMEMLIMIT"] = "150", "3GiB"
	p, l, stop = tuneGC(getenv, zerolog.Nop())
	runtime.GC()
	runtime.GC()
	stop()
	if p != 150 || l != 3<<30 || gcPercent() != 150 {
		t.Errorf("GOGC=150 GOMEMLIMIT=3GiB: GC percent %d (now %d), memory limit %d; want them kept", p, gcPercent(), l)
	}
}

func gcPercent() int {
	m := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}}
	rtmetrics.Read(m)
	return int(m[0].Value.Uint64())
}

// TestGCPercentFor: the heap goal (live × (1 + GOGC/100)) is at least the
// floor while the live heap is small, GOGC never below the base, and
// bounded for a tiny heap.
func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live uint64
		want int
	}{
		{8 * mib, 1500},  // 8 MiB × 16 = 128 MiB
		{16 * mib, 700},  // × 8
		{25 * mib, 412},  // just above the base
		{30 * mib, 400},  // the base already gives 150 MiB
		{200 * mib, 400}, // large heap: the base
		{64 << 10, 5000}, // tiny heap: bounded
		{0, 5000},
	} {
		if got := gcPercentFor(c.live, 400, 128*mib); got != c.want {
			t.Errorf("live %d: GOGC %d, want %d", c.live, got, c.want)
		}
	}
}

// TestHeapGoalFloor: with a live heap far below the floor, the floor raises
// GOGC after a collection, and stopping it puts the base back.
func TestHeapGoalFloor(t *testing.T) {
	old := debug.SetGCPercent(400)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	stop := startHeapGoalFloor(400, 1<<40) // any test heap is far below 1 TiB
	// The floor hears of a cycle through a cleanup that runs after it, on
	// the runtime's cleanup goroutine: collect until it has run.
	for i := 0; i < 1000 && gcPercent() == 400; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if got := gcPercent(); got != maxGCPercent {
		t.Errorf("GOGC %d after collections with a small heap, want %d", got, maxGCPercent)
	}
	stop()
	if got := gcPercent(); got != 400 {
		t.Errorf("GOGC %d after stop, want 400", got)
	}
	runtime.GC()
	runtime.GC()
	if got := gcPercent(); got != 400 {
		t.Errorf("GOGC %d after stop and more collections, want 400", got)
	}
}
