package mailsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
)

// Log is what the Sender reads from the event log. *eventlog.Log
// implements it.
type Log interface {
	LastIndex() eventlog.Index
	Notify() <-chan struct{}
	Read(i eventlog.Index) (*eventlog.Event, error)
	NewIterator(from, to eventlog.Index) *eventlog.Iterator
}

// Store is what the Sender reads from the projections.
// *projections.Store implements it.
type Store interface {
	WaitApplied(ctx context.Context, idx eventlog.Index) error
	Latest(rid []byte) (*projections.Record, error)
}

// Sender mails locally originated key submissions to the mailsync
// partners. It follows the log with a cursor of its own, so it needs no
// queue: the log is the queue (mailsync.md §4 "persist the queue ... in the
// same transaction as the DB change" holds because the event and its
// queue entry are the same log record).
//
// The cursor file holds one decimal log index and a newline. Invariant:
// every OriginHKP key submission at or below the cursor has been handed to
// the transport (or skipped, see Run). It is written (temp file, fsync,
// rename, directory fsync) only after the transport succeeded, so a crash
// between the two sends that mail again on restart: delivery is
// at-least-once, never lost.
type Sender struct {
	cfg       Config
	log       Log
	store     Store
	logger    zerolog.Logger
	transport Transport

	// crashAfterSend, when set, runs after a successful send and before the
	// cursor is written; an error ends Run at once (tests simulate a crash
	// there).
	crashAfterSend func(eventlog.Index) error

	// Owned by Run; stats fields are also read by Stats under mu.
	// Invariant: persisted <= cursor <= scanned <= log.LastIndex(), and
	// pending holds, in order, the OriginHKP submissions in (cursor, scanned].
	mu         sync.Mutex
	persisted  eventlog.Index
	cursor     eventlog.Index
	scanned    eventlog.Index
	pending    []eventlog.Index
	sent       uint64
	failed     uint64
	skipped    uint64
	lastError  string
	lastErrAt  time.Time
	lastSentAt time.Time
}

// Stats is a snapshot of a Sender's counters, for metrics and the stats
// page.
type Stats struct {
	// Sent, Failed and Skipped count mails handed to the transport,
	// transport (or apply-wait) failures, and local submissions not mailed
	// because they changed nothing or the key is gone, since New.
	Sent, Failed, Skipped uint64
	// Cursor is the persisted cursor: the last log index handled.
	Cursor eventlog.Index
	// Queued is the number of local submissions found after the cursor and
	// not yet mailed.
	Queued int
	// Backlog is the log index of the newest local submission found minus
	// Cursor (0 when nothing waits).
	Backlog uint64
	// LastError is the text of the latest failure ("" if none) and
	// LastErrorTime its time; LastSent is the time of the latest mail.
	LastError     string
	LastErrorTime time.Time
	LastSent      time.Time
}

// ErrNoCursor is returned by ReadCursor when the cursor file does not exist.
var ErrNoCursor = errors.New("mailsync: no cursor file")

// New checks cfg and reads the cursor. When the cursor file does not exist
// yet, the sender starts after startAfter (the daemon passes the last index
// written before it started, so a new installation does not mail its whole
// history) and writes the cursor at once.
func New(cfg Config, log Log, store Store, startAfter eventlog.Index) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sender{cfg: cfg, log: log, store: store, transport: cfg.Transport}
	s.logger = cfg.Logger.With().Str("component", "mailsync").Logger()
	if s.transport == nil {
		s.transport = Sendmail{Command: cfg.SendmailCmd}
	}
	cur, err := ReadCursor(cfg.CursorPath)
	switch {
	case errors.Is(err, ErrNoCursor):
		cur = startAfter
		if err := writeCursor(cfg.CursorPath, cur); err != nil {
			return nil, err
		}
		s.logger.Info().Uint64("index", uint64(cur)).Msg("mailsync cursor created")
	case err != nil:
		return nil, err
	}
	if last := log.LastIndex(); cur > last {
		return nil, fmt.Errorf("mailsync: cursor %d in %s is past the log's last index %d", cur, cfg.CursorPath, last)
	}
	s.persisted, s.cursor, s.scanned = cur, cur, cur
	return s, nil
}

// Stats returns the current counters. Safe for concurrent use with Run.
func (s *Sender) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Sent: s.sent, Failed: s.failed, Skipped: s.skipped,
		Cursor: s.persisted, Queued: len(s.pending),
		LastError: s.lastError, LastErrorTime: s.lastErrAt, LastSent: s.lastSentAt,
	}
	if n := len(s.pending); n > 0 {
		st.Backlog = uint64(s.pending[n-1] - s.persisted)
	}
	return st
}

// Run mails every OriginHKP key submission after the cursor, in log order,
// and then follows the log until ctx is done; it returns nil then. Only
// submissions made to this server's /pks/add are mailed: keys learnt by
// recon, by mail or by import never are, which keeps servers from mailing
// keys around in circles (mailsync.md §2.1).
//
// For each submission Run waits until the projections have applied it,
// then mails the canonicalised key as submitted — what SKS queues, not
// the merged result (mailsync.md §2.1) — unless the stored key was not
// changed by it (the submission added nothing, as SKS queues only keys
// whose merge changed the database) or is no longer stored (deleted by an
// operator); those are counted as skipped.
//
// A failed send is logged and retried after RetryMin, doubling up to
// RetryMax; later submissions wait behind it, as in SKS. With no
// partners, nothing is sent or dropped; this is logged once.
// Run must not be called twice at the same time.
func (s *Sender) Run(ctx context.Context) error {
	backoff := time.Duration(0)
	noPartnersLogged := false
	defer s.persistIdle(true)
	for {
		notify := s.log.Notify()
		if err := s.scan(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		s.mu.Lock()
		var next eventlog.Index
		if len(s.pending) > 0 {
			next = s.pending[0]
		}
		s.mu.Unlock()
		if next == 0 {
			s.persistIdle(false)
			select {
			case <-ctx.Done():
				return nil
			case <-notify:
			}
			continue
		}
		var to []string
		if s.cfg.Recipients != nil {
			to = s.cfg.Recipients()
		}
		if len(to) == 0 {
			if !noPartnersLogged {
				s.logger.Warn().Int("queued", s.Stats().Queued).Msg("no mailsync partners; keeping local submissions queued")
				noPartnersLogged = true
			}
			if !sleep(ctx, s.cfg.RetryMin) {
				return nil
			}
			continue
		}
		noPartnersLogged = false
		sent, err := s.handle(ctx, next, to)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			backoff = min(max(backoff*2, s.cfg.RetryMin), s.cfg.RetryMax)
			s.mu.Lock()
			s.failed++
			s.lastError, s.lastErrAt = err.Error(), time.Now()
			s.mu.Unlock()
			s.logger.Warn().Err(err).Uint64("index", uint64(next)).Dur("retry_in", backoff).Msg("mailsync send failed")
			if !sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff = 0
		if sent && s.crashAfterSend != nil {
			if err := s.crashAfterSend(next); err != nil {
				return err
			}
		}
		s.mu.Lock()
		s.pending = s.pending[1:]
		s.cursor = s.scanned
		if len(s.pending) > 0 {
			s.cursor = s.pending[0] - 1
		}
		if sent {
			s.sent++
			s.lastSentAt = time.Now()
		} else {
			s.skipped++
		}
		cur := s.cursor
		s.mu.Unlock()
		if sent {
			// Durable before the next mail: this is the at-least-once line.
			if err := s.persist(cur); err != nil {
				return err
			}
		}
	}
}

// scan reads the log from scanned+1 to its end and queues the local
// submissions.
func (s *Sender) scan(ctx context.Context) error {
	last := s.log.LastIndex()
	for s.scanned < last {
		if err := ctx.Err(); err != nil {
			return err
		}
		from := s.scanned + 1
		to := min(last+1, from+eventlog.Index(s.cfg.ScanBatch))
		it := s.log.NewIterator(from, to)
		var found []eventlog.Index
		end := from - 1
		for {
			idx, e, err := it.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				it.Close()
				return fmt.Errorf("mailsync: read log: %w", err)
			}
			if e.Kind == eventlog.KindKeySubmitted && e.Origin == eventlog.OriginHKP {
				found = append(found, idx)
			}
			end = idx
		}
		it.Close()
		if end < from {
			return fmt.Errorf("mailsync: read log at %d: no entry", from)
		}
		s.mu.Lock()
		s.pending = append(s.pending, found...)
		s.scanned = end
		if len(s.pending) == 0 {
			s.cursor = end
		}
		s.mu.Unlock()
	}
	return nil
}

// handle mails the submission at idx to the partners. It reports whether a
// mail was sent (false: skipped on purpose).
func (s *Sender) handle(ctx context.Context, idx eventlog.Index, to []string) (bool, error) {
	e, err := s.log.Read(idx)
	if err != nil {
		return false, fmt.Errorf("read event %d: %w", idx, err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ApplyTimeout)
	err = s.store.WaitApplied(wctx, idx)
	cancel()
	if err != nil {
		return false, fmt.Errorf("wait for index %d to be applied: %w", idx, err)
	}
	k, err := projections.ParseEventKey(e.Key)
	if err != nil {
		s.logger.Warn().Err(err).Uint64("index", uint64(idx)).Msg("local submission not mailed: unparseable")
		return false, nil
	}
	rec, err := s.store.Latest(projections.RecordID(k))
	switch {
	case errors.Is(err, projections.ErrNotFound):
		s.logger.Info().Uint64("index", uint64(idx)).Str("fpr", k.Fingerprint().String()).Msg("local submission not mailed: key no longer stored")
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look up key of index %d: %w", idx, err)
	case rec.Index < idx:
		s.logger.Debug().Uint64("index", uint64(idx)).Str("fpr", k.Fingerprint().String()).Msg("local submission not mailed: changed nothing")
		return false, nil
	}
	msg := Message{
		To: to, From: s.cfg.From, Key: k.Marshal(),
		Hostname: s.cfg.Hostname, ArmorVersion: s.cfg.ArmorVersion,
		Extra: s.cfg.ExtraHeaders, Time: time.Now(),
	}
	sctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	start := time.Now()
	if err := s.transport.Send(sctx, msg.Bytes()); err != nil {
		return false, err
	}
	s.logger.Info().Uint64("index", uint64(idx)).Str("fpr", k.Fingerprint().String()).
		Int("recipients", len(to)).Dur("took", time.Since(start)).Msg("mailed key to mailsync partners")
	return true, nil
}

// persistIdle writes the cursor after events that needed no mail, but not
// on every wake-up: re-reading a few recon events after a crash is cheap,
// an fsync per recon batch is not.
func (s *Sender) persistIdle(force bool) {
	s.mu.Lock()
	cur, persisted := s.cursor, s.persisted
	s.mu.Unlock()
	if cur == persisted || (!force && cur-persisted < 1024) {
		return
	}
	if err := s.persist(cur); err != nil {
		s.logger.Error().Err(err).Msg("mailsync cursor not written")
	}
}

func (s *Sender) persist(cur eventlog.Index) error {
	if err := writeCursor(s.cfg.CursorPath, cur); err != nil {
		return err
	}
	s.mu.Lock()
	s.persisted = cur
	s.mu.Unlock()
	return nil
}

// ReadCursor returns the index stored in a cursor file, or ErrNoCursor.
func ReadCursor(path string) (eventlog.Index, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrNoCursor
	}
	if err != nil {
		return 0, fmt.Errorf("mailsync: read cursor: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("mailsync: cursor %s: %q is not a log index", path, strings.TrimSpace(string(b)))
	}
	return eventlog.Index(n), nil
}

// writeCursor replaces the cursor file durably: temp file, fsync, rename,
// fsync of the directory.
func writeCursor(path string, cur eventlog.Index) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("mailsync: write cursor: %w", err)
	}
	_, err = f.WriteString(strconv.FormatUint(uint64(cur), 10) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(filepath.Dir(path)); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("mailsync: write cursor %s: %w", path, err)
	}
	return nil
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
