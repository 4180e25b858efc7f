package main

import (
	"runtime"

	"github.com/rs/zerolog"
)

// tuneProcs gives `grapevine serve` one GOMAXPROCS more than Go's default
// (the cores it may use) when the appliers run at a lower priority
// (grapevine_background_nice, projections.Config.BackgroundNice), unless
// the operator sets GOMAXPROCS. It returns the GOMAXPROCS now in force.
//
// Why: the applier holds one of Go's Ps while it runs, also while the
// kernel, preferring the request path's threads, keeps it off the CPU. With
// as many Ps as cores that P is then lost to serving; with one more, the
// request path always has a P for each core, and the kernel, not Go's
// scheduler (which preempts a goroutine only after 10 ms), decides who
// runs. Measured with uploadprof: one more P alone gave about +6 % uploads
// a second, with the lowered appliers +8 % (11 alternated pairs); op=get
// under wrk was faster too (docs/benchmarks.md, session 17).
//
// Setting GOMAXPROCS stops Go from following later changes of the
// process's CPU limit (cgroups); a daemon whose limit changes is restarted
// anyway to pick up its other settings.
func tuneProcs(getenv func(string) string, backgroundNice int, logger zerolog.Logger) int {
	if backgroundNice > 0 && getenv("GOMAXPROCS") == "" {
		// From the default, not the current value: tests run serve in
		// one process many times.
		runtime.SetDefaultGOMAXPROCS()
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
	n := runtime.GOMAXPROCS(0)
	logger.Debug().Int("gomaxprocs", n).Int("background_nice", backgroundNice).Msg("scheduler settings")
	return n
}
