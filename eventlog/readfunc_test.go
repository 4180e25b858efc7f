package eventlog_test

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// TestReadFunc: ReadFunc hands fn the same event Read returns, from the
// in-memory tail and from the segment files alike, and on an error does
// not call fn.
func TestReadFunc(t *testing.T) {
	for _, tail := range []int{0, -1} { // default tail; none, every read from the files
		cfg := testConfig(t, nil)
		cfg.TailBytes = tail
		l := mustOpen(t, t.TempDir(), cfg)
		var evs []*eventlog.Event
		for n := range 40 {
			evs = append(evs, keyEvent(n))
		}
		last, err := l.Append(context.Background(), evs...)
		if err != nil {
			t.Fatal(err)
		}
		for i := eventlog.Index(1); i <= last; i++ {
			want, err := l.Read(i)
			if err != nil {
				t.Fatal(err)
			}
			var got eventlog.Event
			err = l.ReadFunc(i, func(e *eventlog.Event) {
				got = *e
				got.Key = bytes.Clone(e.Key)
			})
			if err != nil || !reflect.DeepEqual(&got, want) {
				t.Fatalf("tail %d: ReadFunc(%d) = %+v, %v; Read gives %+v", tail, i, got, err, want)
			}
		}
		called := false
		if err := l.ReadFunc(last+1, func(*eventlog.Event) { called = true }); !errors.Is(err, eventlog.ErrNotFound) || called {
			t.Fatalf("ReadFunc past the end: %v (fn called %v), want ErrNotFound", err, called)
		}
		l.Close()
		if err := l.ReadFunc(1, func(*eventlog.Event) { called = true }); !errors.Is(err, eventlog.ErrClosed) || called {
			t.Fatalf("ReadFunc after Close: %v (fn called %v), want ErrClosed", err, called)
		}
	}
}

// TestReadFuncCopiesNothing: reading a 4 KB key from the segment files in
// place allocates at least half the key less than Read, which copies it:
// ReadFunc's buffers are recycled (sync.Pool).
func TestReadFuncCopiesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers on purpose; make test runs this test without -race as well")
	}
	cfg := testConfig(t, nil)
	cfg.TailBytes = -1
	cfg.SegmentSize = 1 << 20
	l := mustOpen(t, t.TempDir(), cfg)
	defer l.Close()
	ev := keyEvent(1)
	ev.Key = bytes.Repeat([]byte{0x99}, 4096)
	idx, err := l.Append(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	// Warmed up first: offsets indexed, file open, buffer pooled.
	perCall := func(f func(int)) uint64 { f(0); return bytesAllocated(200, f) }
	size := 0
	inPlace := perCall(func(int) {
		if err := l.ReadFunc(idx, func(e *eventlog.Event) { size = len(e.Key) }); err != nil {
			t.Fatal(err)
		}
	})
	copied := perCall(func(int) {
		if _, err := l.Read(idx); err != nil {
			t.Fatal(err)
		}
	})
	if size != 4096 || inPlace+uint64(size)/2 > copied {
		t.Fatalf("a %d-byte key: ReadFunc allocates %d bytes per call, Read %d: want ReadFunc to copy nothing", size, inPlace, copied)
	}
}
