package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// TestSKSConfMaxOpenSegments: grapevine_max_open_segments in the basedir's
// sksconf bounds the segment files the log keeps open for reads (counted
// in /proc/self/fd), where the default keeps every segment read open.
func TestSKSConfMaxOpenSegments(t *testing.T) {
	const segments = 12
	for _, tc := range []struct {
		conf     string
		max, min int // bounds on the log files opened by the reads
	}{
		{conf: "grapevine_max_open_segments: 2\n", max: 2, min: 1},
		{conf: "", max: segments, min: segments - 2}, // the default, 256
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "sksconf"), []byte(tc.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := openBasedirLogTuned(dir, zerolog.Nop(), true, func(c *eventlog.Config) {
			c.SegmentSize = 4096 // one event per segment
			c.TailBytes = -1     // every read from the files
		})
		if err != nil {
			t.Fatal(err)
		}
		key := make([]byte, 5000)
		for i := 0; i < segments; i++ {
			key[0] = byte(i)
			if _, err := b.log.Append(context.Background(), &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Key: key}); err != nil {
				t.Fatal(err)
			}
		}
		before := openLogFiles(t, dir)
		for i := eventlog.Index(1); i <= segments; i++ {
			if _, err := b.log.Read(i); err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
		}
		opened := openLogFiles(t, dir) - before
		if opened > tc.max || opened < tc.min {
			t.Errorf("sksconf %q: %d log files kept open after reading %d segments; want %d to %d", tc.conf, opened, segments, tc.min, tc.max)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// openLogFiles counts this process's descriptors of files in dir's log.
func openLogFiles(t *testing.T, dir string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, logDir) + "/"
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, logPath) {
			n++
		}
	}
	return n
}
