package hkp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
)

// TestUploadAnsweredWhenDurable: /pks/add answers once the key is durable in
// the log, without waiting for the projections (no runner runs here, and
// ApplyWait is an hour); a lookup that follows waits for the projections
// instead, so the uploader still reads its own write.
func TestUploadAnsweredWhenDurable(t *testing.T) {
	dir := t.TempDir()
	logger := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)
	lcfg := eventlog.DefaultConfig()
	lcfg.Logger = logger
	log, err := eventlog.Open(filepath.Join(dir, "log"), lcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	scfg := projections.DefaultConfig()
	scfg.Logger = logger
	scfg.Log = log
	store, err := projections.Open(filepath.Join(dir, "db"), scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := hkp.DefaultConfig()
	cfg.Logger = logger
	cfg.ApplyWait = time.Hour
	srv, err := hkp.New(cfg, store, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	key := fixtureKeys(t, "grace.pgp")[0]
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.PostForm(ts.URL+"/pks/add", url.Values{"keytext": {armored(t, key.Marshal())}})
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	select {
	case resp := <-done:
		if resp == nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("upload: %v, want 200", resp)
		}
		resp.Body.Close()
	case <-time.After(30 * time.Second):
		t.Fatal("no answer to the upload: it waits for the projections, which nothing applies")
	}
	if store.Applied() != 0 || log.LastIndex() != 1 {
		t.Fatalf("applied %d, log %d: want the upload durable in the log and not applied", store.Applied(), log.LastIndex())
	}

	// Nothing applies the upload: the lookup waits until its client gives
	// up rather than answer "No keys found" for a key it accepted.
	lookup := ts.URL + "/pks/lookup?op=get&options=mr&search=0x" + key.Fingerprint().String()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, lookup, nil)
	resp, err := http.DefaultClient.Do(req)
	cancel()
	if err == nil {
		resp.Body.Close()
		t.Fatalf("lookup before apply answered %d; want it to wait for the projections", resp.StatusCode)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lookup: %v", err)
	}

	if _, err := store.CatchUp(context.Background(), log, nil); err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(lookup)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("lookup after apply: %d, want 200", resp.StatusCode)
	}
}

// TestUploadBehindBacklogWaits: when the projections are far behind the
// log (a burst of recon events), an upload waits for its own apply, as
// before, instead of making every later lookup wait behind the backlog. Here
// nothing applies: the upload gives up after ApplyWait and answers 200, and
// a lookup then answers at once (404: not applied) although ApplyWait has
// become an hour.
func TestUploadBehindBacklogWaits(t *testing.T) {
	dir := t.TempDir()
	logger := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)
	lcfg := eventlog.DefaultConfig()
	lcfg.Logger = logger
	log, err := eventlog.Open(filepath.Join(dir, "log"), lcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	store, err := projections.Open(filepath.Join(dir, "db"), projections.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// The backlog: 300 events nobody applies (the same key, any content will do).
	backlog := fixtureKeys(t, "keys-a.pgp")[0].Marshal()
	var evs []*eventlog.Event
	for i := 0; i < 300; i++ {
		evs = append(evs, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginRecon, Time: time.Now(), Key: backlog})
	}
	if _, err := log.Append(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	cfg := hkp.DefaultConfig()
	cfg.Logger = logger
	cfg.ApplyWait = 50 * time.Millisecond
	srv, err := hkp.New(cfg, store, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	key := fixtureKeys(t, "grace.pgp")[0]
	resp, err := http.PostForm(ts.URL+"/pks/add", url.Values{"keytext": {armored(t, key.Marshal())}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || log.LastIndex() != 301 {
		t.Fatalf("upload: %d, log at %d; want 200 and the key appended", resp.StatusCode, log.LastIndex())
	}
	cfg.ApplyWait = time.Hour
	if err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/pks/lookup?op=get&search=0x"+key.Fingerprint().String(), nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("lookup held behind the backlog: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("lookup: %d, want 404 (nothing applied)", resp.StatusCode)
	}
}
