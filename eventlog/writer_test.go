package eventlog_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/tidwall/wal"
)

// The writer keeps tidwall/wal's on-disk format and segment rule, which
// wrote logs before it: a log tidwall/wal wrote opens and takes appends,
// and tidwall/wal reads the result back entry for entry, segment files
// named alike.
func TestTidwallWalCompatible(t *testing.T) {
	dir := t.TempDir()
	const segSize = 4 << 10
	opts := &wal.Options{LogFormat: wal.Binary, SegmentSize: segSize, NoSync: true}
	w, err := wal.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1700000000, 0)
	for n := 0; n < 40; n++ {
		e := keyEvent(n)
		e.Time = base.Add(time.Duration(n) * time.Second)
		rec, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(uint64(n+1), rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t, nil)
	cfg.SegmentSize = segSize
	cfg.TailBytes = -1 // read what is on disk
	l := mustOpen(t, dir, cfg)
	for n := 40; n < 120; n++ {
		var batch []*eventlog.Event
		for k := 0; k < n%4; k++ {
			batch = append(batch, keyEvent(n))
		}
		if len(batch) > 0 {
			mustAppend(t, l, batch...)
		}
	}
	last := l.LastIndex()
	want := readAll(t, l, 1, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if len(segmentFiles(t, dir)) < 5 {
		t.Fatalf("%d segments, want the test to cover rollovers", len(segmentFiles(t, dir)))
	}

	// What tidwall/wal would have written: the same records, same rule.
	ref := t.TempDir()
	rw, err := wal.Open(ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	r, err := wal.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := r.LastIndex(); got != uint64(last) {
		t.Fatalf("tidwall/wal sees last index %d, want %d", got, last)
	}
	for i := uint64(1); i <= uint64(last); i++ {
		rec, err := r.Read(i)
		if err != nil {
			t.Fatalf("tidwall/wal Read(%d): %v", i, err)
		}
		var e eventlog.Event
		if err := e.UnmarshalBinary(rec); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if d := sameEvent(&e, want[i-1]); d != "" {
			t.Fatalf("entry %d: %s", i, d)
		}
		if err := rw.Write(i, rec); err != nil {
			t.Fatal(err)
		}
	}
	rw.Close()
	got, wantSegs := segmentFiles(t, dir), segmentFiles(t, ref)
	if len(got) != len(wantSegs) {
		t.Fatalf("%d segments, tidwall/wal makes %d", len(got), len(wantSegs))
	}
	for k := range got {
		if filepath.Base(got[k]) != filepath.Base(wantSegs[k]) || fileSize(t, got[k]) != fileSize(t, wantSegs[k]) {
			t.Fatalf("segment %s of %d bytes, tidwall/wal makes %s of %d", filepath.Base(got[k]), fileSize(t, got[k]),
				filepath.Base(wantSegs[k]), fileSize(t, wantSegs[k]))
		}
	}
}
