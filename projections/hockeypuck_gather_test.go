package projections

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

// TestHockeypuckGathersUploads: uploads arriving one by one (each applied
// to the SKS dataset before the next comes) reach the Hockeypuck dataset
// in one batch once a batch's worth is waiting, not in one batch each.
func TestHockeypuckGathersUploads(t *testing.T) {
	const n = 6
	var buf bytes.Buffer
	if _, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: n, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	r := pgpkey.NewReader(&buf)
	dir := t.TempDir()
	lcfg := eventlog.DefaultConfig()
	lcfg.NoSync = true
	lcfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	log, err := eventlog.Open(filepath.Join(dir, "log"), lcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	scfg := DefaultConfig()
	scfg.BatchEvents = n
	scfg.Logger = lcfg.Logger
	s, err := Open(filepath.Join(dir, "db"), scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Without a batch's worth waiting, it would wait for ever: only the
	// count of events can end the gathering here.
	s.hp.gather = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Follow(ctx, log) }()
	defer func() { cancel(); <-done }()

	var last eventlog.Index
	for i := 0; i < n; i++ {
		raw, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		last, err = log.Append(ctx, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: time.Now(), Key: raw.Raw})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WaitApplied(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer wcancel()
	if err := s.WaitHockeypuckApplied(wctx, last); err != nil {
		t.Fatalf("Hockeypuck dataset did not apply %d events once a batch's worth waited: %v", n, err)
	}
	if got := s.hp.batches.Load(); got != 1 {
		t.Errorf("Hockeypuck dataset applied %d uploads in %d batches, want 1", n, got)
	}
}
