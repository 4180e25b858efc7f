package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestProgressLogLine: off a terminal, progress is a periodic log line with
// keys, rate, bytes, rejected and an ETA from the bytes still to read.
func TestProgressLogLine(t *testing.T) {
	var logBuf bytes.Buffer
	p := newProgress(&bytes.Buffer{}, zerolog.New(&logBuf), "import", 0, "keys")
	p.totalBytes = 1000
	p.start = time.Now().Add(-10 * time.Second)
	p.last = p.start
	p.update(50, 500, 3)
	line := logBuf.String()
	for _, want := range []string{`"keys":50`, `"bytes":500`, `"rejected":3`, `"eta":"10s"`, `"message":"import progress"`} {
		if !strings.Contains(line, want) {
			t.Errorf("progress line %s lacks %s", line, want)
		}
	}
}
