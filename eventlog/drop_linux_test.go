package eventlog_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// cachedPages returns how many of path's pages are in the page cache.
func cachedPages(tb testing.TB, path string) int {
	tb.Helper()
	n, _ := testenv.PagesCached(tb, path)
	return n
}

// TestDropWrittenLeavesSegmentsUncached: with DropWritten, the pages of
// what was appended leave the page cache once durable, every sealed segment
// whole and the tail segment but for its last pages; the entries still read
// back (from the disk), and appending on after a reopen goes on dropping.
// Without it the pages stay cached.
func TestDropWrittenLeavesSegmentsUncached(t *testing.T) {
	if !testenv.DropsPages(t, t.TempDir()) {
		t.Skip("this file system keeps clean pages on POSIX_FADV_DONTNEED")
	}
	const segBytes = 256 << 10
	run := func(t *testing.T, drop bool) (sealed, tail int) {
		dir := filepath.Join(t.TempDir(), "log")
		cfg := testConfig(t, nil)
		cfg.NoSync = false // only durable pages are dropped
		cfg.SegmentSize = segBytes
		cfg.DropWritten = drop
		n := 0
		for round := 0; round < 2; round++ { // the second after a reopen
			l := mustOpen(t, dir, cfg)
			for b := 0; b < 8; b++ {
				var evs []*eventlog.Event
				for k := 0; k < 100; k++ {
					n++
					e := keyEvent(n)
					e.Key = append(e.Key, make([]byte, 1000)...)
					evs = append(evs, e)
				}
				mustAppend(t, l, evs...)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
		}
		segs := segmentFiles(t, dir)
		if len(segs) < 4 {
			t.Fatalf("%d segments, want at least 4", len(segs))
		}
		for _, p := range segs[:len(segs)-1] {
			sealed += cachedPages(t, p)
		}
		tail = cachedPages(t, segs[len(segs)-1])
		// Everything reads back.
		l, err := eventlog.OpenReadOnly(dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if got, want := l.LastIndex(), eventlog.Index(n); got != want {
			t.Fatalf("LastIndex = %d, want %d", got, want)
		}
		for i := eventlog.Index(1); i <= eventlog.Index(n); i += 97 {
			if _, err := l.Read(i); err != nil {
				t.Fatalf("Read(%d): %v", i, err)
			}
		}
		return sealed, tail
	}
	t.Run("Drop", func(t *testing.T) {
		sealed, tail := run(t, true)
		if sealed != 0 {
			t.Errorf("sealed segments: %d pages cached, want 0", sealed)
		}
		// The tail keeps at most its last partial page, or a large folio
		// reaching past the last whole page.
		if max := (2 << 20) / os.Getpagesize(); tail > max {
			t.Errorf("tail segment: %d pages cached, want at most %d", tail, max)
		}
		t.Logf("cached after the appends: sealed %d, tail %d pages", sealed, tail)
	})
	t.Run("Keep", func(t *testing.T) {
		sealed, _ := run(t, false)
		if sealed == 0 {
			t.Errorf("without DropWritten: sealed segments have no pages cached")
		}
	})
}
