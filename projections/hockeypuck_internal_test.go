package projections

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// TestHockeypuckParseStopsWhenCancelled: normalising a batch for the
// Hockeypuck dataset checks every self-signature, so a batch of big keys
// takes seconds. A cancelled context (a stopping daemon) must stop the
// workers instead of letting them finish the batch.
func TestHockeypuckParseStopsWhenCancelled(t *testing.T) {
	data, err := os.ReadFile(testenv.RequireFile(t, "/usr/share/keyrings/debian-keyring.gpg", "debian-keyring"))
	if err != nil {
		t.Fatal(err)
	}
	var batch []hpParsed
	for len(data) > 0 && len(batch) < 20 {
		raw, err := pgpkey.FirstKey(data)
		if err != nil {
			t.Fatal(err)
		}
		ev := &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginImport, Time: time.Now(), Key: raw.Raw}
		batch = append(batch, hpParsed{idx: eventlog.Index(len(batch) + 1), ev: ev})
		data = data[len(raw.Raw):]
	}
	hp := &hockeypuck{s: &Store{cfg: Config{Workers: 2}}}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := hp.parse(ctx, batch); !errors.Is(err, context.Canceled) {
		t.Fatalf("parse with a cancelled context: %v, want context.Canceled", err)
	}
	for _, p := range batch {
		if p.keys != nil || p.err != nil {
			t.Fatalf("event %d was normalised after the context was cancelled", p.idx)
		}
	}

	if err := hp.parse(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	for _, p := range batch {
		if p.keys == nil && p.err == nil {
			t.Fatalf("event %d not normalised with a live context", p.idx)
		}
	}
}
