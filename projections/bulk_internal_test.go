package projections

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestBulkFallsBackForUnknownProjection registers a projection the bulk
// path does not build: catching up an empty store must then apply event by
// event (all applied indexes must agree), not skip the new projection.
func TestBulkFallsBackForUnknownProjection(t *testing.T) {
	data, err := os.ReadFile(testenv.RequireFile(t, "/usr/share/keyrings/debian-keyring.gpg", "debian-keyring"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	log, err := eventlog.Open(filepath.Join(dir, "log"), eventlog.Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var evs []*eventlog.Event
	for len(data) > 0 && len(evs) < 40 {
		raw, err := pgpkey.FirstKey(data)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginImport, Time: time.Now(), Key: raw.Raw})
		data = data[len(raw.Raw):]
	}
	if _, err := log.Append(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	saved := Projections
	Projections = append(slices.Clone(Projections), "test-extra")
	defer func() { Projections = saved }()
	cfg := DefaultConfig()
	cfg.BulkMinEvents = 1
	s, err := Open(filepath.Join(dir, "db"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CatchUp(context.Background(), log, nil); err != nil {
		t.Fatal(err)
	}
	if s.BulkApplied() != 0 {
		t.Fatalf("bulk path applied up to %d with a projection it does not build", s.BulkApplied())
	}
	applied, err := s.AppliedIndexes()
	if err != nil {
		t.Fatal(err)
	}
	if applied["test-extra"] != eventlog.Index(len(evs)) {
		t.Fatalf("extra projection applied %d, want %d", applied["test-extra"], len(evs))
	}
}
