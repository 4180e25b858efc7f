package main

import (
	"runtime"
	"testing"

	"github.com/rs/zerolog"
)

func TestTuneProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)

	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	// Twice: tests run serve in one process many times, and each must get
	// one more than the default, not one more than the last.
	for i := range 2 {
		if got := tuneProcs(getenv, 10, zerolog.Nop()); got != def+1 {
			t.Errorf("call %d with lowered appliers: GOMAXPROCS %d, want %d (the default %d + 1)", i+1, got, def+1, def)
		}
	}
	runtime.SetDefaultGOMAXPROCS()
	if got := tuneProcs(getenv, 0, zerolog.Nop()); got != def {
		t.Errorf("appliers not lowered: GOMAXPROCS %d, want the default %d", got, def)
	}
	env["GOMAXPROCS"] = "5"
	runtime.GOMAXPROCS(5)
	if got := tuneProcs(getenv, 10, zerolog.Nop()); got != 5 {
		t.Errorf("GOMAXPROCS=5 set by the operator: %d, want it kept", got)
	}
}
