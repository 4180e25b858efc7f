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
