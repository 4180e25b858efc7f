package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/mailsync"
	"github.com/grapevine-keyserver/grapevine/projections"
)

// mailsyncCursorFile is the outgoing mailsync cursor (mailsync/doc.go).
const mailsyncCursorFile = "grapevine/mailsync-cursor"

// processStart dates this process: with no cursor yet, mailsync starts
// after the last event written before it, so a first start does not mail
// the log's whole history of uploads.
var processStart = time.Now()

var (
	_ mailsync.Log   = (*eventlog.Log)(nil)
	_ mailsync.Store = (*projections.Store)(nil)
)

// mailsyncStats returns the counters of the mailsync sender running on b;
// false when none runs (disabled, or not serving).
func mailsyncStats(b *basedir) (mailsync.Stats, bool) {
	s := b.mailSender.Load()
	if s == nil {
		return mailsync.Stats{}, false
	}
	return s.Stats(), true
}

// startMailsync starts the outgoing mailsync sender unless sksconf has
// disable_mailsync. It stops, before the store and log close, when the
// daemon stops. A sender that cannot start (unreadable cursor) is logged as
// an error and the daemon serves on without it: HKP and recon do not
// depend on it, and nothing is lost, the cursor stays where it is.
func startMailsync(ctx context.Context, d *daemon, b *basedir) {
	if d.conf.DisableMailsync {
		d.logger.Info().Msg("mailsync disabled (disable_mailsync)")
		return
	}
	cfg := mailsync.DefaultConfig()
	cfg.Logger = d.logger
	cfg.From = d.conf.FromAddress()
	cfg.Recipients = d.MailsyncPeers
	cfg.SendmailCmd = d.conf.SendmailCmd
	cfg.Hostname = d.conf.Hostname
	cfg.CursorPath = filepath.Join(b.dir, mailsyncCursorFile)
	startAfter, err := b.log.IndexAtTime(processStart)
	if err != nil {
		d.logger.Error().Err(err).Msg("mailsync not started")
		return
	}
	s, err := mailsync.New(cfg, b.log, b.store, startAfter)
	if err != nil {
		d.logger.Error().Err(err).Msg("mailsync not started")
		return
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	b.mailSender.Store(s)
	go func() {
		defer close(done)
		if err := s.Run(runCtx); err != nil {
			d.logger.Error().Err(err).Msg("mailsync stopped")
		}
	}()
	d.onStop(func() {
		cancel()
		<-done
		b.mailSender.Store(nil)
	})
	d.logger.Info().Int("partners", len(d.MailsyncPeers())).Uint64("cursor", uint64(s.Stats().Cursor)).Msg("mailsync started")
}
