package main

// -get-only: the two op=get rows at 64 connections alone, on grapevine
// only, each run on a freshly started daemon — the 1,000 sampled
// fingerprints (answers the caches hold after their first visit) and then
// every key's fingerprint (answers no cache holds: Pebble reads, armoring)
// — with the tail of the latency distribution (p99.9, max) and, with
// -get-profile, a CPU profile, an execution trace and the mutex and block
// profiles of the every-fingerprint row, to see where its slowest requests
// wait. It is how the stall work of issue 4 was measured
// (docs/benchmarks.md).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// runGetOnly is -get-only: it prints the rows (SKS's column empty).
func runGetOnly(ctx context.Context, c config, stdout io.Writer) error {
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk: %w (apt-get install wrk)", err)
	}
	if _, err := os.Stat(c.grapevine); err != nil {
		return fmt.Errorf("%s: %w (build grapevine with make build)", c.grapevine, err)
	}
	dir, dumpDir := c.getBasedir, c.getCorpus
	if dir == "" {
		if c.work == "" {
			return errors.New("-get-only needs -get-basedir or -work (an imported store)")
		}
		dir = filepath.Join(c.work, "gv")
	}
	if dumpDir == "" {
		if c.work == "" {
			return errors.New("-get-only needs -get-corpus or -work")
		}
		dumpDir = filepath.Join(c.work, fmt.Sprintf("corpus-%d-%d", c.keys, c.seed))
	}
	rows, err := getOnlyRows(ctx, c, dir, dumpDir)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, format(c, rows, dirSize(dumpDir)))
	return nil
}

// getOnlyRows measures the get rows c.runs times on the grapevine basedir
// dir (imported already; its projections catch up first) with the
// lookups sampled from dumpDir.
func getOnlyRows(ctx context.Context, c config, dir, dumpDir string) ([]row, error) {
	fmt.Fprintf(os.Stderr, "get-only: sampling queries from %s\n", dumpDir)
	q, err := sampleQueries(dumpDir, 1000)
	if err != nil {
		return nil, err
	}
	// The wrk files and the daemon's log go into dir itself: its parent
	// may be shared (/tmp).
	work := dir
	var warm, cold []wrkResult
	for run := 0; run < c.runs; run++ {
		profile := c.getProfile != "" && run == c.runs-1
		gv, err := startGrapevineProfiled(ctx, c.grapevine, dir, filepath.Join(dir, "serve.log"), profile)
		if err != nil {
			return nil, err
		}
		w, cd, err := getOnlyRun(ctx, c, gv, dir, work, q, run)
		gv.stop()
		if err != nil {
			return nil, err
		}
		if profile && c.runs > 1 {
			// The profiles disturb what they measure: that run's figures
			// are printed, not counted (unless it is the only run).
			fmt.Fprintf(os.Stderr, "get-only: run %d was profiled (%s); not counted\n", run+1, c.getProfile)
			continue
		}
		warm, cold = append(warm, w), append(cold, cd)
	}
	rows := getRowsOf("HTTP get by fingerprint, 64 conn", warm)
	return append(rows, getRowsOf("HTTP get by fingerprint, all keys cycled, 64 conn", cold)...), nil
}

// getOnlyRun measures both rows once on the running daemon gv.
func getOnlyRun(ctx context.Context, c config, gv *server, dir, work string, q queries, run int) (warm, cold wrkResult, err error) {
	if _, err := waitApplied(ctx, c.grapevine, dir, 15*time.Minute, time.Second); err != nil {
		return warm, cold, err
	}
	rows := []struct {
		name  string
		paths []string
		out   *wrkResult
	}{
		{"1000 fingerprints", q.fingerprints, &warm},
		{"every fingerprint", q.allFingerprints, &cold},
	}
	for i, r := range rows {
		fmt.Fprintf(os.Stderr, "get-only run %d: %s, 64 conns (%d paths, %s)\n", run+1, r.name, len(r.paths), c.duration)
		var wg sync.WaitGroup
		var perr error
		if gv.metrics != "" && i == len(rows)-1 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				perr = captureProfiles(ctx, gv.metrics, c.getProfile, c.duration)
			}()
		}
		res, err := runWrk(ctx, work, gv.base, r.paths, 64, c.duration)
		wg.Wait()
		if err != nil {
			return warm, cold, err
		}
		if perr != nil {
			return warm, cold, fmt.Errorf("profiles: %w", perr)
		}
		*r.out = res
		fmt.Fprintf(os.Stderr, "      %.0f req/s, p50 %v, p99 %v, p99.9 %v, max %v, %d errors of %d\n",
			res.rps, res.p50, res.p99, res.p999, res.max, res.errors, res.requests)
	}
	return warm, cold, checkAlive(gv)
}

// captureProfiles writes into dir, while a row of duration d runs: a CPU
// profile of most of it, an execution trace of its first 5 s (the
// coldest, and traces are large), and the mutex, block and allocation
// profiles as deltas over the CPU profile's span.
func captureProfiles(ctx context.Context, base, dir string, d time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	secs := max(1, int(d.Seconds())-2)
	fetches := map[string]string{
		"cpu.pprof":    fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs),
		"trace.out":    fmt.Sprintf("/debug/pprof/trace?seconds=%d", min(5, secs)),
		"mutex.pprof":  fmt.Sprintf("/debug/pprof/mutex?seconds=%d", secs),
		"block.pprof":  fmt.Sprintf("/debug/pprof/block?seconds=%d", secs),
		"allocs.pprof": fmt.Sprintf("/debug/pprof/allocs?seconds=%d", secs),
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(fetches))
	for name, path := range fetches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- fetchTo(ctx, base+path, filepath.Join(dir, name))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func fetchTo(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", url, err)
	}
	return f.Close()
}

// getRowsOf is the medians of runs of one row: req/s, p50, p99, p99.9
// and the longest request, with every run's p99.9 and longest request too
// (stalls are what this mode is for; a median hides them).
func getRowsOf(name string, runs []wrkResult) []row {
	if len(runs) == 0 {
		return nil
	}
	med := func(f func(wrkResult) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = f(r)
		}
		return medianFloat(v)
	}
	all := func(f func(wrkResult) float64) string {
		s := ""
		for i, r := range runs {
			if i > 0 {
				s += " / "
			}
			s += fmt.Sprintf("%.1f", f(r))
		}
		return s
	}
	return []row{
		{name: name + " (req/s)", grapevine: med(func(r wrkResult) float64 { return r.rps }), higherBetter: true},
		{name: name + " p50 (ms)", grapevine: med(func(r wrkResult) float64 { return ms(r.p50) }), prec: 2},
		{name: name + " p99 (ms)", grapevine: med(func(r wrkResult) float64 { return ms(r.p99) }), prec: 2},
		{name: name + " p99.9 (ms)", grapevine: med(func(r wrkResult) float64 { return ms(r.p999) }), prec: 2},
		{name: name + " longest request (ms)", grapevine: med(func(r wrkResult) float64 { return ms(r.max) })},
		{name: name + " p99.9 per run (ms)", text: [2]string{all(func(r wrkResult) float64 { return ms(r.p999) }), "—"}},
		{name: name + " longest request per run (ms)", text: [2]string{all(func(r wrkResult) float64 { return ms(r.max) }), "—"}},
	}
}

func medianFloat(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
