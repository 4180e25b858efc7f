package eventlog_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// TestAppendingCountsWaiters: an Append waiting for its batch's fsync
// counts in Appending while the log's last index stands still (the
// Hockeypuck dataset must not take that for a quiet log), and not after it
// returns.
func TestAppendingCountsWaiters(t *testing.T) {
	cfg := eventlog.DefaultConfig()
	cfg.Logger = zerolog.Nop()
	l := mustOpen(t, filepath.Join(t.TempDir(), "log"), cfg)
	defer l.Close()
	if got := l.Appending(); got != 0 {
		t.Fatalf("Appending %d on a fresh log, want 0", got)
	}
	inSync := make(chan struct{})
	release := make(chan struct{})
	eventlog.SetAfterWriteHook(l, func() error {
		close(inSync)
		<-release
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := l.Append(context.Background(), keyEvent(1))
		done <- err
	}()
	<-inSync
	if got, last := l.Appending(), l.LastIndex(); got != 1 || last != 0 {
		t.Errorf("during the fsync: Appending %d, LastIndex %d; want 1, 0", got, last)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := l.Appending(); got != 0 {
		t.Errorf("Appending %d after the Append returned, want 0", got)
	}
}
