package main

// grapevine mail-in: the drop-in for SKS's sks_add_mail (spec mailsync.md
// §3). An MTA pipes each incoming PKS mail into it:
//
//	/etc/aliases:  pgp-public-keys: "|/usr/bin/grapevine mail-in --basedir /var/lib/sks"
//	procmail:      :0
//	               * ^Subject: incremental
//	               | /usr/bin/grapevine mail-in /var/lib/sks
//
// Exit statuses follow sysexits.h, which MTAs understand (exim and postfix
// retry 75 later and bounce other failures):
//
//	0   the keys are stored (or were all stored already); also when
//	    disable_mailsync is set: the mail is accepted and ignored, as SKS
//	    never processes it then
//	2   bad arguments
//	65  EX_DATAERR: no key in the mail, a broken key, a mail too large
//	75  EX_TEMPFAIL: the daemon or the log is unavailable (busy basedir,
//	    failed append): try again later
//	78  EX_CONFIG: the basedir or its sksconf is unusable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/mailsync"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Exit statuses of mail-in (sysexits.h).
const (
	exDataErr  = 65
	exTempFail = 75
	exConfig   = 78
)

// maxMailBytes bounds one incoming mail (SKS has no limit; a PKS sync mail
// holds one key).
const maxMailBytes = 64 << 20

// mailInStdin is where mail-in reads the mail; tests replace it.
var mailInStdin io.Reader = os.Stdin

// exitError carries a command's exit status with its error.
//
// NB: main's exitCode must honour ExitCode() for the statuses to reach the
// MTA; until it does, every failure exits 1.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

func exitf(code int, format string, args ...any) error {
	return &exitError{code, fmt.Errorf(format, args...)}
}

func (e *env) mailInCmd(ctx context.Context, args []string) error {
	fs := e.newFlagSet("mail-in", "[--basedir DIR] [DIR] < message")
	basedirFlag := fs.String("basedir", ".", "base directory of the keyserver (as in SKS)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	dir := *basedirFlag
	switch len(rest) {
	case 0:
	case 1:
		// sks_add_mail takes the basedir as its only argument; SKS's
		// aliases.sample passes DIR/messages, so accept that too
		// (mailsync.md §3.1).
		dir = strings.TrimSuffix(filepath.Clean(rest[0]), string(filepath.Separator)+"messages")
	default:
		return usagef("mail-in: unexpected argument %q", rest[1])
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return exitf(exConfig, "mail-in: basedir %s is not a directory", dir)
	}
	conf, _, _, err := LoadSKSConf(dir)
	if err != nil {
		return exitf(exConfig, "mail-in: %v", err)
	}
	data, err := io.ReadAll(io.LimitReader(mailInStdin, maxMailBytes+1))
	if err != nil {
		return exitf(exTempFail, "mail-in: read mail: %v", err)
	}
	if len(data) > maxMailBytes {
		return exitf(exDataErr, "mail-in: mail larger than %d bytes", maxMailBytes)
	}
	if conf.DisableMailsync {
		fmt.Fprintln(e.stderr, "grapevine mail-in: disable_mailsync is set in sksconf; mail ignored")
		return nil
	}
	m, err := mailsync.ReadMail(data)
	if err != nil {
		return exitf(exDataErr, "mail-in: %v", err)
	}
	var body bytes.Buffer
	for _, k := range m.Keys {
		body.Write(k.Raw.Raw)
	}
	msg, err := submitToDaemon(ctx, dir, m.From, body.Bytes())
	if errors.Is(err, errNoDaemon) {
		msg, err = e.mailInDirect(ctx, dir, m)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, msg)
	return nil
}

// submitToDaemon posts the keys to /submit of the daemon holding dir. It
// returns errNoDaemon only when no daemon could be reached, so that the
// caller can write the log itself; any later failure is EX_TEMPFAIL (the
// daemon may have stored the keys; a retry is harmless, they are then
// unchanged).
func submitToDaemon(ctx context.Context, dir, peer string, keys []byte) (string, error) {
	sock := filepath.Join(dir, adminSocket)
	if _, err := os.Stat(sock); err != nil {
		return "", errNoDaemon
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		return "", errNoDaemon // a stale socket of a killed daemon
	}
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			if c := conn; c != nil {
				conn = nil
				return c, nil
			}
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	q := url.Values{"peer": {peer}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://daemon/submit?"+q.Encode(), bytes.NewReader(keys))
	if err != nil {
		return "", exitf(exTempFail, "mail-in: %v", err)
	}
	req.Header.Set("Content-Type", "application/pgp-keys")
	resp, err := client.Do(req)
	if err != nil {
		return "", exitf(exTempFail, "mail-in: daemon: %v", err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusOK:
		return strings.TrimSpace(string(text)), nil
	case http.StatusBadRequest:
		return "", exitf(exDataErr, "mail-in: %s", strings.TrimSpace(string(text)))
	default:
		return "", exitf(exTempFail, "mail-in: daemon: %s", strings.TrimSpace(string(text)))
	}
}

// mailInDirect stores the keys itself when no daemon runs: it takes the
// basedir lock (so it is never a second writer), appends, and applies.
func (e *env) mailInDirect(ctx context.Context, dir string, m *mailsync.Mail) (string, error) {
	logger := newLogger(e.stderr).Level(levelFor(2))
	if _, err := os.Stat(filepath.Join(dir, logDir)); err != nil {
		return "", exitf(exConfig, "mail-in: basedir %s: no grapevine log at %s (check --basedir)", dir, filepath.Join(dir, logDir))
	}
	b, err := openBasedir(dir, logger, false)
	if err != nil {
		// Most likely a daemon or an import holds the lock right now.
		return "", exitf(exTempFail, "mail-in: %v", err)
	}
	defer b.Close()
	res, err := appendMailKeys(ctx, b.log, b.store, b.keyLimits, m.From, m.Keys)
	if err != nil {
		return "", exitf(exTempFail, "mail-in: %v", err)
	}
	if err := b.catchUp(ctx, io.Discard, "applying mailed keys"); err != nil {
		// The keys are durable in the log; the next start applies them.
		logger.Warn().Err(err).Msg("mailed keys stored but not yet applied")
	}
	return res.String(), nil
}

// mailInResult says what a mail changed.
type mailInResult struct {
	added, unchanged int
	last             eventlog.Index
}

func (r mailInResult) String() string {
	return fmt.Sprintf("mail-in: %d keys stored, %d unchanged", r.added, r.unchanged)
}

// appendMailKeys appends the keys that add something to the store with one
// durable Append, with Origin mail: the outgoing mailsync sender never mails
// them on (mailsync.md §3.2, "newkey = false").
func appendMailKeys(ctx context.Context, lg *eventlog.Log, st *projections.Store, lim pgpkey.Limits, peer string, keys []mailsync.IncomingKey) (mailInResult, error) {
	var res mailInResult
	var events []*eventlog.Event
	now := time.Now()
	for _, k := range keys {
		// The abuse limits apply before anything is stored (limits.go).
		ad, err := st.Admit(k.Key, lim)
		if errors.Is(err, pgpkey.ErrTooLarge) {
			res.unchanged++ // refused whole: nothing of it is stored
			continue
		} else if err != nil {
			return res, err
		}
		if !ad.Novel {
			res.unchanged++
			continue
		}
		raw := k.Raw.Raw
		if ad.Trim.Changed() || len(k.Raw.Packets) == 0 || k.Raw.Packets[0].Tag != pgpkey.TagPublicKey {
			raw = ad.Key.Marshal()
		}
		events = append(events, &eventlog.Event{
			Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginMail, Peer: peer, Time: now, Key: bytes.Clone(raw),
		})
	}
	if len(events) == 0 {
		return res, nil
	}
	last, err := lg.Append(ctx, events...)
	if err != nil {
		return res, fmt.Errorf("append mailed keys: %w", err)
	}
	res.added, res.last = len(events), last
	return res, nil
}

// adminSubmit is the daemon's /submit: POST body = keys (binary or armored,
// as mail-in extracted them), ?peer= the mail's From address. All keys or
// none: a bad key answers 400 and stores nothing. The keys are appended with
// one durable Append; the answer waits (bounded) until they are applied.
func adminSubmit(b *basedir) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMailBytes))
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		raws, err := pgpkey.Decode(body)
		if err != nil {
			http.Error(w, "bad key data: "+err.Error(), http.StatusBadRequest)
			return
		}
		keys := make([]mailsync.IncomingKey, 0, len(raws))
		for i, raw := range raws {
			k, err := pgpkey.ParseKey(raw)
			if err != nil {
				http.Error(w, fmt.Sprintf("key %d: %v", i+1, err), http.StatusBadRequest)
				return
			}
			keys = append(keys, mailsync.IncomingKey{Raw: raw, Key: k})
		}
		peer := r.URL.Query().Get("peer")
		res, err := appendMailKeys(r.Context(), b.log, b.store, b.keyLimits, peer, keys)
		if err != nil {
			b.logger.Error().Err(err).Msg("mail-in append failed")
			http.Error(w, "the keys could not be stored; try again later", http.StatusServiceUnavailable)
			return
		}
		if res.last > 0 {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
			if err := b.store.WaitApplied(ctx, res.last); err != nil {
				b.logger.Warn().Err(err).Uint64("index", uint64(res.last)).Msg("mailed keys durable but not yet applied")
			}
			cancel()
		}
		b.logger.Info().Str("peer", peer).Int("added", res.added).Int("unchanged", res.unchanged).Msg("mail-in")
		io.WriteString(w, res.String()+"\n")
	}
}
