package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/mailsync"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Layout of grapevine's own files inside an SKS-style basedir. They live in
// a subdirectory so that an SKS basedir (KDB/, PTree/, sksconf, membership)
// can be pointed at unchanged.
const (
	stateDir   = "grapevine"
	logDir     = "grapevine/log"
	dbDir      = "grapevine/db"
	lockFile   = "grapevine/lock"
	importFile = "grapevine/import-progress"
)

// basedir is an opened, locked base directory.
type basedir struct {
	dir    string
	lock   *os.File
	log    *eventlog.Log
	store  *projections.Store
	logger zerolog.Logger
	// keyLimits are the abuse limits on keys from sksconf (limits.go).
	keyLimits pgpkey.Limits
	// mailSender is the running mailsync sender, if any, for the stats
	// page and metrics.
	mailSender atomic.Pointer[mailsync.Sender]
	// storeCloseTimeout, when positive, bounds the wait for the
	// projections to close (see closeStore). Zero waits as long as it takes.
	storeCloseTimeout time.Duration
}

// newLogger logs to w: human-readable on a terminal, JSON otherwise.
func newLogger(w io.Writer) zerolog.Logger {
	if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		return zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}).With().Timestamp().Logger()
	}
	if _, ok := w.(*os.File); !ok {
		// The store logs from goroutines of its own (the presence filter's
		// scan, the followers) while the command logs: a writer such as a
		// buffer must see one write at a time.
		w = zerolog.SyncWriter(w)
	}
	return zerolog.New(w).With().Timestamp().Logger()
}

// openBasedir locks dir and opens the log and the projections. With
// createIfMissing false, a directory without a log is an error (a typo in
// --basedir should not silently make an empty keyserver).
func openBasedir(dir string, logger zerolog.Logger, createIfMissing bool) (*basedir, error) {
	return openBasedirWith(dir, logger, createIfMissing, nil)
}

// openBasedirWith is openBasedir with the projections' configuration
// adjusted by tune (when not nil).
func openBasedirWith(dir string, logger zerolog.Logger, createIfMissing bool, tune func(*projections.Config)) (*basedir, error) {
	return openBasedirTuned(dir, logger, createIfMissing, tune, nil)
}

// openBasedirTuned is openBasedirWith with the log's configuration
// adjusted by tuneLog too (when not nil).
func openBasedirTuned(dir string, logger zerolog.Logger, createIfMissing bool, tune func(*projections.Config), tuneLog func(*eventlog.Config)) (*basedir, error) {
	b, err := openBasedirLogTuned(dir, logger, createIfMissing, tuneLog)
	if err != nil {
		return nil, err
	}
	scfg := projections.DefaultConfig()
	scfg.Logger = logger
	scfg.Log = b.log
	if tune != nil {
		tune(&scfg)
	}
	if b.store, err = projections.Open(filepath.Join(dir, dbDir), scfg); err != nil {
		b.Close()
		return nil, fmt.Errorf("basedir %s: %w", dir, err)
	}
	if applied, last := b.store.Applied(), b.log.LastIndex(); applied > last {
		b.Close()
		return nil, fmt.Errorf("basedir %s: projections applied index %d is past the log's last index %d (log truncated?); run grapevine replay", dir, applied, last)
	}
	return b, nil
}

// openBasedirLog locks dir and opens the log only: replay rebuilds the
// projections without reading them, also when they were written by another
// schema version (projections.ErrSchemaChanged).
func openBasedirLog(dir string, logger zerolog.Logger, createIfMissing bool) (*basedir, error) {
	return openBasedirLogTuned(dir, logger, createIfMissing, nil)
}

func openBasedirLogTuned(dir string, logger zerolog.Logger, createIfMissing bool, tuneLog func(*eventlog.Config)) (*basedir, error) {
	if dir == "" {
		return nil, usagef("--basedir must not be empty")
	}
	if fi, err := os.Stat(dir); err != nil {
		if !createIfMissing || !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("basedir %s: %w", dir, err)
		}
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("basedir %s: not a directory", dir)
	}
	if !createIfMissing {
		if _, err := os.Stat(filepath.Join(dir, logDir)); err != nil {
			return nil, fmt.Errorf("basedir %s: no grapevine log at %s (import keys first, or check --basedir)", dir, filepath.Join(dir, logDir))
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, stateDir), 0o755); err != nil {
		return nil, fmt.Errorf("basedir %s: %w", dir, err)
	}
	lock, err := lockBasedir(filepath.Join(dir, lockFile))
	if err != nil {
		return nil, err
	}
	conf := basedirConf(dir)
	b := &basedir{dir: dir, lock: lock, logger: logger, keyLimits: conf.keyLimits()}
	lcfg := eventlog.DefaultConfig()
	lcfg.Logger = logger
	lcfg.MaxOpenSegments = conf.MaxOpenSegments
	if tuneLog != nil {
		tuneLog(&lcfg)
	}
	if b.log, err = eventlog.Open(filepath.Join(dir, logDir), lcfg); err != nil {
		b.Close()
		return nil, fmt.Errorf("basedir %s: %w", dir, err)
	}
	return b, nil
}

// Close closes the projections, the log and the lock, in that order.
func (b *basedir) Close() error {
	var errs []error
	if b.store != nil {
		errs = append(errs, b.closeStore())
	}
	if b.log != nil {
		errs = append(errs, b.log.Close())
	}
	if b.lock != nil {
		errs = append(errs, b.lock.Close())
	}
	return errors.Join(errs...)
}

// closeStore closes the projections, waiting at most storeCloseTimeout.
//
// Closing flushes Pebble's memtables, and Pebble retries a flush that fails
// (a full disk) until it succeeds: a daemon told to stop would hang until
// space returns. Giving up is safe because the projections are built to
// survive a crash: every batch carries its applied log index, so the next
// start re-applies from the log whatever was not flushed.
func (b *basedir) closeStore() error {
	if b.storeCloseTimeout <= 0 {
		return b.store.Close()
	}
	done := make(chan error, 1)
	go func() { done <- b.store.Close() }()
	timer := time.NewTimer(b.storeCloseTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		return fmt.Errorf("projections did not close within %v (is their disk full?); left as after a crash: the next start applies the rest from the log", b.storeCloseTimeout)
	}
}

// catchUp applies the log to the projections, showing progress when it is
// more than a moment's work.
func (b *basedir) catchUp(ctx context.Context, stderr io.Writer, what string) error {
	behind := b.log.LastIndex() - b.store.Applied()
	if behind == 0 {
		return nil
	}
	start := time.Now()
	p := newProgress(stderr, b.logger, what, int64(behind), "events")
	base := b.store.Applied()
	stats, err := b.store.CatchUp(ctx, b.log, func(pr projections.Progress) {
		p.update(int64(pr.Applied-base), 0, pr.Stats.Rejected)
	})
	p.finish()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	b.logger.Info().Uint64("applied", uint64(b.store.Applied())).Int64("added", stats.Added).Int64("updated", stats.Updated).
		Int64("unchanged", stats.Unchanged).Int64("rejected", stats.Rejected).Dur("took", time.Since(start)).Msg(what + " done")
	return nil
}

// lockBasedir takes an exclusive lock so that only one process writes the
// log. The lock file holds the owner's PID for the error message.
func lockBasedir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		pid := strings.TrimSpace(string(owner))
		if pid == "" {
			pid = "unknown"
		}
		return nil, fmt.Errorf("basedir is in use by another grapevine process (pid %s; lock %s)", pid, path)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
