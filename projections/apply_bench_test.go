package projections

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"

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
// (its thread's: less noisy on a shared machine), and the CPU of the same
// without the apply cache's word counts (runs alternating in one process).
// The key parse is not included (the runner does it on other goroutines).
// GRAPEVINE_BENCH_APPLY_MEMTABLE_MB sets the memtable size.
func BenchmarkApplyNewKeys(b *testing.B) {
	baseDir, warmKeys, newKeys := applyBenchFixture(b)
	cfg := DefaultConfig()
	if v, err := strconv.Atoi(os.Getenv("GRAPEVINE_BENCH_APPLY_MEMTABLE_MB")); err == nil && v > 0 {
		cfg.MemTableBytes = uint64(v) << 20
	}
	for _, batch := range []int{4, 2048} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			b.ReportAllocs()
			// Variant 0 as configured, 1 without the presence filter
			// (GRAPEVINE_BENCH_APPLY_VARY=wordcache: without the apply
			// cache's word counts), alternating.
			var elapsed, cpu, fg [2]time.Duration
			var mallocs uint64
			for i := 0; b.Loop(); i++ {
				for _, v := range []int{i % 2, 1 - i%2} {
					b.StopTimer()
					dir := b.TempDir()
					if err := os.CopyFS(dir, os.DirFS(baseDir)); err != nil {
						b.Fatal(err)
					}
					c := cfg
					if v == 1 && os.Getenv("GRAPEVINE_BENCH_APPLY_VARY") == "wordcache" {
						c.WordCountCacheEntries = 0
					} else if v == 1 {
						c.PresenceFilter = false
					}
					s, err := Open(filepath.Join(dir, "db"), c)
					if err != nil {
						b.Fatal(err)
					}
					for f := s.presence.cur.Load(); f != nil && !f.ready.Load(); {
						time.Sleep(time.Millisecond) // ready, as long after a start
					}
					applyAll(b, s, warmKeys, batch)
					var m0, m1 runtime.MemStats
					runtime.ReadMemStats(&m0)
					b.StartTimer()
					t0, c0 := time.Now(), processCPU()
					fg[v] += threadCPU(func() { applyAll(b, s, newKeys, batch) })
					if err := s.Close(); err != nil {
						b.Fatal(err)
					}
					elapsed[v] += time.Since(t0)
					cpu[v] += processCPU() - c0
					b.StopTimer()
					runtime.ReadMemStats(&m1)
					if v == 0 {
						mallocs += m1.Mallocs - m0.Mallocs
					}
					b.StartTimer()
				}
			}
			keys := float64(b.N * len(newKeys))
			b.ReportMetric(float64(elapsed[0].Nanoseconds())/keys, "ns/key")
			b.ReportMetric(float64(cpu[0].Nanoseconds())/keys, "cpu-ns/key")
			b.ReportMetric(float64(fg[0].Nanoseconds())/keys, "applier-cpu-ns/key")
			b.ReportMetric(float64(fg[1].Nanoseconds())/keys, "variant-applier-cpu-ns/key")
			b.ReportMetric(float64(cpu[1].Nanoseconds())/keys, "variant-cpu-ns/key")
			b.ReportMetric(float64(mallocs)/keys, "allocs/key")
		})
	}
}

// applyBenchFixture returns the directory of the base store of
// BenchmarkApplyNewKeys, the keys that warm it up and the keys to measure.
func applyBenchFixture(b *testing.B) (string, []parsedEvent, []parsedEvent) {
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
	keys := parsedCorpus(b, warm+fresh, 1001, eventlog.Index(base)+1, freshCache)
	return baseDir, keys[:warm], keys[warm:]
}

// BenchmarkCommitOrder commits the batches BenchmarkApplyNewKeys's keys
// make (4, 64 or 1,024 keys each, captured once) onto its warmed-up store as the
// applier writes them and sorted by sortedBatch, alternating in one
// process, and reports the committing thread's CPU per key of each: what
// sorting saves in the memtable inserts, with the sort's own cost.
func BenchmarkCommitOrder(b *testing.B) {
	baseDir, warmKeys, newKeys := applyBenchFixture(b)
	warmDir := b.TempDir()
	if err := os.CopyFS(warmDir, os.DirFS(baseDir)); err != nil {
		b.Fatal(err)
	}
	s, err := Open(filepath.Join(warmDir, "db"), DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	applyAll(b, s, warmKeys, 4)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{4, 64, 1024} {
		b.Run("batch="+strconv.Itoa(size), func(b *testing.B) {
			// Capture the batches as written, committing them (sorted) as the
			// applier does so that each is made on the state the previous left.
			capDir := b.TempDir()
			if err := os.CopyFS(capDir, os.DirFS(warmDir)); err != nil {
				b.Fatal(err)
			}
			s, err = Open(filepath.Join(capDir, "db"), DefaultConfig())
			if err != nil {
				b.Fatal(err)
			}
			var batches [][]byte
			s.applyMu.Lock()
			for evs := newKeys; len(evs) > 0; {
				n := min(size, len(evs))
				a := s.newBatchApplier()
				for _, pe := range evs[:n] {
					if err := a.apply(pe); err != nil {
						b.Fatal(err)
					}
				}
				last := evs[n-1].idx
				evs = evs[n:]
				newCounters, err := a.prepareCommit(last)
				if err != nil {
					b.Fatal(err)
				}
				batches = append(batches, bytes.Clone(a.b.Repr()))
				if err := a.b.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
				a.b.Close()
				for _, wc := range a.newCounts {
					s.cache.putCount(wc.word, wc.n)
				}
				for k, v := range newCounters {
					s.cache.putCounter(k, v)
				}
				s.cache.at, s.keys = last, a.keys
				s.setApplied(last)
			}
			s.applyMu.Unlock()
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			var cpu [2]time.Duration
			for i := 0; b.Loop(); i++ {
				for _, v := range []int{i % 2, 1 - i%2} {
					b.StopTimer()
					dir := b.TempDir()
					if err := os.CopyFS(dir, os.DirFS(warmDir)); err != nil {
						b.Fatal(err)
					}
					st, err := Open(filepath.Join(dir, "db"), DefaultConfig())
					if err != nil {
						b.Fatal(err)
					}
					db := st.db
					b.StartTimer()
					cpu[v] += threadCPU(func() {
						for _, repr := range batches {
							pb := db.NewBatch()
							if err := pb.SetRepr(bytes.Clone(repr)); err != nil {
								b.Fatal(err)
							}
							if v == 1 {
								sb, err := sortedBatch(db, pb)
								if err != nil {
									b.Fatal(err)
								}
								pb.Close()
								pb = sb
							}
							if err := pb.Commit(pebble.NoSync); err != nil {
								b.Fatal(err)
							}
							pb.Close()
						}
					})
					b.StopTimer()
					if err := st.Close(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
			}
			keys := float64(b.N * len(newKeys))
			b.ReportMetric(float64(cpu[0].Nanoseconds())/keys, "as-written-cpu-ns/key")
			b.ReportMetric(float64(cpu[1].Nanoseconds())/keys, "sorted-cpu-ns/key")
		})
	}
}

// batchOp is one operation of a batch: a Set or a Delete of key.
type batchOp struct {
	kind       pebble.InternalKeyKind
	key, value []byte
}

// sortedBatch returns a new batch of b's operations in key order, only the
// last operation of each key kept: what committing b would leave in the
// database. Pebble inserts a batch into the memtable's skiplist in batch
// order, starting each search from the previous insert's position, so
// sorted batches were expected to insert faster; BenchmarkCommitOrder
// shows they do not (docs/benchmarks.md), so the applier commits its
// batches as written and this stays here for that benchmark.
func sortedBatch(db *pebble.DB, b *pebble.Batch) (*pebble.Batch, error) {
	ops := make([]batchOp, 0, b.Count())
	r := b.Reader()
	for {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		switch kind {
		case pebble.InternalKeyKindSet, pebble.InternalKeyKindDelete:
		default:
			return nil, fmt.Errorf("batch operation of kind %s", kind)
		}
		ops = append(ops, batchOp{kind, k, v})
	}
	// Sorting positions rather than the operations swaps 4 bytes with no
	// pointers (a stable sort of the operations themselves cost more than
	// it saved). Ties go by position: of two operations on one key the
	// later one stays later.
	order := make([]int32, len(ops))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(i, j int32) int {
		if c := bytes.Compare(ops[i].key, ops[j].key); c != 0 {
			return c
		}
		return int(i - j)
	})
	out := db.NewBatchWithSize(len(b.Repr()))
	for n, i := range order {
		op := ops[i]
		if n+1 < len(order) && bytes.Equal(op.key, ops[order[n+1]].key) {
			continue // overwritten by a later operation of the batch
		}
		var err error
		if op.kind == pebble.InternalKeyKindSet {
			err = out.Set(op.key, op.value, nil)
		} else {
			err = out.Delete(op.key, nil)
		}
		if err != nil {
			out.Close()
			return nil, err
		}
	}
	return out, nil
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
