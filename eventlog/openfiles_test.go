package eventlog_test

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// openFilesLog returns a log of n entries in many small segments (about
// 20 entries each), with no in-memory tail so that every Read goes to the
// files, keeping maxOpen of them open, and the first index of each
// segment.
func openFilesLog(t *testing.T, n, maxOpen int) (l *eventlog.Log, dir string, firsts []eventlog.Index) {
	t.Helper()
	cfg := testConfig(t, nil)
	cfg.SegmentSize = 4 << 10
	cfg.TailBytes = -1
	cfg.MaxOpenSegments = maxOpen
	dir = t.TempDir()
	l = mustOpen(t, dir, cfg)
	t.Cleanup(func() { l.Close() })
	for k := 0; k < n; k += 50 {
		var batch []*eventlog.Event
		for j := k; j < min(k+50, n); j++ {
			batch = append(batch, keyEvent(j))
		}
		mustAppend(t, l, batch...)
	}
	for _, p := range segmentFiles(t, dir) {
		first, err := strconv.ParseUint(filepath.Base(p), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		firsts = append(firsts, eventlog.Index(first))
	}
	if len(firsts) < 10 {
		t.Fatalf("%d entries in %d segments, want at least 10", n, len(firsts))
	}
	return l, dir, firsts
}

// checkOpenSegments fails unless l keeps wantCached segment files cached
// and no other open.
func checkOpenSegments(t *testing.T, l *eventlog.Log, wantCached int) {
	t.Helper()
	if cached, open, _, _ := eventlog.OpenSegments(l); cached != wantCached || open != wantCached {
		t.Fatalf("%d segment files cached, %d open; want %d, %d", cached, open, wantCached, wantCached)
	}
}

// Reads from several goroutines at once, while the writer appends, return
// the right events through a cache of two segment files that evicts all
// the time, and find their file cached for repeated reads of a segment.
func TestReadKeepsSegmentsOpen(t *testing.T) {
	const n = 600
	l, _, _ := openFilesLog(t, n, 2)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // appends meanwhile: the tail segment's cached handle sees them
		defer wg.Done()
		for k := n; k < n+200; k++ {
			if _, err := l.Append(t.Context(), keyEvent(k)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for range 500 {
				// Runs of reads near each other, as a lookup's would be,
				// so that some find their segment cached.
				k := rng.Intn(int(l.LastIndex()))
				for j := k; j < k+3 && j < int(l.LastIndex()); j++ {
					if err := readEntry(l, eventlog.Index(j+1), j); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	cached, open, hits, opens := eventlog.OpenSegments(l)
	t.Logf("%d cached, %d open, %d hits, %d opens", cached, open, hits, opens)
	if hits == 0 || opens <= 2 {
		t.Fatalf("%d reads found their segment file open and %d opened one; want both above 0 and 2", hits, opens)
	}
	checkOpenSegments(t, l, 2)
}

// readEntry is checkEntry for goroutines other than the test's.
func readEntry(l *eventlog.Log, i eventlog.Index, n int) error {
	e, err := l.Read(i)
	if err != nil {
		return fmt.Errorf("Read(%d): %w", i, err)
	}
	if want := keyEvent(n); e.Peer != want.Peer || string(e.Key) != string(want.Key) {
		return fmt.Errorf("Read(%d) = peer %q, %d key bytes; want %q, %d", i, e.Peer, len(e.Key), want.Peer, len(want.Key))
	}
	return nil
}

// At most MaxOpenSegments segment files stay open between reads, and the
// one read least recently is closed first.
func TestReadOpenSegmentsBounded(t *testing.T) {
	l, _, firsts := openFilesLog(t, 600, 3)
	read := func(seg int, wantHit bool) {
		t.Helper()
		_, _, hits, _ := eventlog.OpenSegments(l)
		checkEntry(t, l, firsts[seg], int(firsts[seg])-1)
		_, _, after, _ := eventlog.OpenSegments(l)
		if hit := after > hits; hit != wantHit {
			t.Fatalf("read of segment %d: found its file open %v, want %v", seg, hit, wantHit)
		}
	}
	for seg := range firsts {
		read(seg, false)
		checkOpenSegments(t, l, min(seg+1, 3))
	}
	// Now the last three are open, last-2 the least recently read.
	last := len(firsts) - 1
	read(last-2, true)
	read(0, false) // evicts last-1
	read(last, true)
	read(last-2, true)
	read(last-1, false)
	checkOpenSegments(t, l, 3)
}

// After Close, Read fails with ErrClosed and no segment file is left open,
// for a Log opened for appending and for a read-only one.
func TestCloseClosesSegmentFiles(t *testing.T) {
	l, dir, firsts := openFilesLog(t, 600, 4)
	ro, err := eventlog.OpenReadOnly(dir, eventlog.Config{MaxOpenSegments: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, log := range []*eventlog.Log{l, ro} {
		for k, first := range firsts {
			checkEntry(t, log, first, int(first)-1)
			if k > 0 {
				checkEntry(t, log, first-1, int(first)-2)
			}
		}
		checkOpenSegments(t, log, 4)
	}
	if n := filesOpenIn(t, dir); n < 8 {
		t.Fatalf("%d files open in %s, want at least the 8 cached", n, dir)
	}
	for _, log := range []*eventlog.Log{l, ro} {
		if err := log.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := log.Read(firsts[1]); !errors.Is(err, eventlog.ErrClosed) {
			t.Fatalf("Read after Close: %v, want ErrClosed", err)
		}
		checkOpenSegments(t, log, 0)
	}
	if n := filesOpenIn(t, dir); n != 0 {
		t.Fatalf("%d files left open in %s after Close", n, dir)
	}
}

// filesOpenIn counts this process's file descriptors of files in dir,
// from /proc (skipping the test where there is none).
func filesOpenIn(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list open files: %v", err)
	}
	dir, err = filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			n++
		}
	}
	return n
}

// With MaxOpenSegments negative no segment file stays open: every read
// opens its file, as before there was a cache, and reads still work.
func TestReadKeepsNoSegmentsOpen(t *testing.T) {
	l, _, firsts := openFilesLog(t, 600, -1)
	for range 2 {
		for _, first := range firsts {
			checkEntry(t, l, first, int(first)-1)
			checkOpenSegments(t, l, 0)
		}
	}
	if _, _, hits, opens := eventlog.OpenSegments(l); hits != 0 || opens != 2*len(firsts) {
		t.Fatalf("%d reads found their file open, %d opened it; want 0, %d", hits, opens, 2*len(firsts))
	}
}

// Zero means the default; too many is refused.
func TestMaxOpenSegmentsConfig(t *testing.T) {
	if got := eventlog.DefaultConfig().MaxOpenSegments; got != eventlog.DefaultMaxOpenSegments {
		t.Fatalf("DefaultConfig().MaxOpenSegments = %d, want %d", got, eventlog.DefaultMaxOpenSegments)
	}
	for _, v := range []int{-1, 0, 1, 1 << 16} {
		if err := (eventlog.Config{MaxOpenSegments: v}).Validate(); err != nil {
			t.Errorf("Validate with MaxOpenSegments %d: %v", v, err)
		}
	}
	err := eventlog.Config{MaxOpenSegments: 1<<16 + 1}.Validate()
	var ce *eventlog.ConfigError
	if !errors.As(err, &ce) || ce.Field != "MaxOpenSegments" {
		t.Fatalf("Validate with MaxOpenSegments %d = %v, want a *ConfigError for it", 1<<16+1, err)
	}
	// The zero value keeps DefaultMaxOpenSegments open.
	l, _, firsts := openFilesLog(t, 600, 0)
	for _, first := range firsts {
		checkEntry(t, l, first, int(first)-1)
	}
	checkOpenSegments(t, l, min(len(firsts), eventlog.DefaultMaxOpenSegments))
}
