package eventlog_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/rs/zerolog"
)

// logBuffer collects zerolog JSON lines; safe for the writer goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *logBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *logBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// lines returns the logged lines that contain all of subs.
func (w *logBuffer) lines(subs ...string) []string {
	var out []string
	for _, line := range strings.Split(w.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// testConfig is a small-segment, no-fsync config that logs into buf (and to
// the test output).
func testConfig(tb testing.TB, buf *logBuffer) eventlog.Config {
	tb.Helper()
	cfg := eventlog.DefaultConfig()
	if buf == nil {
		buf = new(logBuffer)
	}
	cfg.Logger = zerolog.New(zerolog.MultiLevelWriter(zerolog.NewTestWriter(tb), buf))
	tb.Cleanup(func() {
		// Nothing here should need an operator; in particular the writer's
		// prediction of tidwall/wal's segments must hold.
		if lines := buf.lines(`"level":"error"`); len(lines) > 0 {
			tb.Errorf("logged errors: %q", lines)
		}
	})
	cfg.NoSync = true
	cfg.SegmentSize = 4 << 10
	return cfg
}

func mustOpen(tb testing.TB, dir string, cfg eventlog.Config) *eventlog.Log {
	tb.Helper()
	l, err := eventlog.Open(dir, cfg)
	if err != nil {
		tb.Fatalf("Open(%s): %v", dir, err)
	}
	return l
}

// keyEvent returns a KeySubmitted event whose key is derived from n.
func keyEvent(n int) *eventlog.Event {
	return &eventlog.Event{
		Kind:   eventlog.KindKeySubmitted,
		Origin: eventlog.OriginHKP,
		Peer:   fmt.Sprintf("peer-%d", n),
		Key:    keyBytes(n),
	}
}

func keyBytes(n int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("key-%d;", n)), 1+n%37)
}

func mustAppend(tb testing.TB, l *eventlog.Log, events ...*eventlog.Event) eventlog.Index {
	tb.Helper()
	last, err := l.Append(context.Background(), events...)
	if err != nil {
		tb.Fatalf("Append: %v", err)
	}
	return last
}

// checkEntry fails unless entry i is keyEvent(n).
func checkEntry(tb testing.TB, l *eventlog.Log, i eventlog.Index, n int) {
	tb.Helper()
	e, err := l.Read(i)
	if err != nil {
		tb.Fatalf("Read(%d): %v", i, err)
	}
	want := keyEvent(n)
	if e.Peer != want.Peer || !bytes.Equal(e.Key, want.Key) || e.Kind != want.Kind || e.Origin != want.Origin {
		tb.Fatalf("Read(%d) = %s %s peer %q key %d bytes, want %s %s peer %q key %d bytes",
			i, e.Kind, e.Origin, e.Peer, len(e.Key), want.Kind, want.Origin, want.Peer, len(want.Key))
	}
	if e.Time.IsZero() || e.Time.Location() != time.UTC {
		tb.Fatalf("Read(%d).Time = %v, want a UTC time", i, e.Time)
	}
}
