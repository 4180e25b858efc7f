package projections

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

// parsedCorpus returns n generated keys of seed as submitted events with
// their parsed keys, numbered from first. With cache set it keeps the
// generated keys in that file and reads them from it next time.
func parsedCorpus(tb testing.TB, n int, seed int64, first eventlog.Index, cache string) []parsedEvent {
	tb.Helper()
	data, err := os.ReadFile(cache)
	if cache == "" || err != nil {
		var buf bytes.Buffer
		if _, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: n, Seed: seed, RSAPoolSize: 2}); err != nil {
			tb.Fatal(err)
		}
		data = buf.Bytes()
		if cache != "" {
			if err := os.WriteFile(cache, data, 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
	raws, err := pgpkey.Decode(data)
	if err != nil {
		tb.Fatal(err)
	}
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	out := make([]parsedEvent, len(raws))
	for i, raw := range raws {
		ev := &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: t0.Add(time.Duration(i) * time.Second), Key: raw.Raw}
		out[i] = parseEvent(first+eventlog.Index(i), ev)
		if out[i].err != nil {
			tb.Fatal(out[i].err)
		}
	}
	return out
}

// applyAll applies events in batches of n, as the runner does.
func applyAll(tb testing.TB, s *Store, evs []parsedEvent, n int) {
	tb.Helper()
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	for len(evs) > 0 {
		k := min(n, len(evs))
		if err := s.applyBatch(evs[:k]); err != nil {
			tb.Fatal(err)
		}
		evs = evs[k:]
	}
}

// BenchmarkApplyNewKeys applies GRAPEVINE_BENCH_APPLY_NEW (4,000) keys no
// store has seen onto a store of GRAPEVINE_BENCH_APPLY_BASE (20,000)
// generated keys, after 500 more applied untimed to warm the caches, in
// batches of 4 (what the runner sees under a burst of uploads from 8
// clients: the events of one or two group commits) and of 2,048 (a
// catch-up), until the store is closed (its memtables flushed). It
// reports ns and allocations per new key: wall, process CPU (Pebble's
// flushes and compactions included) and the applying goroutine's CPU
// (its thread's: less noisy on a shared machine). The key parse is not
// included (the runner does it on other goroutines).
// GRAPEVINE_BENCH_APPLY_MEMTABLE_MB sets the memtable size.
func BenchmarkApplyNewKeys(b *testing.B) {
	base, fresh := 20000, 4000
	if v, err := strconv.Atoi(os.Getenv("GRAPEVINE_BENCH_APPLY_BASE")); err == nil && v > 0 {
		base = v
	}
	if v, err := strconv.Atoi(os.Getenv("GRAPEVINE_BENCH_APPLY_NEW")); err == nil && v > 0 {
		fresh = v
	}
	// GRAPEVINE_BENCH_APPLY_FIXTURE keeps the base store and the new keys
	// in a directory for the next run (e.g. under valgrind, where making
	// them would take an hour).
	baseDir, fixture := b.TempDir(), os.Getenv("GRAPEVINE_BENCH_APPLY_FIXTURE")
	var freshCache string
	if fixture != "" {
		baseDir = filepath.Join(fixture, fmt.Sprintf("base-%d", base))
		freshCache = filepath.Join(fixture, fmt.Sprintf("new-%d.keys", 500+fresh))
	}
	if _, err := os.Stat(baseDir); err != nil {
		tmp := baseDir + ".tmp"
		os.RemoveAll(tmp)
		s, err := Open(filepath.Join(tmp, "db"), DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		applyAll(b, s, parsedCorpus(b, base, 1, 1, ""), 2048)
		// Settled, as an imported store is: no compaction debt to pay
		// during the measurement.
		if err := s.db.Compact([]byte{0}, []byte{0xff}, true); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, baseDir); err != nil {
			b.Fatal(err)
		}
	}
	// The first warm keys are applied untimed: the daemon's block cache
	// and apply cache are warm.
	const warm = 500
	newKeys := parsedCorpus(b, warm+fresh, 1001, eventlog.Index(base)+1, freshCache)
	warmKeys, newKeys := newKeys[:warm], newKeys[warm:]
	cfg := DefaultConfig()
	if v, err := strconv.Atoi(os.Getenv("GRAPEVINE_BENCH_APPLY_MEMTABLE_MB")); err == nil && v > 0 {
		cfg.MemTableBytes = uint64(v) << 20
	}
	for _, batch := range []int{4, 2048} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			b.ReportAllocs()
			var elapsed, cpu, fg time.Duration
			var mallocs uint64
			for b.Loop() {
				b.StopTimer()
				dir := b.TempDir()
				if err := os.CopyFS(dir, os.DirFS(baseDir)); err != nil {
					b.Fatal(err)
				}
				s, err := Open(filepath.Join(dir, "db"), cfg)
				if err != nil {
					b.Fatal(err)
				}
				applyAll(b, s, warmKeys, batch)
				var m0, m1 runtime.MemStats
				runtime.ReadMemStats(&m0)
				b.StartTimer()
				t0, c0 := time.Now(), processCPU()
				fg += threadCPU(func() { applyAll(b, s, newKeys, batch) })
				if err := s.Close(); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(t0)
				cpu += processCPU() - c0
				b.StopTimer()
				runtime.ReadMemStats(&m1)
				mallocs += m1.Mallocs - m0.Mallocs
				b.StartTimer()
			}
			keys := float64(b.N * len(newKeys))
			b.ReportMetric(float64(elapsed.Nanoseconds())/keys, "ns/key")
			b.ReportMetric(float64(cpu.Nanoseconds())/keys, "cpu-ns/key")
			b.ReportMetric(float64(fg.Nanoseconds())/keys, "applier-cpu-ns/key")
			b.ReportMetric(float64(mallocs)/keys, "allocs/key")
		})
	}
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// threadCPU runs f on one OS thread and returns that thread's CPU time
// spent in it.
func threadCPU(f func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	t0 := t()
	f()
	return t() - t0
}
