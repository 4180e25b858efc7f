package main

import (
	"runtime/debug"
	"testing"

	"github.com/rs/zerolog"
)

// TestTuneGC: serve raises GOGC to 400 and sets a 1 GiB memory limit when
// the environment sets neither, and leaves what the environment sets.
func TestTuneGC(t *testing.T) {
	oldPercent := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(oldPercent); debug.SetMemoryLimit(oldLimit) })

	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	if p, l := tuneGC(getenv, zerolog.Nop()); p != serveGCPercent || l != serveMemoryLimit {
		t.Errorf("nothing set: GC percent %d, memory limit %d; want %d, %d", p, l, serveGCPercent, serveMemoryLimit)
	}

	debug.SetGCPercent(150)
	debug.SetMemoryLimit(3 << 30)
	env["GOGC"], env["GOMEMLIMIT"] = "150", "3GiB"
	if p, l := tuneGC(getenv, zerolog.Nop()); p != 150 || l != 3<<30 {
		t.Errorf("GOGC=150 GOMEMLIMIT=3GiB: GC percent %d, memory limit %d; want them kept", p, l)
	}
}
