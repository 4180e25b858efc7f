package projections

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// fillSorter adds n pairs of 16+1000 bytes in descending key order and
// checks that they come back sorted with their values.
func fillSorter(t *testing.T, s *sorter, n int) {
	t.Helper()
	k, v := make([]byte, 16), make([]byte, 1000)
	for i := range n {
		binary.BigEndian.PutUint64(k, uint64(n-i))
		binary.BigEndian.PutUint64(v, uint64(n-i))
		if err := s.add(k, v); err != nil {
			t.Fatal(err)
		}
	}
	it, err := s.iter()
	if err != nil {
		t.Fatal(err)
	}
	defer it.close()
	for i := 1; ; i++ {
		k, v, ok, err := it.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			if i != n+1 {
				t.Fatalf("%d pairs back of %d", i-1, n)
			}
			return
		}
		if got := binary.BigEndian.Uint64(k); got != uint64(i) || !bytes.Equal(k[:8], v[:8]) {
			t.Fatalf("pair %d: key %d, value %x", i, got, v[:8])
		}
	}
}

// TestSorterAdvisesHugePages: the sort buffer, entries and radix scratch of
// a sorter with a budget of at least a huge page are whole huge pages and
// advised to use them; smaller mappings are neither rounded nor advised.
func TestSorterAdvisesHugePages(t *testing.T) {
	var advised []int
	s := newSorter(t.TempDir(), "t", 3<<20) // buffer 3 MiB -> 4 MiB; entries 1.5 MiB
	s.adviseHuge = func(m []byte) error { advised = append(advised, len(m)); return nil }
	defer s.free()
	fillSorter(t, s, 10_000) // ≈ 10 MB: spills, radix sort
	if len(s.runs) < 2 {
		t.Fatalf("%d runs: the test needs spills", len(s.runs))
	}
	for _, n := range advised {
		if n%hugePageBytes != 0 {
			t.Fatalf("advised a mapping of %d bytes, not whole huge pages", n)
		}
	}
	// Only the buffer: entries and scratch (1.5 MiB each) are below a
	// huge page.
	if len(advised) != 1 || advised[0] != 4<<20 {
		t.Fatalf("advised %v: want the 3 MiB buffer as 4 MiB, and nothing else", advised)
	}
	if s.hugeAdvised != len(advised) || s.hugeFailed != 0 {
		t.Fatalf("counted %d advised, %d failed; want %d, 0", s.hugeAdvised, s.hugeFailed, len(advised))
	}
}

// TestSorterWithoutHugePages: where the advice fails (no transparent huge
// pages, not Linux) the sort works as before.
func TestSorterWithoutHugePages(t *testing.T) {
	s := newSorter(t.TempDir(), "t", 4<<20)
	s.adviseHuge = func([]byte) error { return errors.New("EINVAL") }
	defer s.free()
	fillSorter(t, s, 20_000)
	if s.hugeAdvised == 0 || s.hugeFailed != s.hugeAdvised {
		t.Fatalf("advised %d, failed %d: the failing advice was not used", s.hugeAdvised, s.hugeFailed)
	}
}

// TestSorterMemoryHugePagesInKernel: on Linux with transparent huge pages
// in "madvise" or "always" mode the kernel marks the sort buffer's mapping
// for huge pages (VmFlags "hg" in /proc/self/smaps).
func TestSorterMemoryHugePagesInKernel(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("transparent huge pages are Linux's")
	}
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || !(strings.Contains(string(mode), "[madvise]") || strings.Contains(string(mode), "[always]")) {
		t.Skipf("transparent huge pages not in madvise or always mode (%q, %v)", mode, err)
	}
	s := newSorter(t.TempDir(), "t", 4<<20)
	defer s.free()
	if err := s.add([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if s.hugeFailed != 0 {
		t.Fatalf("madvise(MADV_HUGEPAGE) failed with THP mode %q", mode)
	}
	flags, err := vmFlags(uintptr(unsafe.Pointer(&s.bufMem[0])))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(" "+flags+" ", " hg ") {
		t.Fatalf("sort buffer's mapping has VmFlags %q, no hg", flags)
	}
}

// vmFlags returns the VmFlags line of the mapping holding addr.
func vmFlags(addr uintptr) (string, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		// A mapping's header starts with its range, "lo-hi"; its
		// fields' lines start with a name and a colon.
		if r, _, _ := strings.Cut(line, " "); !strings.HasSuffix(r, ":") {
			var lo, hi uintptr
			if _, err := fmt.Sscanf(r, "%x-%x", &lo, &hi); err == nil {
				in = lo <= addr && addr < hi
				continue
			}
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmFlags:")), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no mapping holds %#x", addr)
}

// TestBulkArenasMapped: arenas come from mappings outside the Go heap and
// are recycled; those the free list has no room for are unmapped at once,
// and release unmaps the rest, after which get hands out Go memory.
func TestBulkArenasMapped(t *testing.T) {
	ar := newBulkArenas()
	var b bulkBatch
	for range bulkArenasKept + 2 {
		m := ar.get()
		if cap(m) != bulkArenaBytes || len(m) != 0 {
			t.Fatalf("arena of len %d, cap %d", len(m), cap(m))
		}
		m = append(m, "written"...) // the mapping is writable
		b.arenas = append(b.arenas, m)
	}
	if len(ar.mapped) != bulkArenasKept+2 {
		t.Fatalf("%d arenas mapped, want %d", len(ar.mapped), bulkArenasKept+2)
	}
	ar.put(&b)
	if len(ar.mapped) != bulkArenasKept || len(ar.free) != bulkArenasKept {
		t.Fatalf("after put: %d mapped, %d kept; want %d each (the rest unmapped)", len(ar.mapped), len(ar.free), bulkArenasKept)
	}
	m := ar.get()
	if len(ar.mapped) != bulkArenasKept || !slices.ContainsFunc(ar.mapped, func(mm []byte) bool { return unsafe.SliceData(mm) == unsafe.SliceData(m) }) {
		t.Fatal("get mapped a new arena while one was kept")
	}
	ar.release()
	if len(ar.mapped) != 0 || len(ar.free) != 0 {
		t.Fatalf("after release: %d mapped, %d kept", len(ar.mapped), len(ar.free))
	}
	if m := ar.get(); cap(m) != bulkArenaBytes || len(ar.mapped) != 0 {
		t.Fatalf("after release get mapped memory (%d mapped)", len(ar.mapped))
	}
}

// TestBulkArenasMapFails: where mapping fails the arenas are Go memory and
// preparing works as before.
func TestBulkArenasMapFails(t *testing.T) {
	ar := newBulkArenas()
	ar.mapArena = func(int) ([]byte, error) { return nil, errors.New("ENOMEM") }
	m := ar.get()
	if cap(m) != bulkArenaBytes || len(ar.mapped) != 0 {
		t.Fatalf("arena cap %d, %d mapped", cap(m), len(ar.mapped))
	}
	m = append(m, "written"...)
	ar.put(&bulkBatch{arenas: [][]byte{m}})
	ar.release()
}
