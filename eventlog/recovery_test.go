package eventlog_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// segmentFiles returns the segment files of dir in log order.
func segmentFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, strings.Repeat("[0-9]", 20)))
	if err != nil || len(segs) == 0 {
		tb.Fatalf("no segments in %s: %v", dir, err)
	}
	return segs
}

func fileSize(tb testing.TB, path string) int64 {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Size()
}

// copyLog copies the segment files of src into a new directory.
func copyLog(tb testing.TB, src string) string {
	tb.Helper()
	dst := tb.TempDir()
	for _, p := range segmentFiles(tb, src) {
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, filepath.Base(p)), b, 0o640); err != nil {
			tb.Fatal(err)
		}
	}
	return dst
}

// buildLog writes n entries into one segment and returns the directory,
// the segment file, and the byte offset where entry n starts.
func buildLog(tb testing.TB, n int) (dir, seg string, lastOff int64) {
	tb.Helper()
	dir = tb.TempDir()
	cfg := testConfig(tb, nil)
	cfg.SegmentSize = 1 << 20
	l := mustOpen(tb, dir, cfg)
	for k := 1; k < n; k++ {
		mustAppend(tb, l, keyEvent(k))
	}
	seg = segmentFiles(tb, dir)[0]
	lastOff = fileSize(tb, seg)
	mustAppend(tb, l, keyEvent(n))
	if err := l.Close(); err != nil {
		tb.Fatal(err)
	}
	return dir, seg, lastOff
}

// reopenExpect opens dir, checks it holds entries 1..want and that a Warn
// naming index warnIndex was logged (warnIndex 0: no Warn), then appends
// and reopens to check the repaired log takes appends.
func reopenExpect(t *testing.T, dir string, want int, warnIndex int) {
	t.Helper()
	var buf logBuffer
	cfg := testConfig(t, &buf)
	cfg.SegmentSize = 1 << 20
	l, err := eventlog.Open(dir, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	warns := buf.lines(`"level":"warn"`, "truncated torn log tail")
	if warnIndex == 0 && len(warns) != 0 {
		t.Fatalf("unexpected Warn: %q", warns)
	}
	if warnIndex != 0 && (len(warns) != 1 || !strings.Contains(warns[0], fmt.Sprintf(`"index":%d,`, warnIndex))) {
		t.Fatalf("Warn lines %q, want one naming index %d", warns, warnIndex)
	}
	if got := l.LastIndex(); got != eventlog.Index(want) {
		t.Fatalf("LastIndex = %d, want %d", got, want)
	}
	for k := 1; k <= want; k++ {
		checkEntry(t, l, eventlog.Index(k), k)
	}
	if got := mustAppend(t, l, keyEvent(want+1)); got != eventlog.Index(want+1) {
		t.Fatalf("Append after recovery returned %d, want %d", got, want+1)
	}
	l.Close()
	var buf2 logBuffer
	cfg2 := testConfig(t, &buf2)
	l = mustOpen(t, dir, cfg2)
	defer l.Close()
	if warns := buf2.lines(`"level":"warn"`); len(warns) != 0 {
		t.Fatalf("second reopen warned: %q", warns)
	}
	if got := l.LastIndex(); got != eventlog.Index(want+1) {
		t.Fatalf("LastIndex after second reopen = %d, want %d", got, want+1)
	}
	checkEntry(t, l, eventlog.Index(want+1), want+1)
}

// TestTornTail cuts the last entry at every byte.
func TestTornTail(t *testing.T) {
	const n = 10
	src, seg, lastOff := buildLog(t, n)
	size := fileSize(t, seg)
	if size-lastOff < 50 {
		t.Fatalf("last entry only %d bytes", size-lastOff)
	}
	for cut := lastOff; cut <= size; cut++ {
		t.Run(fmt.Sprintf("cut=%d", cut), func(t *testing.T) {
			dir := copyLog(t, src)
			if err := os.Truncate(filepath.Join(dir, filepath.Base(seg)), cut); err != nil {
				t.Fatal(err)
			}
			switch cut {
			case lastOff: // a clean end after entry n-1
				reopenExpect(t, dir, n-1, 0)
			case size:
				reopenExpect(t, dir, n, 0)
			default:
				reopenExpect(t, dir, n-1, n)
			}
		})
	}
}

// TestCorruptLastEntry flips each byte of the last entry: its checksum (or
// framing) fails, and with nothing valid after it, it is a torn tail.
func TestCorruptLastEntry(t *testing.T) {
	const n = 6
	src, seg, lastOff := buildLog(t, n)
	size := fileSize(t, seg)
	for off := lastOff; off < size; off++ {
		t.Run(fmt.Sprintf("byte=%d", off), func(t *testing.T) {
			dir := copyLog(t, src)
			flipByte(t, filepath.Join(dir, filepath.Base(seg)), off)
			reopenExpect(t, dir, n-1, n)
		})
	}
}

func flipByte(tb testing.TB, path string, off int64) {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	b[off] ^= 0x55
	if err := os.WriteFile(path, b, 0o640); err != nil {
		tb.Fatal(err)
	}
}

// TestZeroTail: after a power loss the file may have grown by zeros that
// never received their data. tidwall/wal parses each zero as an empty entry.
func TestZeroTail(t *testing.T) {
	const n = 5
	src, seg, _ := buildLog(t, n)
	dir := copyLog(t, src)
	path := filepath.Join(dir, filepath.Base(seg))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 3000))
	f.Close()
	reopenExpect(t, dir, n, n+1)
}

// TestCorruptMiddle: a bad entry with good ones after it is damage, not a
// torn tail; Open must not silently drop the acknowledged entries.
func TestCorruptMiddle(t *testing.T) {
	const n = 8
	src, seg, _ := buildLog(t, n)
	// Find the offsets of the entries by rebuilding the prefix sizes.
	offs := entryOffsets(t, filepath.Join(src, filepath.Base(seg)))
	if len(offs) != n+1 {
		t.Fatalf("%d offsets, want %d", len(offs), n+1)
	}
	t.Run("FlippedByte", func(t *testing.T) {
		dir := copyLog(t, src)
		flipByte(t, filepath.Join(dir, filepath.Base(seg)), offs[4]+5) // entry 5
		var buf logBuffer
		_, err := eventlog.Open(dir, testConfig(t, &buf))
		if !errors.Is(err, eventlog.ErrCorrupt) || !strings.Contains(err.Error(), "index 5") {
			t.Fatalf("Open: err = %v, want ErrCorrupt naming index 5", err)
		}
		if got := fileSize(t, filepath.Join(dir, filepath.Base(seg))); got != offs[n] {
			t.Fatalf("Open changed the damaged file: size %d, want %d", got, offs[n])
		}
	})
	t.Run("ZeroedPage", func(t *testing.T) {
		// An entry that never reached the disk while later ones did: a
		// torn write of an unacknowledged batch (pages are written back
		// in any order before the fsync).
		dir := copyLog(t, src)
		path := filepath.Join(dir, filepath.Base(seg))
		b, _ := os.ReadFile(path)
		clear(b[offs[4]:offs[5]])
		os.WriteFile(path, b, 0o640)
		reopenExpect(t, dir, 4, 5)
	})
}

// entryOffsets parses tidwall/wal's framing: uvarint length, record.
func entryOffsets(tb testing.TB, path string) []int64 {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var offs []int64
	var off int64
	for off < int64(len(b)) {
		offs = append(offs, off)
		var size, shift uint64
		for {
			c := b[off]
			off++
			size |= uint64(c&0x7f) << shift
			shift += 7
			if c < 0x80 {
				break
			}
		}
		off += int64(size)
	}
	return append(offs, off)
}

// TestCorruptSealedSegment: damage in an older segment is found when read.
func TestCorruptSealedSegment(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, nil)
	l := mustOpen(t, dir, cfg)
	for k := 1; k <= 100; k++ {
		mustAppend(t, l, keyEvent(k))
	}
	l.Close()
	segs := segmentFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	flipByte(t, segs[0], 10) // inside entry 1
	l = mustOpen(t, dir, testConfig(t, nil))
	defer l.Close()
	if _, err := l.Read(1); !errors.Is(err, eventlog.ErrCorrupt) {
		t.Fatalf("Read(1): err = %v, want ErrCorrupt", err)
	}
	checkEntry(t, l, 2, 2)
	it := l.NewIterator(0, 0)
	_, _, err := it.Next()
	if !errors.Is(err, eventlog.ErrCorrupt) {
		t.Fatalf("Next: err = %v, want ErrCorrupt", err)
	}
	if _, _, err2 := it.Next(); err2 != err {
		t.Fatalf("second Next: err = %v, want the same sticky error", err2)
	}
	var got []byte
	it = l.NewIterator(2, 4)
	for {
		_, e, err := it.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.Key...)
	}
	if want := append(keyBytes(2), keyBytes(3)...); !bytes.Equal(got, want) {
		t.Fatalf("entries 2..3 differ")
	}
}
