package projections_test

import (
	"context"
	"io"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// readEvents returns events [first, end) of ts's log (end 0: to the end).
func readEvents(tb testing.TB, ts *testStore, first, end eventlog.Index) []*eventlog.Event {
	tb.Helper()
	it := ts.log.NewIterator(first, end)
	var evs []*eventlog.Event
	for {
		_, ev, err := it.Next()
		if err == io.EOF {
			return evs
		}
		if err != nil {
			tb.Fatal(err)
		}
		evs = append(evs, ev)
	}
}

// feedAndAppend hands evs to bb in runs of n and appends each run to ts's
// log, as an import does; with parsed, it hands over the keys parsed too.
func feedAndAppend(tb testing.TB, ts *testStore, bb *projections.BulkBuilder, evs []*eventlog.Event, n int, parsed bool) {
	tb.Helper()
	for len(evs) > 0 {
		run := evs[:min(n, len(evs))]
		evs = evs[len(run):]
		first := ts.log.LastIndex() + 1
		var keys []*pgpkey.Key
		if parsed {
			keys = make([]*pgpkey.Key, len(run))
			for i, ev := range run {
				if ev.Kind == eventlog.KindKeySubmitted {
					keys[i], _ = projections.ParseEventKey(ev.Key) // nil when it does not parse
				}
			}
		}
		if err := bb.Add(first, run, keys); err != nil {
			tb.Fatal(err)
		}
		if _, err := ts.log.Append(context.Background(), run...); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestBulkBuilderEqualsIncremental feeds bulkTestLog's events to a
// BulkBuilder as they are appended (from an empty log, and after a prefix
// appended before the builder was made, as a resumed import does; with
// and without the keys parsed by the caller),
// catches up the rest and compares every Pebble entry with the store built
// event by event. The builder reads from the log only that prefix.
func TestBulkBuilderEqualsIncremental(t *testing.T) {
	inc, distinct := bulkTestLog(t)
	all := readEvents(t, inc, 1, 0)
	for _, tc := range []struct {
		prefix int
		parsed bool
	}{{0, false}, {0, true}, {100, true}} {
		prefix := tc.prefix
		bulk := openStoreBulk(t, t.TempDir(), 1)
		copyLog(t, inc, bulk, 1, eventlog.Index(prefix+1))
		ctx := context.Background()
		bb, err := bulk.store.NewBulkBuilder(ctx, bulk.log)
		if err != nil {
			t.Fatal(err)
		}
		feedAndAppend(t, bulk, bb, all[prefix:], 37, tc.parsed)
		st, err := bb.Finish(ctx, bulk.log)
		if err != nil {
			t.Fatal(err)
		}
		if got := bb.EventsReadFromLog(); got != int64(prefix) {
			t.Fatalf("prefix %d: the builder read %d events back from the log", prefix, got)
		}
		if got := bulk.store.BulkApplied(); got < eventlog.Index(distinct) || st.Added < int64(distinct) {
			t.Fatalf("prefix %d: bulk build applied up to %d (%d added), want at least the %d distinct keys", prefix, got, st.Added, distinct)
		}
		catchUp(t, bulk)
		compareDBs(t, inc.store, bulk.store)
		if inc.store.PtreeElements() != bulk.store.PtreeElements() {
			t.Fatal("prefix trees differ in size")
		}
	}
}

// TestBulkBuilderAbortLeavesStoreEmpty: an aborted builder, and one whose
// Finish is cancelled, leave nothing visible, and the store then catches
// up from the log as incremental application does.
func TestBulkBuilderAbortLeavesStoreEmpty(t *testing.T) {
	inc, _ := bulkTestLog(t)
	all := readEvents(t, inc, 1, 0)
	bulk := openStoreBulk(t, t.TempDir(), 1)
	before := dumpDB(t, bulk.store)
	ctx := context.Background()
	bb, err := bulk.store.NewBulkBuilder(ctx, bulk.log)
	if err != nil {
		t.Fatal(err)
	}
	feedAndAppend(t, bulk, bb, all[:150], 50, false)
	bb.Abort()
	bb.Abort() // twice is harmless

	bb, err = bulk.store.NewBulkBuilder(ctx, bulk.log)
	if err != nil {
		t.Fatal(err)
	}
	feedAndAppend(t, bulk, bb, all[150:], 50, true)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := bb.Finish(cctx, bulk.log); err == nil {
		t.Fatal("cancelled Finish reported success")
	}
	if got := dumpDB(t, bulk.store); bulk.store.Applied() != 0 || len(got) != len(before) {
		t.Fatalf("after an aborted build: applied %d, %d entries (before: %d)", bulk.store.Applied(), len(got), len(before))
	}
	catchUp(t, bulk)
	compareDBs(t, inc.store, bulk.store)
}

// TestBulkBuilderChecksIndexes: events must follow the log's last index,
// Finish refuses when the log does not hold every event added, and a store
// that is not empty has no builder.
func TestBulkBuilderChecksIndexes(t *testing.T) {
	inc, _ := bulkTestLog(t)
	all := readEvents(t, inc, 1, 0)
	bulk := openStoreBulk(t, t.TempDir(), 1)
	ctx := context.Background()
	bb, err := bulk.store.NewBulkBuilder(ctx, bulk.log)
	if err != nil {
		t.Fatal(err)
	}
	if err := bb.Add(2, all[:10], nil); err == nil {
		t.Fatal("Add from index 2 into an empty log accepted")
	}
	if err := bb.Add(1, all, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bb.Finish(ctx, bulk.log); err == nil {
		t.Fatal("Finish accepted events the log does not hold")
	}
	if bulk.store.Applied() != 0 {
		t.Fatalf("applied %d after a refused Finish", bulk.store.Applied())
	}
	copyLog(t, inc, bulk, 1, 0)
	catchUp(t, bulk)
	if _, err := bulk.store.NewBulkBuilder(ctx, bulk.log); err != projections.ErrBulkNotApplicable {
		t.Fatalf("builder on a built store: %v, want ErrBulkNotApplicable", err)
	}
}
