// Command tracesplit splits the server-side time of each HKP request in
// an execution trace of grapevine serve (GRAPEVINE_PPROF's
// /debug/pprof/trace; every request is a region named "hkp request"):
// from the network wake-up of its connection goroutine to that
// goroutine's next park after the region (the answer written), split into
// runnable (waiting for a P), running, in a syscall and blocked. It also
// prints every goroutine's scheduling latency (what runtime/metrics
// /sched/latencies:seconds counts), the GC's stop-the-world time and mark
// assists, and the syscalls that lasted over 1 ms by call site. It is how
// the get6 work of issue 4 found what sets the p99 of a cached op=get
// (docs/benchmarks.md, "HKP: what sets the p99 of a cached get"):
//
//	cd testdata/tracesplit && go run . trace.out
//
// Its own module: golang.org/x/exp/trace is needed by nothing else.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"golang.org/x/exp/trace"
)

type seg struct {
	wake, end                        trace.Time
	runnable, running, syscall, wait time.Duration
	firstRun                         time.Duration
	regionSeen, regionDone           bool
	active                           bool
	state                            trace.GoState
	since                            trace.Time
	firstRunSet                      bool
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d)-1) * p)
	return d[i]
}

func main() {
	// -start D: also list, for the first D of the trace, every syscall
	// over 1 ms and the requests answered per 10 ms: how a burst starts.
	var startWin time.Duration
	args := os.Args[1:]
	if len(args) == 3 && args[0] == "-start" {
		d, err := time.ParseDuration(args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		startWin, args = d, args[2:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: tracesplit [-start DURATION] TRACE")
		os.Exit(2)
	}
	type startEvent struct {
		at   time.Duration
		what string
	}
	var startEvents []startEvent
	answered := map[int]int{} // 10 ms bucket -> requests answered
	f, err := os.Open(args[0])
	if err != nil {
		panic(err)
	}
	r, err := trace.NewReader(f)
	if err != nil {
		panic(err)
	}
	gs := map[trace.GoID]*seg{}
	sysStart := map[trace.GoID]trace.Time{}
	sysStack := map[trace.GoID]string{}
	longSys := map[string]int{}
	longSysT := map[string]time.Duration{}
	var reqs []seg
	var schedLat []time.Duration
	var stw, assist, sweep time.Duration
	var nstw int
	var maxstw time.Duration
	rangeStart := map[string]trace.Time{}
	var first, last trace.Time
	get := func(g trace.GoID) *seg {
		s := gs[g]
		if s == nil {
			s = &seg{state: trace.GoUndetermined}
			gs[g] = s
		}
		return s
	}
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			panic(err)
		}
		t := ev.Time()
		if first == 0 {
			first = t
		}
		last = t
		switch ev.Kind() {
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			g := st.Resource.Goroutine()
			from, to := st.Goroutine()
			s := get(g)
			d := time.Duration(t - s.since)
			if to == trace.GoSyscall {
				sysStart[g] = t
				k := ""
				n := 0
				for f := range ev.Stack().Frames() {
					if n < 5 {
						k += f.Func + "<"
					}
					n++
				}
				sysStack[g] = k
			}
			if from == trace.GoSyscall {
				if st, ok := sysStart[g]; ok && time.Duration(t-st) > time.Millisecond {
					longSys[sysStack[g]]++
					longSysT[sysStack[g]] += time.Duration(t - st)
					if at := time.Duration(st - first); at < startWin {
						k := sysStack[g]
						if len(k) > 160 {
							k = k[:160]
						}
						startEvents = append(startEvents, startEvent{at, fmt.Sprintf("syscall %v g%d %s", time.Duration(t-st).Round(10*time.Microsecond), g, k)})
					}
				}
			}
			if s.active && s.since != 0 {
				switch s.state {
				case trace.GoRunnable:
					s.runnable += d
				case trace.GoRunning:
					s.running += d
				case trace.GoSyscall:
					s.syscall += d
				case trace.GoWaiting:
					s.wait += d
				}
			}
			if from == trace.GoRunnable && to == trace.GoRunning && s.since != 0 {
				schedLat = append(schedLat, d)
				if s.active && !s.firstRunSet {
					s.firstRun = time.Duration(t - s.wake)
					s.firstRunSet = true
				}
			}
			if from == trace.GoWaiting && to == trace.GoRunnable && !s.active {
				*s = seg{active: true, wake: t}
			}
			if to == trace.GoWaiting && s.active {
				if s.regionDone {
					s.end = t
					reqs = append(reqs, *s)
					*s = seg{}
				} else if !s.regionSeen {
					*s = seg{}
				}
			}
			s.state, s.since = to, t
		case trace.EventRegionBegin:
			if ev.Region().Type == "hkp request" {
				s := get(ev.Goroutine())
				s.regionSeen = true
			}
		case trace.EventRegionEnd:
			if ev.Region().Type == "hkp request" {
				s := get(ev.Goroutine())
				s.regionDone = true
				if at := time.Duration(t - first); at < startWin {
					answered[int(at/(10*time.Millisecond))]++
				}
			}
		case trace.EventRangeBegin:
			rg := ev.Range()
			key := rg.Name + fmt.Sprint(ev.Goroutine(), ev.Proc())
			if rg.Scope.Kind == trace.ResourceNone {
				key = rg.Name
			}
			rangeStart[key] = t
		case trace.EventRangeEnd:
			rg := ev.Range()
			key := rg.Name + fmt.Sprint(ev.Goroutine(), ev.Proc())
			if rg.Scope.Kind == trace.ResourceNone {
				key = rg.Name
			}
			st, ok := rangeStart[key]
			if !ok {
				continue
			}
			d := time.Duration(t - st)
			switch {
			case len(rg.Name) >= 13 && rg.Name[:13] == "stop-the-worl":
				stw += d
				nstw++
				maxstw = max(maxstw, d)
			case rg.Name == "GC mark assist":
				assist += d
			case rg.Name == "GC incremental sweep":
				sweep += d
			}
		}
	}
	span := time.Duration(last - first)
	if startWin > 0 {
		sort.Slice(startEvents, func(i, j int) bool { return startEvents[i].at < startEvents[j].at })
		for _, e := range startEvents {
			fmt.Printf("%8v %s\n", e.at.Round(10*time.Microsecond), e.what)
		}
		fmt.Printf("requests ended per 10 ms:")
		for b := 0; b < int(startWin/(10*time.Millisecond)); b++ {
			fmt.Printf(" %d", answered[b])
		}
		fmt.Println()
	}
	fmt.Printf("trace span %v, %d requests (%.0f/s)\n", span, len(reqs), float64(len(reqs))/span.Seconds())
	tot := make([]time.Duration, len(reqs))
	for i, q := range reqs {
		tot[i] = time.Duration(q.end - q.wake)
	}
	idx := make([]int, len(reqs))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return tot[idx[a]] < tot[idx[b]] })
	sorted := make([]time.Duration, len(tot))
	for i, j := range idx {
		sorted[i] = tot[j]
	}
	fmt.Printf("server-side (wake->park): p50 %v p90 %v p99 %v p99.9 %v max %v\n", pct(sorted, .5), pct(sorted, .9), pct(sorted, .99), pct(sorted, .999), sorted[len(sorted)-1])
	sum := func(from int) {
		var a seg
		n := 0
		for _, j := range idx[from:] {
			q := reqs[j]
			a.runnable += q.runnable
			a.running += q.running
			a.syscall += q.syscall
			a.wait += q.wait
			a.firstRun += q.firstRun
			n++
		}
		all := a.runnable + a.running + a.syscall + a.wait
		fmt.Printf("  n=%d mean %v: runnable %.0f%% (first run after wake %v) running %.0f%% syscall %.0f%% blocked %.0f%%\n", n, all/time.Duration(n),
			100*float64(a.runnable)/float64(all), a.firstRun/time.Duration(n), 100*float64(a.running)/float64(all), 100*float64(a.syscall)/float64(all), 100*float64(a.wait)/float64(all))
	}
	runs := make([]time.Duration, len(reqs))
	for i, q := range reqs {
		runs[i] = q.running + q.syscall
	}
	sort.Slice(runs, func(a, b int) bool { return runs[a] < runs[b] })
	var over time.Duration
	for _, r := range runs {
		if r > time.Millisecond {
			over += r
		}
	}
	fmt.Printf("on-CPU (running+syscall) per request: p50 %v p99 %v p99.9 %v max %v; requests over 1 ms: %d (their time %v)\n", pct(runs, .5), pct(runs, .99), pct(runs, .999), runs[len(runs)-1], len(runs)-sort.Search(len(runs), func(i int) bool { return runs[i] > time.Millisecond }), over)
	var lr, ls time.Duration
	var nr, ns int
	for _, q := range reqs {
		if q.running > time.Millisecond {
			lr += q.running
			nr++
		}
		if q.syscall > time.Millisecond {
			ls += q.syscall
			ns++
		}
	}
	fmt.Printf("  requests with running >1ms: %d (%v); with syscall >1ms: %d (%v)\n", nr, lr, ns, ls)
	for k, n := range longSys {
		fmt.Printf("  syscall >1ms x%d (%v): %s\n", n, longSysT[k], k)
	}
	fmt.Print("all:")
	sum(0)
	fmt.Print("slowest 1%:")
	sum(len(idx) - len(idx)/100)
	sort.Slice(schedLat, func(a, b int) bool { return schedLat[a] < schedLat[b] })
	fmt.Printf("sched latency (runnable->running, all goroutines, n=%d): p50 %v p90 %v p99 %v p99.9 %v max %v\n", len(schedLat), pct(schedLat, .5), pct(schedLat, .9), pct(schedLat, .99), pct(schedLat, .999), schedLat[len(schedLat)-1])
	fmt.Printf("GC: %d STW total %v max %v; mark assist %v; sweep %v (per s of trace: STW %v, assist %v)\n", nstw, stw, maxstw, assist, sweep,
		time.Duration(float64(stw)/span.Seconds()), time.Duration(float64(assist)/span.Seconds()))
}
