package projections

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Progress is reported after every committed batch while catching up.
type Progress struct {
	Applied eventlog.Index // now applied
	Target  eventlog.Index // the log's last index when catching up started
	Stats   ApplyStats     // totals since catching up started
}

// CatchUp applies every event from Applied()+1 to the log's last index, in
// batches, then returns. It parses events on cfg.Workers goroutines ahead of
// the single applier. progress, when non-nil, is called after each batch.
func (s *Store) CatchUp(ctx context.Context, log *eventlog.Log, progress func(Progress)) (ApplyStats, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.catchUp(ctx, log, progress)
}

func (s *Store) catchUp(ctx context.Context, log *eventlog.Log, progress func(Progress)) (ApplyStats, error) {
	var total ApplyStats
	next := s.Applied() + 1
	target := log.LastIndex()
	if next > target {
		return total, nil
	}
	if s.cfg.BulkMinEvents > 0 && next == 1 && s.keys == 0 && int64(target) >= int64(s.cfg.BulkMinEvents) {
		st, err := s.bulkApply(ctx, log, target)
		switch {
		case errors.Is(err, errBulkFallback):
			s.log.Info().Uint64("target", uint64(target)).Msg("bulk path not applicable; applying incrementally")
		case err != nil:
			return total, err
		default:
			total.add(st)
			if progress != nil {
				progress(Progress{Applied: s.Applied(), Target: target, Stats: total})
			}
			next = s.Applied() + 1
			if next > target {
				return total, nil
			}
		}
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The producer reads batches from the log and parses them in parallel;
	// the applier below writes them in log order. Two batches in flight keep
	// both cores busy without unbounded memory.
	batches := make(chan []parsedEvent, 2)
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(batches)
		readErr = s.produce(ctx, log, next, target+1, batches)
	}()

	var err error
	for batch := range batches {
		if err = s.applyBatch(batch); err != nil {
			break
		}
		total.add(s.lastBatchStats)
		if progress != nil {
			progress(Progress{Applied: s.Applied(), Target: target, Stats: total})
		}
	}
	cancel()
	for range batches { // drain so the producer can exit
	}
	wg.Wait()
	if err != nil {
		return total, err
	}
	if readErr != nil && !errors.Is(readErr, context.Canceled) {
		return total, readErr
	}
	return total, parent.Err()
}

func (s *Store) produce(ctx context.Context, log *eventlog.Log, from, to eventlog.Index, out chan<- []parsedEvent) error {
	it := log.NewIterator(from, to)
	for {
		batch := make([]parsedEvent, 0, s.cfg.BatchEvents)
		for len(batch) < s.cfg.BatchEvents {
			idx, ev, err := it.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("read log at %d: %w", from, err)
			}
			batch = append(batch, parsedEvent{idx: idx, ev: ev})
		}
		if len(batch) == 0 {
			return nil
		}
		s.parseParallel(batch)
		select {
		case out <- batch:
		case <-ctx.Done():
			return ctx.Err()
		}
		if len(batch) < s.cfg.BatchEvents {
			return nil
		}
	}
}

func (s *Store) parseParallel(batch []parsedEvent) {
	workers := s.cfg.Workers
	if workers > len(batch) {
		workers = len(batch)
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(batch); i += workers {
				batch[i] = parseEvent(batch[i].idx, batch[i].ev)
			}
		}(w)
	}
	wg.Wait()
}

// applyBatch applies parsed events in order and commits them with the new
// applied index. On error nothing of the batch is visible and the prefix
// tree's cache is dropped.
func (s *Store) applyBatch(batch []parsedEvent) error {
	if len(batch) == 0 {
		return nil
	}
	if want := s.Applied() + 1; batch[0].idx != want {
		return fmt.Errorf("apply index %d: want %d next", batch[0].idx, want)
	}
	a := s.newBatchApplier()
	for _, pe := range batch {
		if err := a.apply(pe); err != nil {
			a.b.Close()
			s.tree.Reset()
			return fmt.Errorf("apply index %d: %w", pe.idx, err)
		}
	}
	last := batch[len(batch)-1].idx
	if err := a.commit(last); err != nil {
		return err
	}
	s.admin.update(a.blocked, a.suppressed)
	if capacity, ok := s.presence.outgrown(); ok {
		s.startPresence(capacity) // a larger one, before the false positives grow
	}
	s.lastBatchStats = a.stats
	s.mu.Lock()
	if s.totals == nil {
		s.totals = make(map[eventlog.Origin]ApplyStats)
	}
	for o, st := range a.byOrigin {
		t := s.totals[o]
		t.add(st)
		s.totals[o] = t
	}
	s.mu.Unlock()
	s.setApplied(last)
	return nil
}

// ApplyParsed applies events whose keys the caller already parsed (the import
// command parses once to validate, and hands the result here instead of
// having the runner parse it again). keys[i] belongs to events[i] at index
// first+i; events must directly follow Applied().
func (s *Store) ApplyParsed(first eventlog.Index, events []*eventlog.Event, keys []*pgpkey.Key) (ApplyStats, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	batch := make([]parsedEvent, len(events))
	for i, ev := range events {
		batch[i] = parsedEvent{idx: first + eventlog.Index(i), ev: ev, key: keys[i]}
		if keys[i] == nil {
			batch[i] = parseEvent(batch[i].idx, ev)
		}
	}
	var total ApplyStats
	for len(batch) > 0 {
		n := min(len(batch), s.cfg.BatchEvents)
		if err := s.applyBatch(batch[:n]); err != nil {
			return total, err
		}
		total.add(s.lastBatchStats)
		batch = batch[n:]
	}
	return total, nil
}

// Follow applies new events as the log grows until ctx is done. Errors are
// logged and retried with backoff: a projection that cannot apply stays
// behind (readers see Applied() lag) rather than skipping an event. It
// applies on a thread of its own at a lower priority (Config.BackgroundNice),
// which ends when Follow returns.
func (s *Store) Follow(ctx context.Context, log *eventlog.Log) error {
	s.lowerPriority("sks")
	defer s.followHockeypuck(ctx, log)() // its own goroutine and applied index
	backoff := 100 * time.Millisecond
	for {
		notify := log.Notify()
		if _, err := s.CatchUp(ctx, log, nil); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.log.Error().Err(err).Uint64("applied", uint64(s.Applied())).Msg("apply log events")
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return ctx.Err()
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if s.Applied() < log.LastIndex() {
			// Events arrived while applying: a burst goes on. Gather the
			// rest of a batch (at once if it is there already).
			s.gather(ctx, log)
			continue
		}
		select {
		case <-notify:
			s.gather(ctx, log)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// lowerPriority lowers the calling goroutine's thread by
// cfg.BackgroundNice (nice_linux.go); the goroutine keeps that thread until
// it returns. A failure is logged: applying at full priority is only
// slower for uploads.
func (s *Store) lowerPriority(applier string) {
	if s.cfg.BackgroundNice == 0 {
		return
	}
	nice, err := lowerThreadPriority(s.cfg.BackgroundNice)
	if err != nil {
		s.log.Warn().Err(err).Str("applier", applier).Msg("applying at the daemon's own priority")
		return
	}
	s.log.Debug().Str("applier", applier).Int("nice", nice).Msg("applying on a thread of lower priority")
}

// defaultGatherEnough is how many unapplied events end Follow's gathering:
// the batch savings are mostly had by then, and an apply of that many
// (10–20 ms) is about the longest a reader hurrying it waits. It stays below
// hkp's earlyAnswerLag (256), beyond which an upload waits for the apply
// itself instead of being answered when durable.
const defaultGatherEnough = 128

// gather waits, while fewer than s.gatherEnough events are unapplied,
// until the log has stood still for cfg.FollowGather, or cfg.FollowGatherMax
// has passed, or a reader waits for the projections (WaitApplied hurries
// it). An upload burst is then applied in batches of s.gatherEnough, not in
// one batch per group commit; a lone upload waits FollowGather.
func (s *Store) gather(ctx context.Context, log *eventlog.Log) {
	if s.cfg.FollowGather <= 0 || log.LastIndex()-s.Applied() >= s.gatherEnough {
		return
	}
	longest := time.NewTimer(s.cfg.FollowGatherMax)
	defer longest.Stop()
	still := time.NewTimer(s.cfg.FollowGather)
	defer still.Stop()
	last := log.LastIndex()
	for {
		grew := log.Notify()
		if log.LastIndex()-s.Applied() >= s.gatherEnough {
			return
		}
		select {
		case <-grew:
			if log.LastIndex() == last {
				return // closed: Notify no longer waits
			}
			last = log.LastIndex()
			still.Reset(s.cfg.FollowGather)
		case <-still.C:
			return
		case <-longest.C:
			return
		case <-s.hurry:
			return
		case <-ctx.Done():
			return
		}
	}
}

// WaitApplied blocks until Applied() >= idx or ctx is done. The upload path
// uses it for read-your-writes: a key answered 200 is served at once.
func (s *Store) WaitApplied(ctx context.Context, idx eventlog.Index) error {
	if s.Applied() < idx {
		select {
		case s.hurry <- struct{}{}: // end Follow's gathering
		default: // a token is already waiting
		}
	}
	for {
		ch := s.AppliedNotify()
		if s.Applied() >= idx {
			return nil
		}
		select {
		case <-ch:
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrClosed
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ApplyCounts returns what applying did since Open, by event origin.
func (s *Store) ApplyCounts() map[eventlog.Origin]ApplyStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[eventlog.Origin]ApplyStats, len(s.totals))
	for o, st := range s.totals {
		out[o] = st
	}
	return out
}
