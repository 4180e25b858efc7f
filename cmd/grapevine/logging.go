package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/rs/zerolog"
)

// daemonLogFile is where `grapevine serve` logs unless sksconf has
// stdoutlog. SKS appends to <basedir>/db.log and <basedir>/recon.log, one
// per process (config.md §7); grapevine is one process and keeps its files
// in DIR/grapevine/, so one file there.
const daemonLogFile = "grapevine/grapevine.log"

// newDaemonLogger returns the logger of `grapevine serve` at the level of
// sksconf debuglevel (levelFor), and a function that stops it and closes
// its file.
//
// As SKS (config.md §3.1, §7): with stdoutlog the log goes to stdout,
// human-readable on a terminal and JSON otherwise; without it, JSON lines
// are appended to DIR/grapevine/grapevine.log, created with mode 0600, and
// the file is reopened on SIGHUP so that logrotate can move it away
// (logrotate's default "create" mode, no copytruncate needed). One line on
// stderr says where the log goes.
func (e *env) newDaemonLogger(conf *SKSConf) (zerolog.Logger, func(), error) {
	level := levelFor(conf.DebugLevel)
	if conf.StdoutLog {
		return newLogger(e.stdout).Level(level), func() {}, nil
	}
	path := filepath.Join(conf.Basedir, daemonLogFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return zerolog.Nop(), nil, fmt.Errorf("log file: %w", err)
	}
	lf, err := openLogFile(path)
	if err != nil {
		return zerolog.Nop(), nil, err
	}
	fmt.Fprintf(e.stderr, "grapevine: logging to %s (sksconf stdoutlog logs to stdout instead)\n", path)
	logger := zerolog.New(lf).With().Timestamp().Logger().Level(level)
	stop := lf.reopenOnSIGHUP(logger)
	return logger, func() {
		stop()
		lf.Close()
	}, nil
}

// logFile is an append-only log file that can be reopened at the same path
// while writers use it. Writes are serialised: zerolog writes one whole
// line per Write call, so lines never interleave.
type logFile struct {
	path string

	mu sync.Mutex
	f  *os.File // nil after Close
}

var _ io.Writer = (*logFile)(nil)

// openLogFile opens path for appending, creating it with mode 0600 (the
// log may name peers and, with grapevine_access_log, clients).
func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log file %s: %w", path, err)
	}
	return &logFile{path: path, f: f}, nil
}

// Write appends p. After Close it drops p and reports success, so that a
// goroutine logging during shutdown does not fail.
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return len(p), nil
	}
	return l.f.Write(p)
}

// Reopen opens the path again and switches to it, closing the old file:
// after logrotate renamed the file, new lines go to a new file at the
// path. If the path cannot be opened, logging goes on to the old file and
// the error is returned.
func (l *logFile) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("reopen log file %s: %w", l.path, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil { // closed meanwhile
		return f.Close()
	}
	old := l.f
	l.f = f
	return old.Close()
}

// Close closes the file; later writes are dropped.
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// reopenOnSIGHUP reopens the file on every SIGHUP until the returned
// function is called (SKS reopens its log on SIGHUP, config.md §7; the
// membership watcher reloads membership on the same signal).
func (l *logFile) reopenOnSIGHUP(logger zerolog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := l.Reopen(); err != nil {
					logger.Error().Err(err).Msg("log file not reopened")
					continue
				}
				logger.Info().Str("path", l.path).Msg("SIGHUP: log file reopened")
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
