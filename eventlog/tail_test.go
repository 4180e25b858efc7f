package eventlog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// sameEvent reports how a differs from b, or "" if it does not.
func sameEvent(a, b *eventlog.Event) string {
	switch {
	case a.Kind != b.Kind || a.Origin != b.Origin || a.Peer != b.Peer || a.Reason != b.Reason:
		return fmt.Sprintf("%s %s %q %q, want %s %s %q %q", a.Kind, a.Origin, a.Peer, a.Reason, b.Kind, b.Origin, b.Peer, b.Reason)
	case !a.Time.Equal(b.Time) || a.Time.Location() != b.Time.Location():
		return fmt.Sprintf("time %v, want %v", a.Time, b.Time)
	case !bytes.Equal(a.Key, b.Key) || !bytes.Equal(a.Target, b.Target):
		return "key or target differs"
	}
	return ""
}

// readAll returns the entries [from, to) of l through an Iterator.
func readAll(tb testing.TB, l *eventlog.Log, from, to eventlog.Index) []*eventlog.Event {
	tb.Helper()
	it := l.NewIterator(from, to)
	defer it.Close()
	var out []*eventlog.Event
	for want := from; ; want++ {
		idx, e, err := it.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			tb.Fatalf("iterate [%d, %d): %v", from, to, err)
		}
		if idx != want {
			tb.Fatalf("iterate [%d, %d): index %d, want %d", from, to, idx, want)
		}
		out = append(out, e)
	}
}

// moveSegments renames the segment files of dir into a new directory and
// returns a function that moves them back (once; later calls do nothing): readers that need a file fail
// meanwhile, even as root, while the writer keeps its open file.
func moveSegments(tb testing.TB, dir string) (restore func()) {
	tb.Helper()
	aside := tb.TempDir()
	names, err := filepath.Glob(filepath.Join(dir, "[0-9]*"))
	if err != nil || len(names) == 0 {
		tb.Fatalf("no segment files in %s (%v)", dir, err)
	}
	for _, n := range names {
		if err := os.Rename(n, filepath.Join(aside, filepath.Base(n))); err != nil {
			tb.Fatal(err)
		}
	}
	done := false
	return func() {
		if done {
			return
		}
		done = true
		for _, n := range names {
			if err := os.Rename(filepath.Join(aside, filepath.Base(n)), n); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// Iterators and Read give the same events whether they come from the
// in-memory tail or from the segment files (a read-only Log, which has no
// tail), for ranges inside the window, straddling its start, across
// segment rollovers and after the window has moved on.
func TestTailServesSameEventsAsFiles(t *testing.T) {
	cfg := testConfig(t, nil)
	cfg.SegmentSize = 4 << 10
	cfg.TailBytes = 12 << 10 // about three segments
	dir := t.TempDir()
	l := mustOpen(t, dir, cfg)
	defer l.Close()
	ro, err := eventlog.OpenReadOnly(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	var moved int // times the window's start moved on
	var prevFirst eventlog.Index
	n := 0
	for round := 0; round < 60; round++ {
		var batch []*eventlog.Event
		for k := 0; k < 1+round%5; k++ {
			batch = append(batch, keyEvent(n))
			n++
		}
		last := mustAppend(t, l, batch...)
		first, end := eventlog.TailWindow(l)
		if end != last+1 {
			t.Fatalf("round %d: tail ends at %d, want %d", round, end, last+1)
		}
		if first != prevFirst {
			moved++
			prevFirst = first
		}
		if ro.LastIndex() != last {
			t.Fatalf("read-only log sees %d, want %d", ro.LastIndex(), last)
		}
		for _, from := range []eventlog.Index{1, max(first, 2) - 1, first, (first + last) / 2, last} {
			got, want := readAll(t, l, from, 0), readAll(t, ro, from, 0)
			if len(got) != len(want) {
				t.Fatalf("from %d: %d events, want %d", from, len(got), len(want))
			}
			for k := range got {
				if d := sameEvent(got[k], want[k]); d != "" {
					t.Fatalf("round %d, entry %d: %s", round, from+eventlog.Index(k), d)
				}
			}
		}
		for i := max(first, 2) - 1; i <= last; i++ {
			got, err := l.Read(i)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ro.Read(i)
			if err != nil {
				t.Fatal(err)
			}
			if d := sameEvent(got, want); d != "" {
				t.Fatalf("Read(%d): %s", i, d)
			}
		}
	}
	if moved < 10 {
		t.Fatalf("the tail's window moved on %d times, want the test to cover that", moved)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "[0-9]*")); len(segs) < 6 {
		t.Fatalf("%d segments, want the test to cover rollovers", len(segs))
	}
}

// Entries in the tail are read without touching the segment files: with
// the files moved away, an iterator over the window and Read still
// succeed, and only reads from before the window fail. With TailBytes < 0
// every read needs the files.
func TestTailReadsNoFiles(t *testing.T) {
	for _, tailBytes := range []int{16 << 10, -1} {
		t.Run(fmt.Sprint(tailBytes), func(t *testing.T) {
			cfg := testConfig(t, nil)
			cfg.SegmentSize = 4 << 10
			cfg.TailBytes = tailBytes
			dir := t.TempDir()
			l := mustOpen(t, dir, cfg)
			defer l.Close()
			for n := 0; n < 200; n++ {
				mustAppend(t, l, keyEvent(n))
			}
			last := l.LastIndex()
			first, end := eventlog.TailWindow(l)
			if tailBytes < 0 {
				first = last - 20
			} else if first <= 1 || end != last+1 || last+1-first < 20 {
				t.Fatalf("tail holds [%d, %d) of [1, %d]", first, end, last)
			}
			want := readAll(t, l, first, 0)
			restore := moveSegments(t, dir)
			defer restore()

			it := l.NewIterator(first, 0)
			for k := 0; ; k++ {
				_, e, err := it.Next()
				if tailBytes < 0 {
					if err == nil {
						t.Fatal("an iterator read entries with the files moved away and no tail")
					}
					break
				}
				if err == io.EOF {
					if k != len(want) {
						t.Fatalf("read %d entries, want %d", k, len(want))
					}
					break
				}
				if err != nil {
					t.Fatalf("entry %d of the tail: %v", first+eventlog.Index(k), err)
				}
				if d := sameEvent(e, want[k]); d != "" {
					t.Fatalf("entry %d: %s", first+eventlog.Index(k), d)
				}
			}
			it.Close()
			if _, err := l.Read(last); (err == nil) != (tailBytes > 0) {
				t.Fatalf("Read(%d) with the files moved away: %v", last, err)
			}
			it = l.NewIterator(first-1, 0)
			if _, _, err := it.Next(); err == nil {
				t.Fatalf("entry %d, before the tail, read with its file moved away", first-1)
			}
			it.Close()
			restore()
			mustAppend(t, l, keyEvent(200))
			checkEntry(t, l, last+1, 200)
			checkEntry(t, l, 1, 0)
		})
	}
}

// NewDiskIterator reads the files even for entries in the tail: a record
// damaged on disk after it was appended is reported, not hidden by the
// copy in memory.
func TestDiskIteratorReadsFiles(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, testConfig(t, nil))
	defer l.Close()
	last := mustAppend(t, l, keyEvent(1), keyEvent(2))
	restore := moveSegments(t, dir)
	it := l.NewDiskIterator(last, 0)
	if _, _, err := it.Next(); err == nil {
		t.Fatal("a disk iterator read an entry with the files moved away")
	}
	it.Close()
	restore()
	got := readAll(t, l, 1, 0)
	it = l.NewDiskIterator(1, 0)
	defer it.Close()
	for k := 0; ; k++ {
		_, e, err := it.Next()
		if err == io.EOF {
			if k != len(got) {
				t.Fatalf("read %d entries, want %d", k, len(got))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if d := sameEvent(e, got[k]); d != "" {
			t.Fatalf("entry %d: %s", k+1, d)
		}
	}
}

// One Append bigger than the tail (a bulk import's batch) empties the
// window rather than copying part of it; the next small Appends fill it
// again, and every entry reads back right.
func TestTailBatchLargerThanWindow(t *testing.T) {
	cfg := testConfig(t, nil)
	cfg.SegmentSize = 64 << 10
	cfg.TailBytes = 8 << 10
	l := mustOpen(t, t.TempDir(), cfg)
	defer l.Close()
	mustAppend(t, l, keyEvent(0))
	var batch []*eventlog.Event
	for n := 1; n < 300; n++ {
		batch = append(batch, keyEvent(n))
	}
	last := mustAppend(t, l, batch...)
	if first, end := eventlog.TailWindow(l); first != last+1 || end != last+1 {
		t.Fatalf("tail holds [%d, %d) after a batch bigger than it, want nothing", first, end)
	}
	mustAppend(t, l, keyEvent(300))
	last = mustAppend(t, l, keyEvent(301), keyEvent(302))
	if first, end := eventlog.TailWindow(l); first != last-2 || end != last+1 {
		t.Fatalf("tail holds [%d, %d), want [%d, %d)", first, end, last-2, last+1)
	}
	for i := eventlog.Index(1); i <= last; i++ {
		checkEntry(t, l, i, int(i)-1)
	}
	for k, e := range readAll(t, l, 1, 0) {
		if d := sameEvent(e, readAll(t, l, eventlog.Index(k+1), eventlog.Index(k+2))[0]); d != "" {
			t.Fatalf("entry %d: %s", k+1, d)
		}
	}
}

// The tail is shared by every reader: an iterator's events alias it and
// are read-only; writing to one (against the Iterator contract) is caught
// by the checksum on the next read of that entry, never served as a
// different key. Read's events are copies the caller may modify.
func TestTailSharedRecordsAreProtected(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig(t, nil))
	defer l.Close()
	last := mustAppend(t, l, keyEvent(1), keyEvent(2))
	e, err := l.Read(last)
	if err != nil {
		t.Fatal(err)
	}
	e.Key[0] ^= 0xff
	checkEntry(t, l, last, 2)

	ev := readAll(t, l, last, 0)[0]
	ev.Key[0] ^= 0xff // breaks the contract
	if _, err := l.Read(last); !errors.Is(err, eventlog.ErrCorrupt) {
		t.Fatalf("Read after an iterator's event was modified: %v, want ErrCorrupt", err)
	}
	it := l.NewIterator(last, 0)
	if _, _, err := it.Next(); !errors.Is(err, eventlog.ErrCorrupt) {
		t.Fatalf("iterator after an iterator's event was modified: %v, want ErrCorrupt", err)
	}
	it.Close()
	checkEntry(t, l, last-1, 1)
}

// Readers following the log while it is appended to, as the projections
// do (run with -race): every entry comes back as appended while the tail
// moves on under them.
func TestTailConcurrentFollowers(t *testing.T) {
	cfg := testConfig(t, nil)
	cfg.SegmentSize = 8 << 10
	cfg.TailBytes = 16 << 10
	l := mustOpen(t, t.TempDir(), cfg)
	defer l.Close()
	const appenders, perAppender = 4, 150
	total := eventlog.Index(appenders * perAppender)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := eventlog.Index(1)
			for next <= total {
				ch := l.Notify()
				if l.LastIndex() < next {
					<-ch
					continue
				}
				it := l.NewIterator(next, 0)
				for {
					idx, e, err := it.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						errs <- err
						return
					}
					// Each event's key names its peer (see keyEvent).
					var n int
					if _, err := fmt.Sscanf(e.Peer, "peer-%d", &n); err != nil || !bytes.Equal(e.Key, keyBytes(n)) {
						errs <- fmt.Errorf("entry %d: peer %q and key do not match", idx, e.Peer)
						return
					}
					next = idx + 1
				}
			}
		}()
	}
	for a := 0; a < appenders; a++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < perAppender; k++ {
				if _, err := l.Append(ctx, keyEvent(a*perAppender+k)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Reading the newest entries from the tail allocates the events and the
// iterator, nothing per byte read: no read buffer, no record copy.
func TestTailIteratorAllocatesOnlyEvents(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig(t, nil))
	defer l.Close()
	for n := 0; n < 50; n++ {
		mustAppend(t, l, keyEvent(n))
	}
	last := l.LastIndex()
	read := func(int) {
		it := l.NewIterator(last-3, 0)
		defer it.Close()
		for {
			_, _, err := it.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	read(0)
	per := bytesAllocated(50, read)
	t.Logf("%d bytes allocated per read of 4 entries", per)
	// 4 events (about 150 bytes each with the peer string) and an
	// iterator; the keys are 80 to 300 bytes each, so one copy would
	// show.
	if per > 1200 {
		t.Errorf("reading 4 entries from the tail allocated %d bytes, want under 1200", per)
	}
}
