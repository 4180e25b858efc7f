package main

import (
	"maps"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestServeAppliesAtLowerPriority: a running daemon applies on two threads
// grapevine_background_nice (default 10) above its own nice value, and on
// none with the option at 0.
func TestServeAppliesAtLowerPriority(t *testing.T) {
	own := testenv.OwnNice(t)
	for _, tc := range []struct {
		name    string
		conf    []string
		lowered int // the nice value of the appliers' threads
	}{
		{"default", nil, min(own+10, 19)},
		{"19", []string{"grapevine_background_nice: 19"}, 19},
		{"off", []string{"grapevine_background_nice: 0"}, own},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newChildDaemon(t, tc.conf...)
			d.start()
			d.waitServing()
			// Serving may begin a moment before the appliers lower their
			// threads: look again for a while.
			var at, want map[int]int // nice value → threads
			for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				nices := testenv.ThreadNices(t, d.cmd.Process.Pid)
				at = map[int]int{}
				for _, n := range nices {
					at[n]++
				}
				want = map[int]int{own: len(nices)}
				if tc.lowered != own {
					want = map[int]int{own: len(nices) - 2, tc.lowered: 2}
				}
				if maps.Equal(at, want) || time.Now().After(end) {
					break
				}
			}
			if !maps.Equal(at, want) {
				t.Errorf("threads by nice value %v, want %v", at, want)
			}
			d.stop()
		})
	}
}
