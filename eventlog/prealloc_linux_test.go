package eventlog_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The writer reserves a segment's blocks ahead (fallocate with
// FALLOC_FL_KEEP_SIZE) without changing its size, which marks the log's
// end: the file is as long as its frames, its blocks cover the segment, and
// the log reopens with the same entries.
func TestSegmentsPreallocated(t *testing.T) {
	dir := t.TempDir()
	probe, err := os.Create(filepath.Join(t.TempDir(), "probe"))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if err := syscall.Fallocate(int(probe.Fd()), 1, 0, 1<<20); err != nil {
		t.Skipf("the file system of the temporary directory has no fallocate: %v", err)
	}
	cfg := testConfig(t, nil)
	cfg.SegmentSize = 256 << 10
	l := mustOpen(t, dir, cfg)
	last := mustAppend(t, l, keyEvent(1), keyEvent(2))
	seg := segmentFiles(t, dir)[0]
	var st syscall.Stat_t
	if err := syscall.Stat(seg, &st); err != nil {
		t.Fatal(err)
	}
	frames := readAll(t, l, 1, 0)
	if st.Blocks*512 < int64(cfg.SegmentSize) {
		t.Errorf("%d bytes allocated to the segment, want its %d preallocated", st.Blocks*512, cfg.SegmentSize)
	}
	if st.Size >= 4<<10 {
		t.Errorf("segment of %d bytes after two small entries: the preallocation changed its size", st.Size)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, cfg)
	defer l.Close()
	if l.LastIndex() != last {
		t.Fatalf("reopened log ends at %d, want %d", l.LastIndex(), last)
	}
	for k, e := range readAll(t, l, 1, 0) {
		if d := sameEvent(e, frames[k]); d != "" {
			t.Fatalf("entry %d: %s", k+1, d)
		}
	}
}
