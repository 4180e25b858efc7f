package eventlog_test

import (
	"context"
	"fmt"
	"io"
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
