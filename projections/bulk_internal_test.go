package projections

import (
	"bytes"
	"context"
	"math/rand/v2"
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

// The sort orders by the first 8 key bytes as an integer first (by radix
// when there are many): keys that tie there (shorter than 8 bytes and zero-padded, or sharing 8 bytes) must
// still come out in bytes.Compare order, in memory and merged from runs.
func TestSorterOrder(t *testing.T) {
	var keys [][]byte
	for _, k := range []string{"", "\x00", "a", "ab", "ab\x00", "ab\x00\x00", "ab\x00\x01", "abcdefgh", "abcdefgh\x00",
		"abcdefghi", "abcdefgg\xff", "\xff\xff\xff\xff\xff\xff\xff\xff", "\xff\xff\xff\xff\xff\xff\xff\xff\x00", "abcdefgha"} {
		keys = append(keys, []byte(k))
	}
	// A pair larger than a run reader's buffer (1 MiB) is copied out, the
	// others are read in place.
	keys = append(keys, bytes.Repeat([]byte("z"), 3<<19))
	rng := rand.New(rand.NewPCG(1, 2))
	// Enough keys for the radix sort (radixMin), with long runs of equal
	// 8-byte prefixes.
	for range 3 * radixMin {
		k := make([]byte, rng.IntN(12))
		for i := range k {
			k[i] = "ab\x00\xff"[rng.IntN(4)]
		}
		keys = append(keys, k)
	}
	for _, limit := range []int{1 << 20, 256, 256 << 10} { // in memory; spilled runs; runs sorted by radix
		s := newSorter(t.TempDir(), "t", limit)
		for _, k := range keys {
			if err := s.add(k, append([]byte("v"), k...)); err != nil {
				t.Fatal(err)
			}
		}
		it, err := s.iter()
		if err != nil {
			t.Fatal(err)
		}
		var got [][]byte
		for {
			k, v, ok, err := it.next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if !bytes.Equal(v, append([]byte("v"), k...)) {
				t.Fatalf("limit %d: key %.20q carries value %.20q", limit, k, v)
			}
			got = append(got, bytes.Clone(k))
		}
		it.close()
		want := slices.Clone(keys)
		slices.SortFunc(want, bytes.Compare)
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("limit %d (%d runs): order differs from bytes.Compare", limit, len(s.runs))
		}
	}
}
