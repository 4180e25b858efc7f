package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

func TestAppendReadReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log") // Open creates it
	cfg := testConfig(t, nil)
	l := mustOpen(t, dir, cfg)
	if got := l.LastIndex(); got != 0 {
		t.Fatalf("LastIndex of new log = %d, want 0", got)
	}
	if got := l.FirstIndex(); got != 0 {
		t.Fatalf("FirstIndex of new log = %d, want 0", got)
	}
	if _, err := l.Read(1); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("Read(1) of empty log: err = %v, want ErrNotFound", err)
	}
	const n = 300 // several 4 KiB segments
	for k := 1; k <= n; k++ {
		if got, want := mustAppend(t, l, keyEvent(k)), eventlog.Index(k); got != want {
			t.Fatalf("Append #%d returned %d, want %d", k, got, want)
		}
	}
	check := func(l *eventlog.Log) {
		t.Helper()
		if got, want := l.FirstIndex(), eventlog.Index(1); got != want {
			t.Fatalf("FirstIndex = %d, want %d", got, want)
		}
		if got, want := l.LastIndex(), eventlog.Index(n); got != want {
			t.Fatalf("LastIndex = %d, want %d", got, want)
		}
		for k := n; k >= 1; k-- { // backwards: every segment, out of order
			checkEntry(t, l, eventlog.Index(k), k)
		}
		for _, i := range []eventlog.Index{0, n + 1} {
			if _, err := l.Read(i); !errors.Is(err, eventlog.ErrNotFound) {
				t.Fatalf("Read(%d): err = %v, want ErrNotFound", i, err)
			}
		}
	}
	check(l)
	segs, _ := filepath.Glob(filepath.Join(dir, "000*"))
	if len(segs) < 5 {
		t.Fatalf("%d segment files, want several: %v", len(segs), segs)
	}
	if got := l.SizeBytes(); got < int64(n*100) {
		t.Fatalf("SizeBytes = %d, want at least %d", got, n*100)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, cfg)
	defer l.Close()
	check(l)
	if got, want := mustAppend(t, l, keyEvent(n+1)), eventlog.Index(n+1); got != want {
		t.Fatalf("Append after reopen returned %d, want %d", got, want)
	}
	checkEntry(t, l, n+1, n+1)
}

func TestAppendBatchAndTimes(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig(t, nil))
	defer l.Close()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.Local)
	future := time.Now().Add(time.Hour)
	events := []*eventlog.Event{
		{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginImport, Peer: "a.pgp", Key: []byte{1}, Time: t0},
		{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginImport, Peer: "a.pgp", Key: []byte{2}, Time: t0.Add(-time.Hour)}, // older: raised
		{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginImport, Peer: "a.pgp", Key: []byte{3}},                           // zero: now
		{Kind: eventlog.KindKeyBlocked, Origin: eventlog.OriginAdmin, Target: []byte{0xaa, 0xbb}, Reason: "test", Time: future},   // future: now
	}
	before := time.Now()
	if got, want := mustAppend(t, l, events...), eventlog.Index(4); got != want {
		t.Fatalf("Append returned %d, want %d", got, want)
	}
	after := time.Now()
	if !events[2].Time.IsZero() {
		t.Fatalf("Append modified its events")
	}
	var got []*eventlog.Event
	for i := eventlog.Index(1); i <= 4; i++ {
		e, err := l.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if !got[0].Time.Equal(t0) || got[0].Time.Location() != time.UTC {
		t.Errorf("entry 1 time %v, want %v in UTC", got[0].Time, t0)
	}
	if !got[1].Time.Equal(t0) {
		t.Errorf("entry 2 time %v, want %v (raised to the previous entry's)", got[1].Time, t0)
	}
	for k := 2; k < 4; k++ {
		if got[k].Time.Before(before) || got[k].Time.After(after) {
			t.Errorf("entry %d time %v, want between %v and %v", k+1, got[k].Time, before, after)
		}
	}
	if got[3].Kind != eventlog.KindKeyBlocked || string(got[3].Target) != "\xaa\xbb" || got[3].Reason != "test" {
		t.Errorf("entry 4 = %+v", got[3])
	}
}

func TestAppendRejects(t *testing.T) {
	cfg := testConfig(t, nil)
	cfg.MaxEventBytes = 1000
	l := mustOpen(t, t.TempDir(), cfg)
	defer l.Close()
	ctx := context.Background()
	big := &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Key: make([]byte, 1000)}
	if _, err := l.Append(ctx, keyEvent(1), big); !errors.Is(err, eventlog.ErrTooLarge) {
		t.Fatalf("oversize event: err = %v, want ErrTooLarge", err)
	}
	fits := &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Key: make([]byte, 900)}
	if _, err := l.Append(ctx, fits); err != nil {
		t.Fatalf("event under the limit: %v", err)
	}
	for name, e := range map[string]*eventlog.Event{
		"NoKind":      {Origin: eventlog.OriginHKP, Key: []byte{1}},
		"UnknownKind": {Kind: 9, Origin: eventlog.OriginHKP, Key: []byte{1}},
		"NoOrigin":    {Kind: eventlog.KindKeySubmitted, Key: []byte{1}},
		"NoKey":       {Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP},
		"NoTarget":    {Kind: eventlog.KindKeyDeleted, Origin: eventlog.OriginAdmin},
		"AncientTime": {Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Key: []byte{1}, Time: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := l.Append(ctx, keyEvent(1), e); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if got, want := l.LastIndex(), eventlog.Index(1); got != want {
		t.Fatalf("LastIndex = %d after rejected appends, want %d (nothing of a rejected call stored)", got, want)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.Append(canceled, keyEvent(2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled ctx: err = %v, want context.Canceled", err)
	}
	if last, err := l.Append(ctx); last != 0 || err != nil {
		t.Fatalf("Append() = %d, %v, want 0, nil", last, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []eventlog.Config{
		{SegmentSize: -1}, {SegmentSize: 2 << 30}, {MaxEventBytes: -1}, {MaxEventBytes: 2 << 30}, {TailBytes: 2 << 30},
	} {
		err := cfg.Validate()
		var ce *eventlog.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("Validate(%+v) = %v, want a *ConfigError", cfg, err)
		}
		if _, err := eventlog.Open(t.TempDir(), cfg); err == nil {
			t.Errorf("Open with %+v succeeded", cfg)
		}
	}
	if err := eventlog.DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
	// The zero Config is usable: defaults and no logging.
	l, err := eventlog.Open(t.TempDir(), eventlog.Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, keyEvent(1))
	l.Close()
}

func TestClose(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig(t, nil))
	mustAppend(t, l, keyEvent(1))
	ch := l.Notify()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Errorf("Close did not close the Notify channel")
	}
	<-l.Notify() // closed after Close, never blocks
	if _, err := l.Append(context.Background(), keyEvent(2)); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("Append after Close: err = %v, want ErrClosed", err)
	}
	if _, err := l.Read(1); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("Read after Close: err = %v, want ErrClosed", err)
	}
	if _, _, err := l.NewIterator(0, 0).Next(); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("iterating after Close: err = %v, want ErrClosed", err)
	}
	if err := l.Close(); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("second Close: err = %v, want ErrClosed", err)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, testConfig(t, nil))
	if _, err := eventlog.Open(dir, testConfig(t, nil)); !errors.Is(err, eventlog.ErrLocked) {
		t.Fatalf("second Open: err = %v, want ErrLocked", err)
	}
	l.Close()
	l = mustOpen(t, dir, testConfig(t, nil)) // the lock went with Close
	l.Close()
}

// TestGroupCommit appends from many goroutines with real fsyncs.
func TestGroupCommit(t *testing.T) {
	cfg := testConfig(t, nil)
	cfg.NoSync = false
	dir := t.TempDir()
	l := mustOpen(t, dir, cfg)
	const goroutines, perG = 32, 20
	type ack struct {
		idx eventlog.Index
		n   int
	}
	acks := make(chan ack, goroutines*perG*3)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for k := range perG {
				n := (g*perG + k) * 3
				batch := 1 + k%3 // 1, 2 or 3 events per call
				var events []*eventlog.Event
				for j := range batch {
					events = append(events, keyEvent(n+j))
				}
				last, err := l.Append(context.Background(), events...)
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				for j := range batch {
					acks <- ack{last - eventlog.Index(batch-1-j), n + j}
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	close(acks)
	seen := map[eventlog.Index]int{}
	for a := range acks {
		if prev, dup := seen[a.idx]; dup {
			t.Fatalf("index %d returned for events %d and %d", a.idx, prev, a.n)
		}
		seen[a.idx] = a.n
	}
	total := 0
	for k := range perG {
		total += goroutines * (1 + k%3)
	}
	if len(seen) != total {
		t.Fatalf("%d acknowledged events, want %d", len(seen), total)
	}
	if got := l.LastIndex(); got != eventlog.Index(total) {
		t.Fatalf("LastIndex = %d, want %d (dense)", got, total)
	}
	st := l.Stats()
	t.Logf("stats: %+v for %d Append calls", st, goroutines*perG)
	if st.Events != uint64(total) {
		t.Errorf("Stats.Events = %d, want %d", st.Events, total)
	}
	if st.Syncs == 0 || st.Syncs >= uint64(goroutines*perG) {
		t.Errorf("Stats.Syncs = %d, want fewer than the %d Append calls (group commit)", st.Syncs, goroutines*perG)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, cfg)
	defer l.Close()
	for idx, n := range seen {
		checkEntry(t, l, idx, n)
	}
}

func TestNotify(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig(t, nil))
	defer l.Close()
	ch := l.Notify()
	select {
	case <-ch:
		t.Fatal("Notify channel closed before any append")
	default:
	}
	const waiters = 5
	woke := make(chan eventlog.Index, waiters)
	var ready sync.WaitGroup
	for range waiters {
		ready.Add(1)
		go func() {
			c := l.Notify()
			ready.Done()
			<-c
			woke <- l.LastIndex()
		}()
	}
	ready.Wait()
	mustAppend(t, l, keyEvent(1))
	for range waiters {
		select {
		case got := <-woke:
			if got != 1 {
				t.Errorf("waiter woke with LastIndex %d, want 1", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("waiter not woken by Append")
		}
	}
	if l.Notify() == ch {
		t.Fatal("Notify channel not replaced after an append")
	}
	// The follower pattern from doc.go sees every index.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan eventlog.Index)
	go func() {
		var applied eventlog.Index
		for applied < 50 {
			c := l.Notify()
			if l.LastIndex() > applied {
				it := l.NewIterator(applied+1, 0)
				for {
					i, _, err := it.Next()
					if err == io.EOF {
						break
					}
					if err != nil || i != applied+1 {
						t.Errorf("follower: Next = %d, %v after %d", i, err, applied)
						close(done)
						return
					}
					applied = i
				}
				continue
			}
			select {
			case <-c:
			case <-ctx.Done():
				close(done)
				return
			}
		}
		done <- applied
	}()
	for k := 2; k <= 50; k++ {
		mustAppend(t, l, keyEvent(k))
	}
	if got := <-done; got != 50 {
		t.Fatalf("follower reached %d, want 50", got)
	}
}

func TestIterator(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig(t, nil))
	defer l.Close()
	const n = 200
	var events []*eventlog.Event
	for k := 1; k <= n; k++ {
		events = append(events, keyEvent(k))
	}
	mustAppend(t, l, events...)
	collect := func(it *eventlog.Iterator) ([]eventlog.Index, error) {
		var got []eventlog.Index
		for {
			i, e, err := it.Next()
			if err == io.EOF {
				return got, nil
			}
			if err != nil {
				return got, err
			}
			if want := keyEvent(int(i)); e.Peer != want.Peer || string(e.Key) != string(want.Key) {
				return got, fmt.Errorf("entry %d: peer %q, want %q", i, e.Peer, want.Peer)
			}
			got = append(got, i)
		}
	}
	tests := []struct {
		from, to   eventlog.Index
		first, end eventlog.Index // want [first, end)
	}{
		{0, 0, 1, n + 1},
		{1, n + 1, 1, n + 1},
		{5, 6, 5, 6},
		{5, 5, 0, 0},
		{7, 3, 0, 0},
		{150, 0, 150, n + 1},
		{n, 0, n, n + 1},
		{n + 1, 0, 0, 0},
		{100, 1000, 100, n + 1},
		{33, 97, 33, 97},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("from=%d,to=%d", tt.from, tt.to), func(t *testing.T) {
			got, err := collect(l.NewIterator(tt.from, tt.to))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != int(tt.end-tt.first) {
				t.Fatalf("got %d entries, want [%d, %d)", len(got), tt.first, tt.end)
			}
			for k, i := range got {
				if want := tt.first + eventlog.Index(k); i != want {
					t.Fatalf("entry %d has index %d, want %d", k, i, want)
				}
			}
		})
	}
	t.Run("SnapshotAtCreation", func(t *testing.T) {
		it := l.NewIterator(n-1, 0)
		mustAppend(t, l, keyEvent(n+1))
		got, err := collect(it)
		if err != nil || len(got) != 2 {
			t.Fatalf("got %v, %v, want [%d %d]", got, err, n-1, n)
		}
	})
	t.Run("StickyEOFAndClose", func(t *testing.T) {
		it := l.NewIterator(1, 2)
		if _, _, err := it.Next(); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, _, err := it.Next(); err != io.EOF {
				t.Fatalf("err = %v, want io.EOF", err)
			}
		}
		it = l.NewIterator(1, 0)
		it.Close()
		if _, _, err := it.Next(); !errors.Is(err, eventlog.ErrClosed) {
			t.Fatalf("Next after Close: err = %v, want ErrClosed", err)
		}
	})
}

func TestIndexAtTime(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig(t, nil))
	defer l.Close()
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if got, err := l.IndexAtTime(base); got != 0 || err != nil {
		t.Fatalf("empty log: IndexAtTime = %d, %v, want 0, nil", got, err)
	}
	// Entry k (1-based) at base + (k/3) seconds: runs of equal times, and
	// enough entries for several segments.
	const n = 400
	for k := 1; k <= n; k++ {
		e := keyEvent(k)
		e.Time = base.Add(time.Duration(k/3) * time.Second)
		mustAppend(t, l, e)
	}
	at := func(k int) time.Time { return base.Add(time.Duration(k/3) * time.Second) }
	for k := 1; k <= n; k++ {
		want := k
		for want+1 <= n && !at(want+1).After(at(k)) {
			want++
		}
		got, err := l.IndexAtTime(at(k))
		if err != nil || got != eventlog.Index(want) {
			t.Fatalf("IndexAtTime(entry %d's time) = %d, %v, want %d", k, got, err, want)
		}
		if got, err := l.IndexAtTime(at(k).Add(time.Millisecond)); err != nil || got != eventlog.Index(want) {
			t.Fatalf("IndexAtTime(entry %d's time + 1ms) = %d, %v, want %d", k, got, err, want)
		}
	}
	for _, tt := range []struct {
		t    time.Time
		want eventlog.Index
	}{
		{base.Add(-time.Nanosecond), 0},
		{base, 2},
		{time.Time{}, 0},
		{base.Add(1000 * time.Hour), n},
		{time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), n},
	} {
		if got, err := l.IndexAtTime(tt.t); err != nil || got != tt.want {
			t.Errorf("IndexAtTime(%v) = %d, %v, want %d", tt.t, got, err, tt.want)
		}
	}
}

func TestOpenReadOnly(t *testing.T) {
	dir := t.TempDir()
	if _, err := eventlog.OpenReadOnly(filepath.Join(dir, "missing"), eventlog.Config{}); err == nil {
		t.Fatal("OpenReadOnly of a missing directory succeeded")
	}
	cfg := testConfig(t, nil)
	w := mustOpen(t, dir, cfg)
	defer w.Close()
	for k := 1; k <= 100; k++ {
		mustAppend(t, w, keyEvent(k))
	}
	r, err := eventlog.OpenReadOnly(dir, cfg) // while w holds the lock
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := r.LastIndex(); got != 100 {
		t.Fatalf("read-only LastIndex = %d, want 100", got)
	}
	for k := 1; k <= 100; k++ {
		checkEntry(t, r, eventlog.Index(k), k)
	}
	if _, err := r.Append(context.Background(), keyEvent(1)); !errors.Is(err, eventlog.ErrReadOnly) {
		t.Fatalf("read-only Append: err = %v, want ErrReadOnly", err)
	}
	ch := r.Notify()
	// Appends by the writer, across new segments, become visible.
	for k := 101; k <= 250; k++ {
		mustAppend(t, w, keyEvent(k))
	}
	checkEntry(t, r, 250, 250) // Read past the last known index looks again
	if got := r.LastIndex(); got != 250 {
		t.Fatalf("read-only LastIndex = %d after appends, want 250", got)
	}
	select {
	case <-ch:
	default:
		t.Error("read-only Notify channel not closed after new entries were seen")
	}
	n := 0
	it := r.NewIterator(0, 0)
	for {
		i, _, err := it.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		checkEntry(t, r, i, int(i))
	}
	if n != 250 {
		t.Fatalf("read-only iteration saw %d entries, want 250", n)
	}
	if got, err := r.IndexAtTime(time.Now()); err != nil || got != 250 {
		t.Fatalf("read-only IndexAtTime(now) = %d, %v, want 250", got, err)
	}
	// A torn frame at the tail (as a writer mid-write leaves it) is not served.
	segs, _ := filepath.Glob(filepath.Join(dir, "000*"))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{50, 1, 1, 1}) // claims 50 bytes, has 3
	f.Close()
	if got := r.LastIndex(); got != 250 {
		t.Fatalf("read-only LastIndex = %d with a torn tail, want 250", got)
	}
	if _, err := r.Read(251); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("read-only Read(251) with a torn tail: err = %v, want ErrNotFound", err)
	}
	if fi, err := os.Stat(segs[len(segs)-1]); err != nil || fi.Size() == 0 {
		t.Fatalf("read-only log changed the file: %v %v", fi, err)
	}
}

// TestReopenSmallerSegments: a log written with bigger segments (the old
// 20 MiB default) opens and grows under a smaller SegmentSize: the big
// tail segment is left as it is and the next append starts a new one, as
// the writer predicts (testConfig fails the test on a misprediction).
func TestReopenSmallerSegments(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, nil)
	cfg.SegmentSize = 64 << 10
	l := mustOpen(t, dir, cfg)
	const n = 200
	for k := 1; k <= n; k++ {
		mustAppend(t, l, keyEvent(k))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := filepath.Glob(filepath.Join(dir, "000*"))
	cfg.SegmentSize = 4 << 10
	l = mustOpen(t, dir, cfg)
	for k := n + 1; k <= 2*n; k++ {
		if got, want := mustAppend(t, l, keyEvent(k)), eventlog.Index(k); got != want {
			t.Fatalf("Append #%d returned %d, want %d", k, got, want)
		}
	}
	after, _ := filepath.Glob(filepath.Join(dir, "000*"))
	if len(after) <= len(before)+1 {
		t.Fatalf("%d segment files after appending with smaller segments, had %d", len(after), len(before))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, cfg)
	defer l.Close()
	for k := 1; k <= 2*n; k++ {
		checkEntry(t, l, eventlog.Index(k), k)
	}
}

// TestAppendReusesBuffers: Append recycles its record buffers; batches of
// shrinking and growing sizes, from several goroutines, must each store
// exactly their own events (no bytes left over from a bigger batch before).
func TestAppendReusesBuffers(t *testing.T) {
	l := mustOpen(t, t.TempDir(), testConfig(t, nil))
	defer l.Close()
	sizes := []int{50, 1, 20, 3, 50, 2}
	var wg sync.WaitGroup
	got := make([][]eventlog.Index, 3)
	for g := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			base := (g + 1) * 10000
			for r, size := range sizes {
				events := make([]*eventlog.Event, size)
				for k := range events {
					events[k] = keyEvent(base + r*100 + k)
				}
				last, err := l.Append(context.Background(), events...)
				if err != nil {
					t.Error(err)
					return
				}
				got[g] = append(got[g], last)
			}
		}()
	}
	wg.Wait()
	for g, lasts := range got {
		base := (g + 1) * 10000
		for r, last := range lasts {
			for k := 0; k < sizes[r]; k++ {
				checkEntry(t, l, last-eventlog.Index(sizes[r]-1-k), base+r*100+k)
			}
		}
	}
}

// TestAppendNewSegmentsWithoutListing: a batch that starts segments finds
// them where the writer predicted without listing the directory (a listing
// per batch grew with the log), and the segments serve reads as before.
func TestAppendNewSegmentsWithoutListing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	cfg := testConfig(t, nil) // 4 KiB segments: a batch in six starts one
	l := mustOpen(t, dir, cfg)
	defer l.Close()
	before := eventlog.DirectoryListings(l)
	n := 0
	for b := 0; b < 100; b++ {
		var evs []*eventlog.Event
		for range 1 + b%7 {
			n++
			evs = append(evs, keyEvent(n))
		}
		mustAppend(t, l, evs...)
	}
	if got := eventlog.DirectoryListings(l) - before; got != 0 {
		t.Fatalf("appending 100 batches listed the log directory %d times, want 0", got)
	}
	if segs := len(segmentFiles(t, dir)); segs < 10 {
		t.Fatalf("%d segments, want at least 10", segs)
	}
	for i := 1; i <= n; i++ {
		checkEntry(t, l, eventlog.Index(i), i)
	}
}

// TestAppendQueued: batches queued one after the other without waiting
// are stored in that order, each wait returns its batch's last index once
// durable, and those queued while the writer commits go out together in
// its next commit.
func TestAppendQueued(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	l := mustOpen(t, dir, testConfig(t, nil))
	defer l.Close()
	// Hold the writer in its first commit until the other batches are
	// queued.
	inCommit, release := make(chan struct{}), make(chan struct{})
	first := true
	eventlog.SetAfterWriteHook(l, func() error {
		if first {
			first = false
			close(inCommit)
			<-release
		}
		return nil
	})
	const batches, per = 20, 3
	var waits []func() (eventlog.Index, error)
	n := 0
	for b := 0; b < batches; b++ {
		var evs []*eventlog.Event
		for range per {
			n++
			evs = append(evs, keyEvent(n))
		}
		wait, err := l.AppendQueued(context.Background(), evs...)
		if err != nil {
			t.Fatalf("AppendQueued #%d: %v", b, err)
		}
		waits = append(waits, wait)
		if b == 0 {
			// The rest are queued while the writer commits the first.
			<-inCommit
		}
	}
	if got := l.Appending(); got != batches {
		t.Fatalf("Appending() = %d with %d batches queued, want %d", got, batches, batches)
	}
	close(release)
	for b, wait := range waits {
		last, err := wait()
		if err != nil {
			t.Fatalf("wait #%d: %v", b, err)
		}
		if want := eventlog.Index((b + 1) * per); last != want {
			t.Fatalf("batch %d ends at %d, want %d", b, last, want)
		}
	}
	if got := l.Appending(); got != 0 {
		t.Fatalf("Appending() = %d after every wait, want 0", got)
	}
	for i := 1; i <= n; i++ {
		checkEntry(t, l, eventlog.Index(i), i)
	}
	if got := l.Stats().Batches; got != 2 {
		t.Fatalf("%d commits for %d batches queued behind a first, want 2", got, batches)
	}
	// Nothing to queue: nothing stored, the wait returns 0.
	wait, err := l.AppendQueued(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if last, err := wait(); last != 0 || err != nil {
		t.Fatalf("wait of an empty batch = %d, %v", last, err)
	}
}
