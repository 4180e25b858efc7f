package eventlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// testSegments writes n small files and returns them as segments; file k
// holds the byte 'a'+k.
func testSegments(t *testing.T, n int) []*segment {
	t.Helper()
	dir := t.TempDir()
	var segs []*segment
	for k := range n {
		s := &segment{first: Index(k + 1), path: filepath.Join(dir, segmentName(Index(k+1)))}
		if err := os.WriteFile(s.path, []byte{byte('a' + k)}, 0o640); err != nil {
			t.Fatal(err)
		}
		segs = append(segs, s)
	}
	return segs
}

// readByte returns the byte h's file holds, or the error reading it.
func readByte(h *openFile) (byte, error) {
	var b [1]byte
	_, err := h.f.ReadAt(b[:], 0)
	return b[0], err
}

// mustAcquire is c.acquire(s), failing the test on an error.
func mustAcquire(t *testing.T, c *openFiles, s *segment) *openFile {
	t.Helper()
	h, err := c.acquire(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func checkOpen(t *testing.T, c *openFiles, wantCached, wantOpen int) {
	t.Helper()
	if cached, open, _, _ := c.stats(); cached != wantCached || open != wantOpen {
		t.Fatalf("%d handles cached, %d open; want %d, %d", cached, open, wantCached, wantOpen)
	}
}

// A handle evicted while in use stays open for its user, who reads on,
// and closes when released; an idle one closes at eviction.
func TestOpenFilesEvictedInUse(t *testing.T) {
	segs := testSegments(t, 3)
	c := newOpenFiles(1)
	a := mustAcquire(t, c, segs[0])
	b := mustAcquire(t, c, segs[1]) // evicts a, in use
	checkOpen(t, c, 1, 2)
	if got, err := readByte(a); err != nil || got != 'a' {
		t.Fatalf("reading the evicted handle in use: %q, %v; want 'a'", got, err)
	}
	c.release(a)
	if _, err := readByte(a); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("reading the evicted handle after its release: %v, want os.ErrClosed", err)
	}
	checkOpen(t, c, 1, 1)
	c.release(b) // idle, still cached
	if got, err := readByte(b); err != nil || got != 'b' {
		t.Fatalf("reading the idle cached handle: %q, %v; want 'b'", got, err)
	}
	again := mustAcquire(t, c, segs[1])
	if again != b {
		t.Fatal("acquire of a cached segment opened it again")
	}
	c.release(again)
	mustAcquire(t, c, segs[2]) // evicts b, idle
	if _, err := readByte(b); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("reading the idle handle after its eviction: %v, want os.ErrClosed", err)
	}
	checkOpen(t, c, 1, 1)
}

// close closes the idle handles at once and those in use at their
// release, and acquire fails with ErrClosed afterwards.
func TestOpenFilesClose(t *testing.T) {
	segs := testSegments(t, 3)
	c := newOpenFiles(4)
	busy := mustAcquire(t, c, segs[0])
	idle := mustAcquire(t, c, segs[1])
	c.release(idle)
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := readByte(idle); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("reading an idle handle after close: %v, want os.ErrClosed", err)
	}
	if got, err := readByte(busy); err != nil || got != 'a' {
		t.Fatalf("reading a handle in use after close: %q, %v; want 'a'", got, err)
	}
	checkOpen(t, c, 0, 1)
	for _, s := range segs {
		if h, err := c.acquire(s); !errors.Is(err, ErrClosed) {
			t.Fatalf("acquire of %s after close: %v, %v; want ErrClosed", s.path, h, err)
		}
	}
	c.release(busy)
	if _, err := readByte(busy); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("reading the handle after its release: %v, want os.ErrClosed", err)
	}
	checkOpen(t, c, 0, 0)
}

// With nothing to keep (Config.MaxOpenSegments < 0), every acquire opens
// the file and every release closes it.
func TestOpenFilesKeepNone(t *testing.T) {
	segs := testSegments(t, 1)
	c := newOpenFiles(0)
	for round := range 3 {
		h := mustAcquire(t, c, segs[0])
		checkOpen(t, c, 0, 1)
		c.release(h)
		if _, err := readByte(h); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("round %d: reading after release: %v, want os.ErrClosed", round, err)
		}
		checkOpen(t, c, 0, 0)
	}
	if _, _, hits, opens := c.stats(); hits != 0 || opens != 3 {
		t.Fatalf("%d hits, %d opens; want 0, 3", hits, opens)
	}
}

// Many goroutines acquiring and releasing a few segments through a small
// cache always read their own segment's file, and leave at most keep
// handles open (run with -race).
func TestOpenFilesConcurrent(t *testing.T) {
	segs := testSegments(t, 5)
	c := newOpenFiles(2)
	errs := make(chan error, 8)
	for g := range cap(errs) {
		go func() {
			for n := range 2000 {
				k := (g*7 + n*n) % len(segs)
				h, err := c.acquire(segs[k])
				if err != nil {
					errs <- err
					return
				}
				got, err := readByte(h)
				c.release(h)
				if err != nil || got != byte('a'+k) {
					errs <- fmt.Errorf("goroutine %d read %q from segment %d: %v", g, got, k, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	checkOpen(t, c, 2, 2)
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	checkOpen(t, c, 0, 0)
}

// A segment file that cannot be opened is an error, and nothing is kept.
func TestOpenFilesMissing(t *testing.T) {
	segs := testSegments(t, 1)
	if err := os.Remove(segs[0].path); err != nil {
		t.Fatal(err)
	}
	c := newOpenFiles(2)
	if h, err := c.acquire(segs[0]); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("acquire of a missing file: %v, %v; want os.ErrNotExist", h, err)
	}
	checkOpen(t, c, 0, 0)
}
