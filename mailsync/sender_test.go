package mailsync_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/mailsync"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

func fprOf(t *testing.T, msg []byte) string {
	t.Helper()
	raws, err := pgpkey.Decode(msg)
	if err != nil || len(raws) != 1 {
		t.Fatalf("message holds %d keys (%v), want 1:\n%s", len(raws), err, msg)
	}
	k, err := pgpkey.ParseKey(raws[0])
	if err != nil {
		t.Fatal(err)
	}
	return k.Fingerprint().String()
}

func fprRaw(t *testing.T, raw *pgpkey.RawKey) string {
	t.Helper()
	k, err := pgpkey.ParseKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k.Fingerprint().String()
}

func waitSent(t *testing.T, r *recorder, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-r.sent:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d mails sent", i, n)
		}
	}
}

func runSender(t *testing.T, s *mailsync.Sender) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(cancel)
	return func() error { cancel(); return <-done }
}

// TestOnlyLocalSubmissionsAreMailed is the loop prevention of mailsync.md
// §2.1: keys from recon, mail and import are never mailed; a key B learnt
// by mail is therefore not mailed on by B.
func TestOnlyLocalSubmissionsAreMailed(t *testing.T) {
	keys := testKeys(t)
	n := newNode(t)
	rec := newRecorder()
	s, err := mailsync.New(testConfig(t, n, rec), n.log, n.store, 0)
	if err != nil {
		t.Fatal(err)
	}
	stop := runSender(t, s)
	n.append(t, eventlog.OriginRecon, keys[0])
	n.append(t, eventlog.OriginMail, keys[1])
	n.append(t, eventlog.OriginImport, keys[2])
	last := n.append(t, eventlog.OriginHKP, keys[3])
	waitSent(t, rec, 1)
	// The same key again over HKP changes nothing: not mailed (SKS queues
	// only keys whose merge changed the database).
	n.append(t, eventlog.OriginHKP, keys[3])
	// A key learnt by recon and then uploaded unchanged: not mailed.
	n.append(t, eventlog.OriginHKP, keys[0])
	n.append(t, eventlog.OriginHKP, keys[1]) // end marker: changes nothing either
	// Wait until the sender has handled everything.
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Skipped < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want 3 skipped", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	msgs := rec.messages()
	if got, want := len(msgs), 1; got != want {
		t.Fatalf("mailed %d messages, want %d", got, want)
	}
	if got, want := fprOf(t, msgs[0]), fprRaw(t, keys[3]); got != want {
		t.Fatalf("mailed %s, want %s", got, want)
	}
	st := s.Stats()
	if st.Sent != 1 || st.Queued != 0 || st.Backlog != 0 || st.Cursor != last+3 {
		t.Fatalf("stats %+v: want Sent 1, Queued 0, Backlog 0, Cursor %d", st, last+3)
	}
	if cur, err := mailsync.ReadCursor(testConfig(t, n, rec).CursorPath); err != nil || cur != last+3 {
		t.Fatalf("cursor file %d (%v), want %d", cur, err, last+3)
	}
}

// TestCrashBetweenSendAndCursorSendsDuplicateNotLoss stops the sender after
// a mail went out and before its cursor was written: the restarted sender
// mails that key again (at-least-once) and then the rest; nothing is lost.
func TestCrashBetweenSendAndCursorSendsDuplicateNotLoss(t *testing.T) {
	keys := testKeys(t)
	n := newNode(t)
	var want []string
	for _, k := range keys[:3] {
		n.append(t, eventlog.OriginHKP, k)
		want = append(want, fprRaw(t, k))
	}
	rec := newRecorder()
	cfg := testConfig(t, n, rec)
	s, err := mailsync.New(cfg, n.log, n.store, 0)
	if err != nil {
		t.Fatal(err)
	}
	crash := errors.New("simulated crash")
	sends := 0
	mailsync.SetCrashAfterSend(s, func(eventlog.Index) error {
		sends++
		if sends == 2 {
			return crash
		}
		return nil
	})
	if err := s.Run(context.Background()); !errors.Is(err, crash) {
		t.Fatalf("Run = %v, want the simulated crash", err)
	}
	if cur, _ := mailsync.ReadCursor(cfg.CursorPath); cur != 1 {
		t.Fatalf("cursor after crash %d, want 1 (second mail sent, not recorded)", cur)
	}
	s2, err := mailsync.New(cfg, n.log, n.store, 0)
	if err != nil {
		t.Fatal(err)
	}
	stop := runSender(t, s2)
	waitSent(t, rec, 4)
	stop()
	var got []string
	for _, m := range rec.messages() {
		got = append(got, fprOf(t, m))
	}
	wantSeq := []string{want[0], want[1], want[1], want[2]}
	if len(got) != len(wantSeq) {
		t.Fatalf("mailed %v, want %v", got, wantSeq)
	}
	for i := range got {
		if got[i] != wantSeq[i] {
			t.Fatalf("mail %d is %s, want %s (all: %v)", i, got[i], wantSeq[i], got)
		}
	}
}

// TestFailedSendsAreRetried: the transport fails twice; the key is mailed
// on the third try, and the counters say so.
func TestFailedSendsAreRetried(t *testing.T) {
	keys := testKeys(t)
	n := newNode(t)
	rec := newRecorder()
	rec.fail = 2
	s, err := mailsync.New(testConfig(t, n, rec), n.log, n.store, 0)
	if err != nil {
		t.Fatal(err)
	}
	idx := n.append(t, eventlog.OriginHKP, keys[0])
	stop := runSender(t, s)
	waitSent(t, rec, 1)
	stop()
	st := s.Stats()
	if st.Sent != 1 || st.Failed != 2 || st.LastError == "" || st.Cursor != idx {
		t.Fatalf("stats %+v: want Sent 1, Failed 2, a LastError, Cursor %d", st, idx)
	}
}

// TestNoPartnersKeepsQueue: without partners nothing is sent or dropped;
// Stats shows the queue.
func TestNoPartnersKeepsQueue(t *testing.T) {
	keys := testKeys(t)
	n := newNode(t)
	rec := newRecorder()
	cfg := testConfig(t, n, rec)
	cfg.Recipients = func() []string { return nil }
	s, err := mailsync.New(cfg, n.log, n.store, 0)
	if err != nil {
		t.Fatal(err)
	}
	n.append(t, eventlog.OriginRecon, keys[1])
	idx := n.append(t, eventlog.OriginHKP, keys[0])
	stop := runSender(t, s)
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Queued != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want 1 queued", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	st := s.Stats()
	if st.Sent != 0 || st.Cursor != 0 || st.Backlog != uint64(idx) || len(rec.messages()) != 0 {
		t.Fatalf("stats %+v, %d mails: want nothing sent, Cursor 0, Backlog %d", st, len(rec.messages()), idx)
	}
}

// TestStartAfter: without a cursor file the sender starts after the index
// it is given and does not mail older submissions.
func TestStartAfter(t *testing.T) {
	keys := testKeys(t)
	n := newNode(t)
	old := n.append(t, eventlog.OriginHKP, keys[0])
	rec := newRecorder()
	s, err := mailsync.New(testConfig(t, n, rec), n.log, n.store, old)
	if err != nil {
		t.Fatal(err)
	}
	stop := runSender(t, s)
	n.append(t, eventlog.OriginHKP, keys[1])
	waitSent(t, rec, 1)
	stop()
	msgs := rec.messages()
	if len(msgs) != 1 || fprOf(t, msgs[0]) != fprRaw(t, keys[1]) {
		t.Fatalf("mailed %d messages, want only the new key", len(msgs))
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := mailsync.DefaultConfig()
	var ve *mailsync.ConfigValidationError
	if err := cfg.Validate(); !errors.As(err, &ve) || ve.Field != "From" {
		t.Fatalf("Validate() = %v, want a From error", err)
	}
	cfg.From, cfg.CursorPath = "a@b", "/x"
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
}
