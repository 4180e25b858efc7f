package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// adminEventCmd implements `grapevine delete|block|unblock FPR`: it appends
// the operator's decision to the log (so it survives replay, restarts and
// dumps), through the running daemon when there is one.
func (e *env) adminEventCmd(ctx context.Context, name string, kind eventlog.Kind, args []string) error {
	fs := e.newFlagSet(name, "[--basedir DIR] [--reason TEXT] FINGERPRINT")
	basedirFlag := fs.String("basedir", ".", "base directory (as in SKS)")
	reason := fs.String("reason", "", "why (kept in the log)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		fs.Usage()
		return usagef("%s: one primary key fingerprint (32, 40 or 64 hex digits) is required", name)
	}
	fpr, err := pgpkey.ParseFingerprint(rest[0])
	if err != nil {
		return usagef("%s: %q: %v", name, rest[0], err)
	}
	if kind == eventlog.KindKeyDeleted && *reason == "" {
		return usagef("delete: --reason is required (it is kept in the log)")
	}
	b, err := openBasedir(*basedirFlag, newLogger(e.stderr), false)
	if err != nil {
		q := url.Values{"kind": {fmt.Sprint(uint8(kind))}, "fpr": {fpr.String()}, "reason": {*reason}}
		msg, aerr := adminRequest(ctx, *basedirFlag, "POST", "/admin-event", q)
		if aerr == nil {
			fmt.Fprint(e.stdout, msg)
			return nil
		}
		if !errors.Is(aerr, errNoDaemon) {
			return fmt.Errorf("%s (through the running daemon): %w", name, aerr)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	defer b.Close()
	if err := b.catchUp(ctx, e.stderr, "catching up"); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	msg, err := appendAdminEvent(ctx, b, kind, fpr, *reason, true)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Fprint(e.stdout, msg)
	return nil
}

// appendAdminEvent checks and appends one admin event and sees it applied:
// offline (the command holds the basedir, no daemon's runner follows the
// log) by applying it itself, in the daemon by waiting for the runner.
// Deleting a key that is not stored is an error (a typo should not
// silently block a fingerprint); block and unblock take any.
func appendAdminEvent(ctx context.Context, b *basedir, kind eventlog.Kind, fpr pgpkey.Fingerprint, reason string, offline bool) (string, error) {
	if kind == eventlog.KindKeyDeleted {
		recs, err := b.store.ByFingerprint(fpr.Bytes())
		if err != nil {
			return "", err
		}
		primary := false
		for _, r := range recs {
			k, err := projections.ParseEventKey(r.Key)
			if err == nil && k.Fingerprint() == fpr {
				primary = true
			}
		}
		if !primary {
			return "", fmt.Errorf("no stored key has the primary fingerprint %s", fpr)
		}
	}
	idx, err := b.log.Append(ctx, &eventlog.Event{Kind: kind, Origin: eventlog.OriginAdmin, Target: fpr.Bytes(), Reason: reason})
	if err != nil {
		return "", err
	}
	verb := map[eventlog.Kind]string{eventlog.KindKeyDeleted: "deleted and blocked", eventlog.KindKeyBlocked: "blocked", eventlog.KindKeyUnblocked: "unblocked"}[kind]
	if offline {
		if _, err := b.store.CatchUp(ctx, b.log, nil); err != nil {
			return "", fmt.Errorf("appended at log index %d, applying it: %w", idx, err)
		}
		return fmt.Sprintf("%s %s at log index %d\n", verb, fpr, idx), nil
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.store.WaitApplied(wctx, idx); err != nil {
		// The event is durable; the runner applies it when it gets there
		// (a long backlog, e.g. a big recon fetch).
		return fmt.Sprintf("%s %s at log index %d (durable; not applied within 30 s, the daemon applies it when it catches up)\n", verb, fpr, idx), nil
	}
	return fmt.Sprintf("%s %s at log index %d\n", verb, fpr, idx), nil
}

// adminEventHandler serves POST /admin-event on the admin socket.
func adminEventHandler(b *basedir) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		q := r.URL.Query()
		var kind eventlog.Kind
		fmt.Sscan(q.Get("kind"), &kind)
		switch kind {
		case eventlog.KindKeyDeleted, eventlog.KindKeyBlocked, eventlog.KindKeyUnblocked:
		default:
			http.Error(w, "bad kind", http.StatusBadRequest)
			return
		}
		fpr, err := pgpkey.ParseFingerprint(q.Get("fpr"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		msg, err := appendAdminEvent(r.Context(), b, kind, fpr, q.Get("reason"), false)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		io.WriteString(w, msg)
	}
}
