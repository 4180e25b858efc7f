package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// ErrBulkNotApplicable says the bulk path cannot build the store from the
// events given (the store is not empty, too few events, a hash collision,
// a sample-point hash, a second version of the first key): nothing was
// changed, and catching up from the log (CatchUp) builds it instead.
var ErrBulkNotApplicable = errBulkFallback

// BulkBuilder is the bulk path fed by the writer of the log instead of
// reading the log back: an import into an empty store hands it each run of
// events as it appends them, so that the events are prepared and sorted
// while the log is written, and are not read and parsed a second time.
//
// Nothing it builds is visible before Finish, which the caller calls once
// every event it added is durable in the log; Finish ingests the
// projections with their applied indexes in one step, as CatchUp's bulk
// path does, so a crash before it leaves the store empty. While a builder
// is open it is the store's only applier (CatchUp waits).
type BulkBuilder struct {
	s    *Store
	b    *bulkBuild
	next eventlog.Index // index the next Add must start at

	in     chan bulkInput
	failed chan struct{} // closed when the builder stopped on an error
	done   chan struct{} // closed when the adding goroutine has ended
	err    error         // valid once failed or done is closed
	ended  bool          // Finish or Abort ran
	unlock sync.Once
}

type bulkInput struct {
	first eventlog.Index
	evs   []*eventlog.Event
	keys  []*pgpkey.Key // nil, or one per event
}

// NewBulkBuilder starts a bulk build of the empty store from log, whose
// events already appended (a resumed import) it reads first. It returns
// ErrBulkNotApplicable when the store is not empty.
func (s *Store) NewBulkBuilder(ctx context.Context, log *eventlog.Log) (*BulkBuilder, error) {
	s.applyMu.Lock()
	b, err := s.newBulkBuild()
	if err != nil {
		s.applyMu.Unlock()
		return nil, err
	}
	prefix := log.LastIndex()
	bb := &BulkBuilder{
		s: s, b: b, next: prefix + 1,
		in:     make(chan bulkInput, 1),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	// Two stages, as in bulkScan: one goroutine prepares a batch (on
	// cfg.Workers goroutines) while the next adds the one before to the
	// sorts.
	prepared := make(chan bulkBatch, 2)
	go func() {
		defer close(prepared)
		for in := range bb.in {
			for len(in.evs) > 0 {
				n := min(len(in.evs), s.cfg.BatchEvents)
				idxs := make([]eventlog.Index, n)
				for i := range idxs {
					idxs[i] = in.first + eventlog.Index(i)
				}
				var batch bulkBatch
				select {
				case <-bb.failed:
				default:
					var keys []*pgpkey.Key
					if in.keys != nil {
						keys = in.keys[:n]
					}
					batch = s.prepareBatch(idxs, in.evs[:n], keys, b.arenas)
				}
				prepared <- batch
				in.first += eventlog.Index(n)
				in.evs = in.evs[n:]
				if in.keys != nil {
					in.keys = in.keys[n:]
				}
			}
		}
	}()
	go func() {
		defer close(bb.done)
		fail := func(err error) {
			bb.err = err
			close(bb.failed)
			for range prepared { // let the preparing goroutine end
			}
		}
		if prefix > 0 {
			if err := s.bulkScan(ctx, log, 1, prefix, b.arenas, b.addFromLog); err != nil {
				fail(err)
				return
			}
		}
		for batch := range prepared {
			for i := range batch.preps {
				if _, err := b.add(&batch.preps[i]); err != nil {
					fail(err)
					return
				}
			}
			b.arenas.put(&batch)
		}
	}()
	return bb, nil
}

// Add hands the builder events first, first+1, ... in log order, starting
// right after the log's last index when the builder was made or the last
// event added. keys, when not nil, holds each event's key as
// ParseEventKey(ev.Key) returns it (nil entries are parsed here), so that
// a writer that parsed them already saves the second parse. The caller
// keeps events and keys unchanged; Add returns before they are processed
// (at most one call's events wait), or the error that stopped the builder.
func (bb *BulkBuilder) Add(first eventlog.Index, evs []*eventlog.Event, keys []*pgpkey.Key) error {
	if keys != nil && len(keys) != len(evs) {
		return fmt.Errorf("bulk: %d keys for %d events", len(keys), len(evs))
	}
	if bb.ended {
		return errors.New("bulk: Add after Finish or Abort")
	}
	if first != bb.next {
		return fmt.Errorf("bulk: events added from index %d, want %d", first, bb.next)
	}
	if len(evs) == 0 {
		return nil
	}
	select {
	case bb.in <- bulkInput{first, evs, keys}:
		bb.next += eventlog.Index(len(evs))
		return nil
	case <-bb.failed:
		return bb.err
	}
}

// Finish builds and ingests the projections of the events added (up to
// the first admin event or second version of a key, as CatchUp's bulk
// path). Every event added must be durable in log. Events after what it
// built are left to CatchUp. It returns ErrBulkNotApplicable, with the
// store unchanged, when the bulk path cannot build them.
func (bb *BulkBuilder) Finish(ctx context.Context, log *eventlog.Log) (ApplyStats, error) {
	if bb.ended {
		return ApplyStats{}, errors.New("bulk: Finish after Finish or Abort")
	}
	defer bb.Abort()
	bb.ended = true
	close(bb.in)
	<-bb.done
	if bb.err != nil {
		return ApplyStats{}, bb.err
	}
	if added := bb.next - 1; log.LastIndex() < added {
		// Applied indexes must never pass the durable log.
		return ApplyStats{}, fmt.Errorf("bulk: events up to %d added but the log ends at %d", added, log.LastIndex())
	}
	if bb.s.cfg.BulkMinEvents <= 0 || int64(bb.b.fed) < int64(bb.s.cfg.BulkMinEvents) {
		return ApplyStats{}, errBulkFallback
	}
	return bb.b.finish(ctx)
}

// EventsReadFromLog is how many events the builder read back from the log
// (those appended before it was made); valid after Finish.
func (bb *BulkBuilder) EventsReadFromLog() int64 { return bb.b.fromLog }

// Abort stops the builder and removes what it wrote; the store is left as
// it was. It is safe after Finish (it does nothing more then).
func (bb *BulkBuilder) Abort() {
	if !bb.ended {
		bb.ended = true
		close(bb.in)
		<-bb.done
	}
	bb.unlock.Do(func() {
		bb.b.discard()
		bb.s.applyMu.Unlock()
	})
}
