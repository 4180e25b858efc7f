package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// progress shows a long job's advance: a redrawn status line on a terminal,
// a log line every logEvery otherwise (log files and CI output stay short).
type progress struct {
	mu     sync.Mutex
	w      io.Writer
	logger zerolog.Logger
	what   string
	unit   string
	total  int64 // expected units (0: unknown)
	// totalBytes, when set, is the expected input size: the ETA then
	// follows the bytes read (an import does not know its key count).
	totalBytes int64
	done       int64
	bytes      int64
	rejected   int64
	start      time.Time
	last       time.Time
	tty        bool
}

const (
	redrawEvery = 250 * time.Millisecond
	logEvery    = 10 * time.Second
)

func newProgress(w io.Writer, logger zerolog.Logger, what string, total int64, unit string) *progress {
	p := &progress{w: w, logger: logger, what: what, unit: unit, total: total, start: time.Now()}
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		p.tty = true
	}
	p.last = p.start
	return p
}

// update sets the absolute counts and redraws when due.
func (p *progress) update(done, bytes, rejected int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.bytes, p.rejected = done, bytes, rejected
	now := time.Now()
	every := logEvery
	if p.tty {
		every = redrawEvery
	}
	if now.Sub(p.last) < every {
		return
	}
	p.last = now
	p.show(now, false)
}

func (p *progress) show(now time.Time, final bool) {
	el := now.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.done) / el
	}
	eta := "?"
	switch {
	case p.totalBytes > 0 && p.bytes > 0 && p.bytes <= p.totalBytes:
		perByte := now.Sub(p.start).Seconds() / float64(p.bytes)
		eta = (time.Duration(perByte*float64(p.totalBytes-p.bytes)) * time.Second).Round(time.Second).String()
	case p.total > 0 && rate > 0 && p.done <= p.total:
		eta = (time.Duration(float64(p.total-p.done)/rate) * time.Second).Round(time.Second).String()
	}
	if p.tty {
		pct := ""
		switch {
		case p.totalBytes > 0:
			pct = fmt.Sprintf(" %5.1f%%", 100*float64(p.bytes)/float64(p.totalBytes))
		case p.total > 0:
			pct = fmt.Sprintf(" %5.1f%%", 100*float64(p.done)/float64(p.total))
		}
		fmt.Fprintf(p.w, "\r%s:%s %d %s, %.0f %s/s, %s, %d rejected, ETA %s\x1b[K",
			p.what, pct, p.done, p.unit, rate, p.unit, humanBytes(p.bytes), p.rejected, eta)
		if final {
			fmt.Fprintln(p.w)
		}
		return
	}
	if final {
		return // the caller logs its own summary
	}
	p.logger.Info().Int64(p.unit, p.done).Int64("total", p.total).Float64("per_second", rate).
		Int64("bytes", p.bytes).Int64("rejected", p.rejected).Str("eta", eta).Msg(p.what + " progress")
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.show(time.Now(), true)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
