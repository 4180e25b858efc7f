package eventlog_test

import (
	"io"
	"runtime"
	"testing"
)

// An iterator over the few newest entries (what a projection following the
// log reads after every group commit) allocates about what it reads, not
// its full 256 KiB read buffer and record slab.
func TestIteratorTailAllocatesLittle(t *testing.T) {
	cfg := testConfig(t, nil)
	cfg.SegmentSize = 4 << 20
	l := mustOpen(t, t.TempDir(), cfg)
	defer l.Close()
	for n := range 200 {
		mustAppend(t, l, keyEvent(n))
	}
	last := l.LastIndex()
	read := func() {
		it := l.NewIterator(last-1, last+1)
		defer it.Close()
		for k := 0; ; k++ {
			idx, e, err := it.Next()
			if err == io.EOF {
				if k != 2 {
					t.Fatalf("read %d entries, want 2", k)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := keyEvent(int(idx) - 1); string(e.Key) != string(want.Key) {
				t.Fatalf("entry %d: wrong key", idx)
			}
		}
	}
	read() // warm up: the segment's offsets are learned once
	perRead := bytesAllocated(10, func(int) { read() })
	t.Logf("%d bytes allocated per tail read", perRead)
	if perRead > 32<<10 {
		t.Errorf("a read of the 2 newest entries allocated %d bytes, want under 32 KiB", perRead)
	}
}

// A reader following the log finds the offsets of newly appended entries
// in memory (the writer notes them): it neither opens nor rescans the
// segment file for them, with a 64 KiB read buffer each time.
func TestFollowingReaderAllocatesLittle(t *testing.T) {
	cfg := testConfig(t, nil)
	cfg.SegmentSize = 4 << 20
	l := mustOpen(t, t.TempDir(), cfg)
	defer l.Close()
	for n := range 20 {
		mustAppend(t, l, keyEvent(n))
	}
	round := func(n int) {
		last := mustAppend(t, l, keyEvent(n))
		it := l.NewIterator(last, last+1)
		defer it.Close()
		idx, e, err := it.Next()
		if err != nil || idx != last || string(e.Key) != string(keyEvent(n).Key) {
			t.Fatalf("read back %d: index %d, %v", last, idx, err)
		}
	}
	round(20)
	perRound := bytesAllocated(20, func(i int) { round(21 + i) })
	t.Logf("%d bytes allocated per append and read", perRound)
	if perRound > 32<<10 {
		t.Errorf("an append and a read of it allocated %d bytes, want under 32 KiB", perRound)
	}
}

// bytesAllocated returns the bytes allocated on the Go heap per call of
// f(0), f(1), ... f(rounds-1), by every goroutine while they ran.
func bytesAllocated(rounds int, f func(i int)) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range rounds {
		f(i)
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(rounds)
}
