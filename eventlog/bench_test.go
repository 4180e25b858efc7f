package eventlog_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/rs/zerolog"
)

// benchKeyBytes is about a typical key on the SKS network.
const benchKeyBytes = 4 << 10

func benchEvent() *eventlog.Event {
	key := make([]byte, benchKeyBytes)
	for k := range key {
		key[k] = byte(k * 7)
	}
	return &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginRecon, Peer: "peer.example.net", Key: key}
}

func benchConfig(noSync bool) eventlog.Config {
	cfg := eventlog.DefaultConfig()
	cfg.Logger = zerolog.Nop()
	cfg.NoSync = noSync
	return cfg
}

// benchAppend appends batch events per Append call; with parallel, from
// many goroutines at once (group commit).
func benchAppend(b *testing.B, batch int, parallel, noSync bool) {
	l, err := eventlog.Open(b.TempDir(), benchConfig(noSync))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := benchEvent()
	rec, _ := e.MarshalBinary()
	events := make([]*eventlog.Event, batch)
	for k := range events {
		events[k] = e
	}
	b.SetBytes(int64(batch * (len(rec) + 9))) // + the time field Append adds
	b.ReportAllocs()
	ctx := context.Background()
	if parallel {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Append(ctx, events...); err != nil {
					b.Error(err)
					return
				}
			}
		})
	} else {
		for b.Loop() {
			if _, err := l.Append(ctx, events...); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	st := l.Stats()
	b.ReportMetric(float64(st.Events)/float64(st.Batches), "events/batch")
}

func BenchmarkAppend(b *testing.B) {
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchAppend(b, batch, false, false) })
	}
	b.Run("concurrent/batch=1", func(b *testing.B) { benchAppend(b, 1, true, false) })
	b.Run("concurrent/batch=100", func(b *testing.B) { benchAppend(b, 100, true, false) })
	// NoSync shows the cost of the code and tidwall/wal without the disk.
	b.Run("nosync/batch=1", func(b *testing.B) { benchAppend(b, 1, false, true) })
	b.Run("nosync/batch=100", func(b *testing.B) { benchAppend(b, 100, false, true) })
}

// BenchmarkIterate replays a 64 MiB log: the projections' rebuild path.
func BenchmarkIterate(b *testing.B) {
	l, err := eventlog.Open(b.TempDir(), benchConfig(true))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := benchEvent()
	events := make([]*eventlog.Event, 1000)
	for k := range events {
		events[k] = e
	}
	const total = 16 * 1000 // 16 batches of 1000 keys of 4 KiB
	for range total / len(events) {
		if _, err := l.Append(context.Background(), events...); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(l.Stats().Bytes))
	b.ReportAllocs()
	for b.Loop() {
		it := l.NewIterator(0, 0)
		n := 0
		for {
			_, ev, err := it.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n += len(ev.Key)
		}
		if n != total*benchKeyBytes {
			b.Fatalf("read %d key bytes, want %d", n, total*benchKeyBytes)
		}
	}
}

// BenchmarkAppendBatch is a bulk import's append: 8192 keys of 1.4 KB (the
// 100k corpus's mean) per Append, one fsync each, into a fresh log, so the
// tail segment fills and cycles as it does during an import. The
// segment=20MiB runs are the old default, for comparison (tidwall/wal
// rebuilds each segment in one growing slice; see DefaultSegmentSize).
func BenchmarkAppendBatch(b *testing.B) {
	for _, noSync := range []bool{false, true} {
		for _, seg := range []int{eventlog.DefaultSegmentSize, 20 << 20} {
			name := fmt.Sprintf("fsync/segment=%dMiB", seg>>20)
			if noSync {
				name = fmt.Sprintf("nosync/segment=%dMiB", seg>>20)
			}
			b.Run(name, func(b *testing.B) { benchAppendBatch(b, noSync, seg) })
		}
	}
}

func benchAppendBatch(b *testing.B, noSync bool, segmentSize int) {
	cfg := benchConfig(noSync)
	cfg.SegmentSize = segmentSize
	l, err := eventlog.Open(b.TempDir(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const batch, keyBytes = 8192, 1400
	events := make([]*eventlog.Event, batch)
	for k := range events {
		key := make([]byte, keyBytes)
		for j := range key {
			key[j] = byte(j*7 + k)
		}
		events[k] = &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginImport, Peer: "keydump-0001.pgp", Key: key}
	}
	rec, _ := events[0].MarshalBinary()
	b.SetBytes(int64(batch * (len(rec) + 9))) // + the time field Append adds
	b.ReportAllocs()
	ctx := context.Background()
	for b.Loop() {
		if _, err := l.Append(ctx, events...); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(l.Stats().Events)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkFollowedAppend is the upload path's use of the log: 8 clients
// each append one 1.4 KB key and wait for it, while 3 readers follow the
// log as the projections do (a new Iterator after every Notify), with the
// in-memory tail and without it (TailBytes < 0: every catch-up opens the
// tail segment). fsync is off to show the code's CPU, not the disk's.
func BenchmarkFollowedAppend(b *testing.B) {
	for _, tail := range []int{0, -1} {
		name := "tail"
		if tail < 0 {
			name = "files"
		}
		b.Run(name, func(b *testing.B) {
			cfg := benchConfig(true)
			cfg.TailBytes = tail
			l, err := eventlog.Open(b.TempDir(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			e := benchEvent()
			e.Key = e.Key[:1400]
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					next := eventlog.Index(1)
					for ctx.Err() == nil {
						ch := l.Notify()
						if l.LastIndex() < next {
							select {
							case <-ch:
							case <-ctx.Done():
							}
							continue
						}
						it := l.NewIterator(next, 0)
						for {
							idx, _, err := it.Next()
							if err != nil {
								break
							}
							next = idx + 1
						}
						it.Close()
					}
				}()
			}
			b.ReportAllocs()
			b.SetParallelism(4) // 8 appenders on 2 CPUs
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := l.Append(ctx, e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			cancel()
			wg.Wait()
		})
	}
}

// BenchmarkReadRandom reads single events of sealed segments at random, as
// a get that has to fetch a key from the log would (16,000 keys of 4 KiB,
// read back after a reopen so that the in-memory tail holds none of them;
// the files are in the page cache).
func BenchmarkReadRandom(b *testing.B) {
	dir := b.TempDir()
	l, err := eventlog.Open(dir, benchConfig(true))
	if err != nil {
		b.Fatal(err)
	}
	e := benchEvent()
	events := make([]*eventlog.Event, 1000)
	for k := range events {
		events[k] = e
	}
	const total = 16 * 1000
	for range total / len(events) {
		if _, err := l.Append(context.Background(), events...); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if l, err = eventlog.Open(dir, benchConfig(true)); err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	// Index every segment once, outside the measurement, as a daemon that
	// has served for a while has.
	for i := eventlog.Index(1); i <= total; i += 500 {
		if _, err := l.Read(i); err != nil {
			b.Fatal(err)
		}
	}
	rng := uint64(1)
	b.ReportAllocs()
	for b.Loop() {
		rng = rng*6364136223846793005 + 1442695040888963407
		i := eventlog.Index(rng>>33%total + 1)
		ev, err := l.Read(i)
		if err != nil {
			b.Fatal(err)
		}
		if len(ev.Key) != benchKeyBytes {
			b.Fatalf("index %d: %d key bytes", i, len(ev.Key))
		}
	}
}
