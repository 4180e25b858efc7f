package projections_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
)

// runCheck runs Check and returns its result and findings.
func runCheck(t *testing.T, ts *testStore) (projections.CheckResult, []projections.Finding) {
	t.Helper()
	var fs []projections.Finding
	res, err := ts.store.Check(context.Background(), ts.log, projections.CheckOptions{TempDir: t.TempDir()}, func(f projections.Finding) {
		fs = append(fs, f)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		t.Logf("finding: %s", f)
	}
	return res, fs
}

// checkedStore returns a store with the fixture keys, some submitted twice,
// one garbage event, and the last events not yet applied.
func checkedStore(t *testing.T) *testStore {
	t.Helper()
	ts := openTestStore(t, t.TempDir(), 3)
	keys := fixtureKeys(t)
	for _, k := range keys[:4] {
		submit(t, ts, k.Raw)
	}
	submit(t, ts, []byte("garbage"), keys[0].Raw)
	catchUp(t, ts)
	for _, k := range keys[4:] {
		submit(t, ts, k.Raw)
	}
	return ts
}

func TestCheckClean(t *testing.T) {
	ts := checkedStore(t)
	last := ts.log.LastIndex()
	res, fs := runCheck(t, ts)
	if !res.OK() || len(fs) != 0 {
		t.Fatalf("clean store: %d findings, result %+v", res.Findings, res)
	}
	if got, want := ts.store.Applied(), last; got != want {
		t.Errorf("Check left the store at %d, want caught up to %d", got, want)
	}
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"Applied", int64(res.Applied), int64(last)},
		{"Replayed", int64(res.Replayed), int64(last)},
		{"Events", res.Events, int64(last)},
		{"BadEvents", res.BadEvents, 0},
		{"Differences", res.Differences, 0},
		{"PtreeElements", res.PtreeElements, 7},
		{"SKSHashes", res.SKSHashes, 7},
		{"Keys", res.Keys, 7},
		{"KeyCount", res.KeyCount, 7},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	if res.Compared == 0 {
		t.Error("nothing compared")
	}
}

// firstKeyWith returns the first key of the store's database with prefix p.
func firstKeyWith(t *testing.T, db *pebble.DB, p byte) []byte {
	t.Helper()
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	if !it.First() {
		t.Fatalf("no key with prefix %q", p)
	}
	return append([]byte(nil), it.Key()...)
}

func mustWrite(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func hasFinding(fs []projections.Finding, part, text string) bool {
	for _, f := range fs {
		if f.Part == part && strings.Contains(f.Text, text) {
			return true
		}
	}
	return false
}

func TestCheckFindsDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, db *pebble.DB)
		want   []projections.Finding // Part and a part of Text
	}{
		{
			name: "WordMissing",
			damage: func(t *testing.T, db *pebble.DB) {
				mustWrite(t, db.Delete(firstKeyWith(t, db, 'W'), pebble.NoSync))
			},
			want: []projections.Finding{{Part: projections.CheckProjections, Text: "search index (words): W"}},
		},
		{
			name: "HashMissing",
			damage: func(t *testing.T, db *pebble.DB) {
				mustWrite(t, db.Delete(firstKeyWith(t, db, 'H'), pebble.NoSync))
			},
			want: []projections.Finding{
				{Part: projections.CheckProjections, Text: "hash index: H"},
				{Part: projections.CheckPtree, Text: "but the hash index has no such SKS key"},
			},
		},
		{
			name: "ExtraKeyID",
			damage: func(t *testing.T, db *pebble.DB) {
				mustWrite(t, db.Set([]byte("I\x00\x00\x00\x00\x00\x00\x00\x01\x01\x01"), nil, pebble.NoSync))
			},
			want: []projections.Finding{{Part: projections.CheckProjections, Text: "key-ID index: I00000000000000010101 only in the store"}},
		},
		{
			name: "KeyCount",
			damage: func(t *testing.T, db *pebble.DB) {
				mustWrite(t, db.Set([]byte("mkeys"), binary.BigEndian.AppendUint64(nil, 3), pebble.NoSync))
			},
			want: []projections.Finding{
				{Part: projections.CheckKeyCount, Text: "stored count 3, but the key index holds 7 live keys"},
				{Part: projections.CheckProjections, Text: "meta: mkeys differs"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := checkedStore(t)
			catchUp(t, ts)
			// NB: DB() is read-only for every caller but this test, which
			// plays the disk that damages the store.
			tc.damage(t, ts.store.DB())
			res, fs := runCheck(t, ts)
			if res.OK() {
				t.Fatalf("damaged store passed: %+v", res)
			}
			if res.Findings < int64(len(tc.want)) {
				t.Errorf("Findings = %d, want at least %d", res.Findings, len(tc.want))
			}
			for _, w := range tc.want {
				if !hasFinding(fs, w.Part, w.Text) {
					t.Errorf("no finding %q in part %q", w.Text, w.Part)
				}
			}
		})
	}
}

// TestCheckCorruptRecord damages a record of a log that is open: the
// iterator finds it, Check goes on after it, and does not compare a replay
// that could not be completed.
func TestCheckCorruptRecord(t *testing.T) {
	ts := checkedStore(t)
	catchUp(t, ts)
	seg := filepath.Join(ts.dir, "log", "00000000000000000001")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// Skip the first frame and flip the middle byte of the second record.
	l, n := binary.Uvarint(b)
	off := n + int(l)
	l2, n2 := binary.Uvarint(b[off:])
	b[off+n2+int(l2)/2] ^= 0x10
	if err := os.WriteFile(seg, b, 0o640); err != nil {
		t.Fatal(err)
	}
	res, fs := runCheck(t, ts)
	last := ts.log.LastIndex()
	if got, want := res.BadEvents, int64(1); got != want {
		t.Errorf("BadEvents = %d, want %d", got, want)
	}
	if got, want := res.Events, int64(last)-1; got != want {
		t.Errorf("Events = %d, want %d (reading goes on after the bad record)", got, want)
	}
	var found bool
	for _, f := range fs {
		if f.Part == projections.CheckLog && f.Index == 2 && strings.Contains(f.Text, eventlog.ErrCorrupt.Error()) {
			found = true
		}
	}
	if !found {
		t.Error("no log finding at index 2")
	}
	if !hasFinding(fs, projections.CheckProjections, "not compared") {
		t.Error("no finding that the projections were not compared")
	}
	if res.Replayed >= res.Applied {
		t.Errorf("Replayed = %d, want below Applied %d", res.Replayed, res.Applied)
	}
}
