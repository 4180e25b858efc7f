package projections

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestAbsentFactSkipsRead: a key the upload path found absent (Admit) is
// applied without reading its newest record again; a key nobody asked
// about is read as before.
func TestAbsentFactSkipsRead(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "db"), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keys := parsedCorpus(t, 4, 7, 1, "")
	for _, pe := range keys[:3] {
		ad, err := s.Admit(pe.key, pgpkey.Limits{})
		if err != nil || !ad.Novel || ad.Stored {
			t.Fatalf("Admit of a new key: %+v, %v", ad, err)
		}
	}
	applyAll(t, s, eventsFrom(t, 1, keys[0].ev, keys[1].ev), 1)
	applyAll(t, s, eventsFrom(t, 3, keys[2].ev, keys[3].ev), 2)
	if got := s.absent.hits.Load(); got != 3 {
		t.Fatalf("%d applies used the upload path's read; want 3", got)
	}
	if n, _ := s.KeyCount(); n != 4 {
		t.Fatalf("%d keys stored; want 4", n)
	}
}

// TestAbsentFactOutdated: a fact about a key that a later commit wrote,
// or one older than what the applier remembers (a reopened store), is not
// used: the second version merges into the first instead of replacing
// it.
func TestAbsentFactOutdated(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(filepath.Join(dir, "db"), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	keys := parsedCorpus(t, 2, 8, 1, "")
	k := keys[0].key
	v2 := withUserID(k, "Second Version <second@absent.test>")
	check := func(when string) {
		t.Helper()
		rec, err := s.Latest(RecordID(k))
		if err != nil {
			t.Fatal(err)
		}
		stored, err := ParseEventKey(rec.Key)
		if err != nil {
			t.Fatal(err)
		}
		if len(stored.UIDs) != len(k.UIDs)+1 || !slices.Contains(stored.UserIDs(), k.UserIDs()[0]) {
			t.Fatalf("%s: stored user IDs %q: the versions were not merged", when, stored.UserIDs())
		}
		if n, _ := s.KeyCount(); n != 1 {
			t.Fatalf("%s: %d keys; want 1", when, n)
		}
	}

	// Noted before the first version was applied, used after it: both
	// uploads found the key absent before either was applied.
	if ad, err := s.Admit(k, pgpkey.Limits{}); err != nil || ad.Stored {
		t.Fatalf("Admit: %+v, %v", ad, err)
	}
	at := s.Applied()
	applyAll(t, s, eventsFrom(t, 1, keys[0].ev), 1)
	s.absent.note(RecordID(k), at)
	applyAll(t, s, eventsFrom(t, 2, submitted(v2)), 1)
	check("fact older than a commit of the key")
	if got := s.absent.hits.Load(); got != 1 {
		t.Fatalf("%d facts used; want 1 (the first version's)", got)
	}

	// After a reopen the applier does not know what was written before;
	// a fact from then (here index 0) is not used.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(filepath.Join(dir, "db"), DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	s.absent.note(RecordID(k), 0)
	applyAll(t, s, eventsFrom(t, 3, submitted(withUserID(k, "Second Version <second@absent.test>"))), 1)
	check("fact from before a reopen")
	if got := s.absent.hits.Load(); got != 0 {
		t.Fatalf("%d facts used after a reopen; want 0", got)
	}
}
