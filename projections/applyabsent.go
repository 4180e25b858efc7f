package projections

import (
	"sync"
	"sync/atomic"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// The upload path asks whether a key is stored before it appends it
// (Admit), and the applier asks again when it applies the event: for a
// new key both reads miss, and a miss searches every memtable and level
// (≈ 12 µs each in a burst of uploads, docs/benchmarks.md). The first
// answer is kept as a fact — "rid had no record in a database at least as
// new as applied index A" — and the applier uses it instead of reading,
// when it knows that nothing wrote rid after A (recentWrites). Facts are
// true statements whoever recorded them, so a fact that is never used,
// or used for an event another client or recon appended, is harmless.

// absentFacts holds, per record ID, the applied index before a read that
// found no record. Safe for concurrent use.
type absentFacts struct {
	mu sync.Mutex
	m  map[string]eventlog.Index
	// hits counts facts the applier used instead of a read (tests).
	hits atomic.Int64
}

// maxAbsentFacts bounds the facts kept: each is used (and dropped) when
// its key is applied, a few milliseconds after it was noted; what is left
// over (uploads that failed to append, keys the limits refused) is
// dropped wholesale when the map is full.
const maxAbsentFacts = 1 << 14

// note records that rid had no record when the database was at least at
// applied index at.
func (f *absentFacts) note(rid []byte, at eventlog.Index) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil || len(f.m) >= maxAbsentFacts {
		f.m = make(map[string]eventlog.Index)
	}
	f.m[string(rid)] = at
}

// take returns and forgets the fact about rid.
func (f *absentFacts) take(rid []byte) (eventlog.Index, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	at, ok := f.m[string(rid)]
	if ok {
		delete(f.m, string(rid))
	}
	return at, ok
}

// recentWrites remembers which record IDs the applier's commits wrote,
// with the newest log index of each, above floor: a fact noted at index A
// still holds for rid if A >= floor and rid was not written after A. It
// is current at applied index at; when the store's applied index is
// another (the bulk path applied without telling it), it forgets
// everything and starts again from there. Belongs to whoever holds
// Store.applyMu.
type recentWrites struct {
	at, floor eventlog.Index
	m         map[string]eventlog.Index
}

// maxRecentWrites bounds the record IDs remembered (about 100 bytes
// each): beyond it the map starts again with a higher floor, and facts
// older than that are read instead.
const maxRecentWrites = 1 << 15

// valid starts again unless w is current at applied.
func (w *recentWrites) valid(applied eventlog.Index) {
	if w.at != applied {
		w.m, w.floor, w.at = nil, applied, applied
	}
}

// committed records a commit of the records in written, up to applied.
func (w *recentWrites) committed(written map[string]writtenKey, applied eventlog.Index) {
	if w.m == nil || len(w.m)+len(written) > maxRecentWrites {
		w.m, w.floor = make(map[string]eventlog.Index), w.at
	}
	for rid, wk := range written {
		w.m[rid] = wk.rec.Index
	}
	w.at = applied
}

// holds reports whether a fact noted at index at about rid still holds
// for the committed database.
func (w *recentWrites) holds(rid []byte, at eventlog.Index) bool {
	if at < w.floor {
		return false
	}
	idx, ok := w.m[string(rid)]
	return !ok || idx <= at
}

// knownAbsent reports whether the committed database certainly has no
// record of rid, from a fact the upload path noted, without reading it.
func (a *batchApplier) knownAbsent(rid []byte) bool {
	at, ok := a.s.absent.take(rid)
	if !ok || !a.s.writes.holds(rid, at) {
		return false
	}
	a.s.absent.hits.Add(1)
	return true
}

// latestNoting reads the newest record of rid for the upload path and,
// when there is none, notes that as a fact for the applier.
func (s *Store) latestNoting(rid []byte) (*Record, error) {
	at := s.Applied() // before the read: the database read is at least this new
	rec, err := s.latest(s.lookupReader(), rid)
	if err == ErrNotFound {
		s.absent.note(rid, at)
	}
	return rec, err
}
