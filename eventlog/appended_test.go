package eventlog_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// TestAppended: the log counts what it appended since Open by origin and
// kind; a refused Append counts nothing, and a reopened log starts at 0.
func TestAppended(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	l := mustOpen(t, dir, testConfig(t, nil))
	for k := 1; k <= 3; k++ {
		mustAppend(t, l, keyEvent(k))
	}
	recon := keyEvent(4)
	recon.Origin = eventlog.OriginRecon
	block := &eventlog.Event{Kind: eventlog.KindKeyBlocked, Origin: eventlog.OriginAdmin, Target: []byte("fpr")}
	if _, err := l.Append(context.Background(), recon, block, keyEvent(5)); err != nil {
		t.Fatal(err)
	}
	bad := &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginMail} // no key
	if _, err := l.Append(context.Background(), keyEvent(6), bad); err == nil {
		t.Fatal("Append of an event without a key succeeded")
	}
	for _, c := range []struct {
		o    eventlog.Origin
		k    eventlog.Kind
		want uint64
	}{
		{eventlog.OriginHKP, eventlog.KindKeySubmitted, 4},
		{eventlog.OriginRecon, eventlog.KindKeySubmitted, 1},
		{eventlog.OriginAdmin, eventlog.KindKeyBlocked, 1},
		{eventlog.OriginMail, eventlog.KindKeySubmitted, 0},
		{eventlog.Origin(0), eventlog.KindKeySubmitted, 0},
		{eventlog.OriginHKP, eventlog.Kind(200), 0},
	} {
		if got := l.Appended(c.o, c.k); got != c.want {
			t.Errorf("Appended(%v, %v) = %d, want %d", c.o, c.k, got, c.want)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, testConfig(t, nil))
	defer l.Close()
	if got := l.Appended(eventlog.OriginHKP, eventlog.KindKeySubmitted); got != 0 {
		t.Errorf("after reopening: Appended = %d, want 0 (since Open)", got)
	}
}
