package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

// The Hockeypuck dataset (issue 11): the keys as Hockeypuck 2.3 holds them
// (pgpkey.ReadHockeypuck, MergeHockeypuck), with their Hockeypuck hashes,
// a hash index for /pks/hashquery and a second recon prefix tree, all
// projected from the same log as the SKS dataset.
//
// It is a projection of its own with its own applied index, written in the
// same Pebble batch as its data. Its work (verifying self-signatures) costs
// far more than the SKS projections', so it follows the log in its own
// goroutine (started by Follow) and may lag behind them; after an import,
// a replay or a crash it catches up by itself. Admin events apply to it as
// to the SKS dataset: a blocked fingerprint is refused, a deleted key's
// hash stays in its tree, suppressed, and is never served.
//
// Its key spaces (layout.go): k record, h hash index, p prefix tree,
// x suppressed hashes, b blocked fingerprints, and meta
// "applied/hockeypuck".

// ProjectionHockeypuck names the Hockeypuck dataset in stats and check.
const ProjectionHockeypuck = "hockeypuck"

// hockeypuck is the Hockeypuck dataset's projection state.
type hockeypuck struct {
	s *Store

	// applyMu serialises appliers; tree belongs to whoever holds it.
	applyMu sync.Mutex
	tree    *ptree.Tree
	cfg     ptree.Config

	mu      sync.Mutex
	applied eventlog.Index // Invariant: applied <= log.LastIndex()
	notify  chan struct{}

	// gather is how long the log must stand still before the follower
	// applies it, maxDefer how long at most it waits for that (see
	// waitQuiet); tests change them.
	gather, maxDefer time.Duration
	// rest pauses the follower (restWhileBusy), poll while it waits for
	// the log to stand still (waitQuiet); tests replace them.
	rest, poll func(ctx context.Context, d time.Duration) bool
	now        func() time.Time
	quietAt    eventlog.Index // the log's last index when waitQuiet last found it still
	chunk      int            // hpQuietChunk; tests change it
	waiting    atomic.Int32   // callers of WaitHockeypuckApplied not yet satisfied
	// committed, when set, is called after each batch commits (tests).
	committed func()
	batches   atomic.Uint64 // batches committed since Open

	// blocked (fingerprints, as hpBlockedKey strings) and suppressed
	// mirror the b and x key spaces as committed, so that applying a key
	// costs no Pebble lookups for them (each is a memtable search per
	// uploaded key; the sets are a few admin actions long). Loaded at
	// open; changed only by applyBatch after its commit, under applyMu.
	blocked    map[string]bool
	suppressed map[pgpkey.KeyHash]bool
}

func hpRecordKey(fpr []byte) []byte   { return appendRID([]byte{prefixHPRecord}, fpr) }
func hpHashKey(h [16]byte) []byte     { return append([]byte{prefixHPHash}, h[:]...) }
func hpSuppressKey(h [16]byte) []byte { return append([]byte{prefixHPSuppress}, h[:]...) }
func hpBlockedKey(fpr []byte) []byte  { return appendRID([]byte{prefixHPBlocked}, fpr) }

// openHockeypuck loads the Hockeypuck projection of s (called by Open).
func openHockeypuck(s *Store) (*hockeypuck, error) {
	applied, err := s.getUint64(appliedKey(ProjectionHockeypuck))
	if err != nil {
		return nil, err
	}
	cfg := s.cfg.Ptree
	cfg.KeyPrefix = []byte{prefixHPPtree}
	tree, err := ptree.Open(s.db, cfg)
	if err != nil {
		return nil, fmt.Errorf("open Hockeypuck prefix tree: %w", err)
	}
	hp := &hockeypuck{s: s, tree: tree, cfg: cfg, applied: eventlog.Index(applied), notify: make(chan struct{}), gather: hpGather, maxDefer: hpMaxDefer, rest: sleepCtx, poll: sleepCtx, now: time.Now, chunk: hpQuietChunk,
		blocked: make(map[string]bool), suppressed: make(map[pgpkey.KeyHash]bool)}
	err = scanKeys(s.db, prefixHPBlocked, func(k []byte) { hp.blocked[string(k)] = true })
	if err == nil {
		err = scanKeys(s.db, prefixHPSuppress, func(k []byte) {
			var h pgpkey.KeyHash
			if len(k) == 1+len(h) {
				copy(h[:], k[1:])
				hp.suppressed[h] = true
			}
		})
	}
	if err != nil {
		return nil, fmt.Errorf("open Hockeypuck dataset: %w", err)
	}
	return hp, nil
}

// scanKeys calls fn with every key of db that starts with prefix.
func scanKeys(db *pebble.DB, prefix byte, fn func(k []byte)) error {
	p := []byte{prefix}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		fn(it.Key())
	}
	return it.Close()
}

// HockeypuckApplied returns the log index the Hockeypuck dataset has
// applied. It may lag behind Applied.
func (s *Store) HockeypuckApplied() eventlog.Index {
	hp := s.hp
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return hp.applied
}

// HockeypuckPtreeConfig returns the Hockeypuck prefix tree's configuration,
// with its key prefix, for ptree.ReadNode on a snapshot of DB().
func (s *Store) HockeypuckPtreeConfig() ptree.Config { return s.hp.cfg }

// HockeypuckPtreeElements returns the number of hashes in the Hockeypuck
// prefix tree.
func (s *Store) HockeypuckPtreeElements() int {
	s.hp.applyMu.Lock()
	defer s.hp.applyMu.Unlock()
	return s.hp.tree.NumElements()
}

// HockeypuckRecord is a key of the Hockeypuck dataset.
type HockeypuckRecord struct {
	Fingerprint []byte
	Hash        pgpkey.KeyHash
	// Key holds the key's packets as Hockeypuck keeps them
	// (HockeypuckKey.Marshal).
	Key []byte
}

// HockeypuckByHash returns the live key of the Hockeypuck dataset whose
// Hockeypuck hash is h, or an error wrapping ErrNotFound. A deleted key's
// hash is never found.
func (s *Store) HockeypuckByHash(h pgpkey.KeyHash) (*HockeypuckRecord, error) {
	snap := s.db.NewSnapshot()
	defer snap.Close()
	fpr, err := getRID(snap, hpHashKey(h))
	if err != nil {
		return nil, err
	}
	rec, err := hpRecord(snap, fpr)
	if err != nil {
		return nil, err
	}
	if rec.Hash != h {
		return nil, ErrNotFound
	}
	return rec, nil
}

func getRID(r Reader, k []byte) ([]byte, error) {
	v, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", k, err)
	}
	defer closer.Close()
	rid, ok := ridAt(v, 0)
	if !ok {
		return nil, fmt.Errorf("read %q: %w", k, errBadRecord)
	}
	return bytes.Clone(rid), nil
}

// Record value: <hash16><key bytes>.
func hpRecord(r Reader, fpr []byte) (*HockeypuckRecord, error) {
	v, closer, err := r.Get(hpRecordKey(fpr))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read Hockeypuck record %X: %w", fpr, err)
	}
	defer closer.Close()
	if len(v) < 16 {
		return nil, fmt.Errorf("Hockeypuck record %X: %w", fpr, errBadRecord)
	}
	rec := &HockeypuckRecord{Fingerprint: bytes.Clone(fpr), Key: bytes.Clone(v[16:])}
	copy(rec.Hash[:], v[:16])
	return rec, nil
}

// HockeypuckNovel reports whether the submission b would change the
// Hockeypuck dataset as it stands: a key it does not hold, or one whose
// merge changes the stored key. Recon uses it for keys fetched from a
// Hockeypuck peer, which the SKS dataset may already hold in full while
// the Hockeypuck dataset lacks them (its merge depends on arrival order).
func (s *Store) HockeypuckNovel(b []byte) (bool, error) {
	keys, err := pgpkey.ReadHockeypuck(b)
	if err != nil {
		return false, nil
	}
	for _, k := range keys {
		fpr := k.Fingerprint().Bytes()
		if blocked, err := exists(s.db, hpBlockedKey(fpr)); err != nil {
			return false, err
		} else if blocked {
			continue
		}
		old, err := hpRecord(s.db, fpr)
		if errors.Is(err, ErrNotFound) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		m, err := pgpkey.MergeHockeypuck(old.Key, k)
		if err == nil && m.Hash() != old.Hash {
			return true, nil
		}
	}
	return false, nil
}

// HockeypuckHash returns the Hockeypuck hash a key string is known by: that
// of its first key after Hockeypuck's normalisation.
func HockeypuckHash(b []byte) (pgpkey.KeyHash, error) {
	keys, err := pgpkey.ReadHockeypuck(b)
	if err != nil {
		return pgpkey.KeyHash{}, err
	}
	if len(keys) == 0 {
		return pgpkey.KeyHash{}, pgpkey.ErrEvaporated
	}
	return keys[0].Hash(), nil
}

// WaitHockeypuckApplied blocks until the Hockeypuck dataset has applied
// idx or ctx is done.
func (s *Store) WaitHockeypuckApplied(ctx context.Context, idx eventlog.Index) error {
	hp := s.hp
	waiting := false
	defer func() {
		if waiting {
			hp.waiting.Add(-1)
		}
	}()
	for {
		hp.mu.Lock()
		ch, applied := hp.notify, hp.applied
		hp.mu.Unlock()
		if applied >= idx {
			return nil
		}
		if !waiting {
			// Someone needs the dataset now (recon after fetching from
			// a Hockeypuck peer): the follower stops deferring.
			waiting = true
			hp.waiting.Add(1)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (hp *hockeypuck) setApplied(idx eventlog.Index) {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	hp.applied = idx
	close(hp.notify)
	hp.notify = make(chan struct{})
}

// followHockeypuck keeps the Hockeypuck dataset applying the log in its
// own goroutine until ctx is done; the returned func waits for it.
func (s *Store) followHockeypuck(ctx context.Context, log *eventlog.Log) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.lowerPriority("hockeypuck")
		backoff := 100 * time.Millisecond
		var behind time.Time // since when the log has been ahead of the dataset
		for {
			notify := log.Notify()
			if s.HockeypuckApplied() >= log.LastIndex() {
				behind = time.Time{}
				select {
				case <-notify:
				case <-ctx.Done():
					return
				}
				continue
			}
			if behind.IsZero() {
				behind = s.hp.now()
			}
			quiet, ok := s.hp.waitQuiet(ctx, log, behind)
			if !ok {
				return
			}
			last, start := log.LastIndex(), time.Now()
			// Batches of a chunk: a backlog deferred for seconds is
			// thousands of events, and 2 × 2,048 parsed keys in memory
			// at once (one applied, one parsed) grew the heap by ~100 MiB.
			// In a quiet log the catch-up also stops after the batch under
			// way once uploads resume, so they find the cores free again.
			var stop func() bool
			if quiet {
				stop = func() bool { return log.LastIndex() != last || log.Appending() > 0 }
			}
			s.hp.applyMu.Lock()
			err := s.hp.catchUp(ctx, log, last, s.hp.chunk, stop)
			s.hp.applyMu.Unlock()
			if err == nil {
				rest := restWhileBusy(time.Since(start), log.LastIndex()-last, log.LastIndex()-s.HockeypuckApplied())
				if rest > 0 && !s.hp.rest(ctx, rest) {
					return
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Error().Err(err).Uint64("applied", uint64(s.HockeypuckApplied())).Msg("apply log events to the Hockeypuck dataset")
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return
				}
				backoff = min(backoff*2, 30*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
		}
	}()
	return wg.Wait
}

// While the log keeps growing, the Hockeypuck dataset works at most one
// part in hpDuty of the time, unless it is hpMaxBusyLag events behind.
const (
	hpDuty       = 4
	hpMaxBusyLag = 100_000
)

// restWhileBusy is how long the follower rests after a catch-up that took
// worked, during which grew events arrived, leaving it lag behind. Only
// Hockeypuck peers read this dataset, and recon waits for it; its
// signature checks (a third of an upload's CPU on two cores) would
// otherwise compete with the uploads and recon fetches that make the log
// grow. When the log stops growing it catches up at full speed; a burst
// that never ends is bounded by hpMaxBusyLag.
func restWhileBusy(worked time.Duration, grew, lag eventlog.Index) time.Duration {
	if grew == 0 || lag >= hpMaxBusyLag {
		return 0
	}
	return min((hpDuty-1)*worked, time.Second)
}

// sleepCtx sleeps for d; it returns false when ctx is done first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// hpGather is how long the log must stand still before the Hockeypuck
// dataset applies it, unless it has waited hpMaxDefer since it fell behind
// (waitQuiet). Hockeypuck peers reconcile about once a minute: a key
// reaching them up to 15 s later is not noticed, and 15 s of uploads at the
// target rate are 60,000 keys.
const (
	hpGather     = 200 * time.Millisecond
	hpMaxDefer   = 15 * time.Second
	hpQuietChunk = 256
)

// waitQuiet defers the dataset's work while the log grows. It returns
// quiet once the log has stood still for hp.gather with no Append under way
// (a slow fsync, tens of milliseconds on a shared disk, holds every client
// of a burst without the log growing), or at once when it has not grown
// since the last such finding: the follower then applies batches of
// hpQuietChunk events, reading no further batch ahead once the log grows
// again, so a burst that resumes waits for two batches at most. It returns not quiet once hp.maxDefer has passed since behind (when
// the follower saw the log ahead of it), when hpMaxBusyLag events are
// unapplied, or (within one poll) when someone waits in
// WaitHockeypuckApplied: then everything is applied, at the pace of
// restWhileBusy. ok is false when ctx is done.
//
// Every key the dataset applies costs its self-signature checks (about a
// third of an upload's CPU): applied during a burst of uploads or a recon
// fetch they compete for the cores with the appends the clients wait for,
// while nothing answers a client after this dataset (only Hockeypuck
// peers read it, and recon waits for it after its own fetch, when the log
// stands still). Deferred, a burst reaches the dataset when it ends, in
// batches of hpQuietChunk instead of one per group commit (each costs a
// log read, goroutines, a prefix-tree flush and a Pebble commit).
func (hp *hockeypuck) waitQuiet(ctx context.Context, log *eventlog.Log, behind time.Time) (quiet, ok bool) {
	if hp.gather <= 0 {
		return false, true
	}
	last := log.LastIndex()
	if last == hp.quietAt && log.Appending() == 0 {
		return true, true
	}
	for {
		if last-hp.appliedIndex() >= hpMaxBusyLag || hp.waiting.Load() > 0 {
			return false, true
		}
		left := hp.maxDefer - hp.now().Sub(behind)
		if left <= 0 {
			return false, true
		}
		// Polling the log's last index costs one wake-up per hp.gather,
		// where waiting on its notifications would wake once per group
		// commit.
		if !hp.poll(ctx, min(hp.gather, left)) {
			return false, false
		}
		grown := log.LastIndex()
		if grown == last && log.Appending() == 0 {
			hp.quietAt = last
			return true, true
		}
		last = grown
	}
}

// CatchUpHockeypuck applies the log to the Hockeypuck dataset from its
// applied index up to index to (at most the log's last index), in batches.
func (s *Store) CatchUpHockeypuck(ctx context.Context, log *eventlog.Log, to eventlog.Index) error {
	hp := s.hp
	hp.applyMu.Lock()
	defer hp.applyMu.Unlock()
	return hp.catchUp(ctx, log, to, hp.s.cfg.BatchEvents, nil)
}

type hpParsed struct {
	idx  eventlog.Index
	ev   *eventlog.Event
	keys []*pgpkey.HockeypuckKey
	err  error
}

// catchUp reads, parses and applies batches of events. Parsing (the
// self-signature verification, nearly all of the work) runs on the
// store's workers one batch ahead of the apply, which stays in log order
// in this goroutine: batch n+1 is parsed while batch n is written.
//
// Batches hold at most batch events. stop, when not nil, is asked before
// each batch is read ahead: once it says so, the catch-up ends after the
// batches already read.
func (hp *hockeypuck) catchUp(ctx context.Context, log *eventlog.Log, to eventlog.Index, batch int, stop func() bool) error {
	to = min(to, log.LastIndex())
	next := hp.appliedIndex() + 1
	if next > to {
		return nil
	}
	type parsed struct {
		batch []hpParsed
		err   error
	}
	prefetch := func(from eventlog.Index) <-chan parsed {
		ch := make(chan parsed, 1)
		go func() {
			b, err := hp.readBatch(log, from, min(to+1, from+eventlog.Index(batch)))
			if err == nil {
				err = hp.parse(ctx, b)
			}
			ch <- parsed{b, err}
		}()
		return ch
	}
	pending := prefetch(next)
	for pending != nil {
		p := <-pending
		pending = nil
		if p.err != nil {
			return p.err
		}
		if len(p.batch) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if last := p.batch[len(p.batch)-1].idx; last < to && (stop == nil || !stop()) {
			pending = prefetch(last + 1)
		}
		if err := hp.applyBatch(p.batch); err != nil {
			if pending != nil {
				<-pending // let the parse finish before the caller retries
			}
			return err
		}
	}
	return nil
}

// readBatch reads the events [from, end) of log.
func (hp *hockeypuck) readBatch(log *eventlog.Log, from, end eventlog.Index) ([]hpParsed, error) {
	it := log.NewIterator(from, end)
	defer it.Close()
	var batch []hpParsed
	for {
		idx, ev, err := it.Next()
		if err == io.EOF {
			return batch, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read log at %d: %w", from, err)
		}
		batch = append(batch, hpParsed{idx: idx, ev: ev})
	}
}

func (hp *hockeypuck) appliedIndex() eventlog.Index {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return hp.applied
}

// parse normalises the submissions of batch on the store's workers. The
// events are handed out one at a time: one key can take a thousand times
// longer than another. A cancelled ctx stops the workers after the key each
// is on (a batch of big keys takes many seconds: a stopping daemon must not
// wait for it) and parse returns ctx's error.
func (hp *hockeypuck) parse(ctx context.Context, batch []hpParsed) error {
	workers := min(hp.s.cfg.Workers, len(batch))
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(batch); i = int(next.Add(1) - 1) {
				if ctx.Err() != nil {
					return
				}
				if batch[i].ev.Kind == eventlog.KindKeySubmitted {
					batch[i].keys, batch[i].err = pgpkey.ReadHockeypuck(batch[i].ev.Key)
				}
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// hpApplier applies parsed events into one batch, with overlays of what
// the batch wrote (nil value: deleted).
type hpApplier struct {
	hp         *hockeypuck
	b          *pebble.Batch
	records    map[string]*HockeypuckRecord
	hashes     map[pgpkey.KeyHash][]byte
	blocked    map[string]bool
	suppressed map[pgpkey.KeyHash]bool
}

func (hp *hockeypuck) applyBatch(batch []hpParsed) error {
	if want := hp.appliedIndex() + 1; batch[0].idx != want {
		return fmt.Errorf("Hockeypuck dataset: apply index %d: want %d next", batch[0].idx, want)
	}
	a := &hpApplier{
		hp: hp, b: hp.s.db.NewBatch(),
		records:    make(map[string]*HockeypuckRecord),
		hashes:     make(map[pgpkey.KeyHash][]byte),
		blocked:    make(map[string]bool),
		suppressed: make(map[pgpkey.KeyHash]bool),
	}
	fail := func(err error) error {
		a.b.Close()
		hp.tree.Reset()
		return err
	}
	for _, pe := range batch {
		if err := a.apply(pe); err != nil {
			return fail(fmt.Errorf("Hockeypuck dataset: apply index %d: %w", pe.idx, err))
		}
	}
	last := batch[len(batch)-1].idx
	if err := hp.tree.Flush(a.b); err != nil {
		return fail(fmt.Errorf("flush Hockeypuck prefix tree: %w", err))
	}
	if err := a.b.Set(appliedKey(ProjectionHockeypuck), binary.BigEndian.AppendUint64(nil, uint64(last)), nil); err != nil {
		return fail(err)
	}
	if err := a.b.Commit(pebble.NoSync); err != nil {
		return fail(fmt.Errorf("commit Hockeypuck batch up to index %d: %w", last, err))
	}
	a.b.Close()
	for fpr, v := range a.blocked {
		if k := string(hpBlockedKey([]byte(fpr))); v {
			hp.blocked[k] = true
		} else {
			delete(hp.blocked, k)
		}
	}
	for h, v := range a.suppressed {
		if v {
			hp.suppressed[h] = true
		} else {
			delete(hp.suppressed, h)
		}
	}
	hp.batches.Add(1)
	hp.setApplied(last)
	if hp.committed != nil {
		hp.committed()
	}
	return nil
}

func (a *hpApplier) apply(pe hpParsed) error {
	switch pe.ev.Kind {
	case eventlog.KindKeySubmitted:
		if pe.err != nil {
			return nil // Hockeypuck refuses the whole submission
		}
		for _, k := range pe.keys {
			if err := a.applyKey(k); err != nil {
				return err
			}
		}
		return nil
	case eventlog.KindKeyBlocked, eventlog.KindKeyUnblocked, eventlog.KindKeyDeleted:
		return a.applyAdmin(pe.idx, pe.ev)
	}
	return nil
}

func (a *hpApplier) current(fpr []byte) (*HockeypuckRecord, error) {
	if r, ok := a.records[string(fpr)]; ok {
		return r, nil
	}
	r, err := hpRecord(a.hp.s.db, fpr)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return r, err
}

func (a *hpApplier) isBlocked(fpr []byte) (bool, error) {
	if v, ok := a.blocked[string(fpr)]; ok {
		return v, nil
	}
	return a.hp.blocked[string(hpBlockedKey(fpr))], nil
}

func (a *hpApplier) isSuppressed(h pgpkey.KeyHash) (bool, error) {
	if v, ok := a.suppressed[h]; ok {
		return v, nil
	}
	return a.hp.suppressed[h], nil
}

func (a *hpApplier) hashTaken(h pgpkey.KeyHash) (bool, error) {
	if v, ok := a.hashes[h]; ok {
		return v != nil, nil
	}
	return exists(a.hp.s.db, hpHashKey(h))
}

// applyKey is Hockeypuck's UpsertKey of one validated key.
func (a *hpApplier) applyKey(k *pgpkey.HockeypuckKey) error {
	fpr := k.Fingerprint().Bytes()
	if blocked, err := a.isBlocked(fpr); err != nil || blocked {
		return err
	}
	old, err := a.current(fpr)
	if err != nil {
		return err
	}
	merged := k
	if old != nil {
		if merged, err = pgpkey.MergeHockeypuck(old.Key, k); err != nil {
			return nil // Hockeypuck's upsert fails: the stored key stays
		}
	}
	h := merged.Hash()
	if old != nil && old.Hash == h {
		return nil
	}
	rec := &HockeypuckRecord{Fingerprint: fpr, Hash: h, Key: merged.Marshal()}
	v := append(append(make([]byte, 0, 16+len(rec.Key)), h[:]...), rec.Key...)
	if err := a.b.Set(hpRecordKey(fpr), v, nil); err != nil {
		return err
	}
	a.records[string(fpr)] = rec
	if old != nil {
		if err := a.b.Delete(hpHashKey(old.Hash), nil); err != nil {
			return err
		}
		a.hashes[old.Hash] = nil
		if err := treeOp(a.hp.s, "delete", old.Hash, a.hp.tree.Delete(old.Hash)); err != nil {
			return err
		}
	}
	if taken, err := a.hashTaken(h); err != nil {
		return err
	} else if taken {
		a.hp.s.log.Error().Str("key_hash", h.String()).Hex("fpr", fpr).Msg("Hockeypuck key hash collision")
		return nil
	}
	rid := appendRID(nil, fpr)
	if err := a.b.Set(hpHashKey(h), rid, nil); err != nil {
		return err
	}
	a.hashes[h] = rid
	suppressed, err := a.isSuppressed(h)
	if err != nil {
		return err
	}
	if suppressed {
		// Deleted, unblocked and back with the same content: the hash
		// never left the tree.
		a.suppressed[h] = false
		return a.b.Delete(hpSuppressKey(h), nil)
	}
	return treeOp(a.hp.s, "insert", h, a.hp.tree.Insert(h))
}

// applyAdmin mirrors the SKS dataset's admin events (apply.go applyAdmin).
func (a *hpApplier) applyAdmin(idx eventlog.Index, ev *eventlog.Event) error {
	fpr := ev.Target
	switch len(fpr) {
	case 16, 20, 32:
	default:
		return nil
	}
	switch ev.Kind {
	case eventlog.KindKeyUnblocked:
		a.blocked[string(fpr)] = false
		return a.b.Delete(hpBlockedKey(fpr), nil)
	case eventlog.KindKeyBlocked, eventlog.KindKeyDeleted:
		a.blocked[string(fpr)] = true
		if err := a.b.Set(hpBlockedKey(fpr), binary.BigEndian.AppendUint64(nil, uint64(idx)), nil); err != nil {
			return err
		}
	}
	if ev.Kind != eventlog.KindKeyDeleted {
		return nil
	}
	old, err := a.current(fpr)
	if err != nil || old == nil {
		return err
	}
	if err := a.b.Delete(hpRecordKey(fpr), nil); err != nil {
		return err
	}
	// Overlay: the record is gone for the rest of the batch.
	a.records[string(fpr)] = nil
	if err := a.b.Delete(hpHashKey(old.Hash), nil); err != nil {
		return err
	}
	a.hashes[old.Hash] = nil
	a.suppressed[old.Hash] = true
	return a.b.Set(hpSuppressKey(old.Hash), appendRID(nil, fpr), nil)
}

// hockeypuckCheckLock is called by Check, with s.applyMu held, before it
// takes its snapshot: it catches the Hockeypuck dataset up to at least idx
// and holds it still until the returned func is called.
func (s *Store) hockeypuckCheckLock(ctx context.Context, log *eventlog.Log, idx eventlog.Index) (unlock func(), err error) {
	hp := s.hp
	hp.applyMu.Lock()
	if hp.appliedIndex() < idx {
		err = hp.catchUp(ctx, log, idx, hp.s.cfg.BatchEvents, nil)
	}
	return hp.applyMu.Unlock, err
}

// checkHockeypuck walks the Hockeypuck prefix tree in snap: every node's
// count and svalues must match the elements below it, and its elements
// must be exactly the hashes of the Hockeypuck hash index plus the
// suppressed hashes of deleted keys. Every hash index entry must name a
// record with that hash.
func (c *checker) checkHockeypuck(ctx context.Context, snap *pebble.Snapshot) error {
	const part = "Hockeypuck dataset"
	cfg := c.s.hp.cfg
	inTree := make(map[pgpkey.KeyHash]bool)
	err := c.walkTree(ctx, snap, cfg, part, func(z ptree.Zp) {
		c.res.HockeypuckPtreeElements++
		h, ok := z.KeyHash()
		if !ok {
			c.find(part, 0, "element %s is not a key hash", z)
			return
		}
		inTree[pgpkey.KeyHash(h)] = true
	})
	if err != nil {
		return err
	}
	scan := func(prefix byte, fn func(h pgpkey.KeyHash, fpr []byte)) error {
		p := []byte{prefix}
		it, err := snap.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		for it.First(); it.Valid(); it.Next() {
			k := it.Key()
			fpr, ok := ridAt(it.Value(), 0)
			if len(k) != 17 || !ok {
				c.find(part, 0, "entry %s: malformed", describeKey(k))
				continue
			}
			var h pgpkey.KeyHash
			copy(h[:], k[1:])
			fn(h, fpr)
		}
		return it.Close()
	}
	err = scan(prefixHPHash, func(h pgpkey.KeyHash, fpr []byte) {
		c.res.HockeypuckHashes++
		if rec, err := hpRecord(snap, fpr); err != nil || rec.Hash != h {
			c.find(part, 0, "hash index %s: key %X does not have this hash", h, fpr)
		}
		if !inTree[h] {
			c.find(part, 0, "hash index has %s but the tree does not", h)
		}
		delete(inTree, h)
	})
	if err != nil {
		return err
	}
	err = scan(prefixHPSuppress, func(h pgpkey.KeyHash, fpr []byte) {
		if !inTree[h] {
			c.find(part, 0, "suppressed hash %s is not in the tree", h)
		}
		delete(inTree, h)
	})
	if err != nil {
		return err
	}
	for h := range inTree {
		c.find(part, 0, "tree has %s but the hash index has no such key", h)
	}
	return nil
}
