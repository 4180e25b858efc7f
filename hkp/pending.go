package hkp

import (
	"context"
	"sync"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// Uploads are answered once durable in the log, before the projections
// apply them (a fifth of an upload's time went to waiting for that), when
// the projections are close behind (afterAppend). What reads the
// projections must not see a stale answer because of it:
//
//   - a lookup or the stats page waits until every upload answered before
//     it arrived is applied (awaitUploads): the uploader reads its write;
//   - an upload of a key that an earlier upload touched, not yet applied,
//     waits for that one before asking whether the key is novel (awaitKey),
//     so a repeated submission still adds nothing to the log. Uploads of
//     other keys do not wait.

// earlyAnswerLag is the most events the projections may be behind an
// upload's append for it to be answered before they apply it: then they
// apply it within one batch, and readers wait that long at most. Further
// behind (a burst of recon or mail events), the upload waits for the apply
// itself, as before, so that lookups are never held behind a backlog.
const earlyAnswerLag = 256

// afterAppend decides how an upload whose events end at log index last
// keeps read-your-writes: by leaving the wait to readers (noteUpload) when
// the projections are close behind, or by waiting here (at most ApplyWait;
// a timeout still answers, the key being durable).
func (s *Server) afterAppend(ctx context.Context, last eventlog.Index, rids [][]byte) {
	if applied := s.store.Applied(); applied+earlyAnswerLag >= last {
		s.noteUpload(last, rids)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.conf().ApplyWait)
	defer cancel()
	if err := s.store.WaitApplied(ctx, last); err != nil {
		s.log.Warn().Err(err).Uint64("index", uint64(last)).Msg("upload durable but not yet applied")
	}
}

// pendingUploads remembers the record IDs of uploads answered but not yet
// applied, with the log index that holds them. Safe for concurrent use.
//
// order keeps the additions in the order they came, which is nearly log
// order, so index forgets what the projections applied from its front:
// each entry is looked at once, not once per upload. (It used to walk the
// whole map on every upload: quadratic while the projections are behind.)
type pendingUploads struct {
	mu    sync.Mutex
	rids  map[string]eventlog.Index
	order []pendingRID
}

type pendingRID struct {
	rid string
	idx eventlog.Index
}

// maxPendingRIDs bounds the memory of pendingUploads; beyond it (the runner
// far behind) an upload waits for every pending upload instead.
const maxPendingRIDs = 100000

// add records that rids are durable up to idx.
func (p *pendingUploads) add(rids [][]byte, idx eventlog.Index) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rids == nil {
		p.rids = make(map[string]eventlog.Index)
	}
	for _, rid := range rids {
		r := string(rid)
		if idx > p.rids[r] { // two uploads of one key may be added in either order
			p.rids[r] = idx
		}
		p.order = append(p.order, pendingRID{r, idx})
	}
}

// index returns the log index an upload of rid must wait for, or 0. It
// forgets what applied covers; full reports a map too large to trust,
// where the caller waits for every upload.
func (p *pendingUploads) index(rid []byte, applied eventlog.Index) (idx eventlog.Index, full bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(p.order) && p.order[n].idx <= applied {
		e := p.order[n]
		if p.rids[e.rid] == e.idx { // not since uploaded again
			delete(p.rids, e.rid)
		}
		n++
	}
	if n > 0 {
		clear(p.order[:n]) // let the strings go
		p.order = p.order[n:]
		if len(p.order) == 0 {
			p.order = nil // the backing array, once drained
		}
	}
	if idx = p.rids[string(rid)]; idx <= applied {
		idx = 0 // applied, but behind an entry still pending in order
	}
	return idx, len(p.rids) > maxPendingRIDs
}

// awaitKey waits (at most ApplyWait) until an earlier upload of the key with
// this record ID is applied, so that Assess sees it.
func (s *Server) awaitKey(ctx context.Context, rid []byte) {
	idx, full := s.pending.index(rid, s.store.Applied())
	if full {
		s.awaitUploads(ctx)
		return
	}
	if idx == 0 {
		return
	}
	s.waitApplied(ctx, idx)
}

// noteUpload records that an upload appended the keys with these record
// IDs, up to log index idx, and was answered before they were applied.
func (s *Server) noteUpload(idx eventlog.Index, rids [][]byte) {
	s.pending.add(rids, idx)
	for {
		cur := s.unapplied.Load()
		if cur >= uint64(idx) || s.unapplied.CompareAndSwap(cur, uint64(idx)) {
			return
		}
	}
}

// awaitUploads waits (at most ApplyWait) until the projections have applied
// every upload answered before now. Only uploads count, so a backlog of
// recon or mail events never delays lookups. With nothing pending — nearly
// always — it costs one atomic load.
func (s *Server) awaitUploads(ctx context.Context) {
	idx := s.unapplied.Load()
	if idx == 0 {
		return
	}
	if s.store.Applied() >= eventlog.Index(idx) {
		s.unapplied.CompareAndSwap(idx, 0) // unless a newer upload came meanwhile
		return
	}
	s.waitApplied(ctx, eventlog.Index(idx))
}

// waitApplied waits until idx is applied, at most ApplyWait. Not until the
// request context ends: an HTTP/1.0 client that half-closes after sending
// cancels it yet waits for the answer (hkp.md §1.2).
func (s *Server) waitApplied(ctx context.Context, idx eventlog.Index) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.conf().ApplyWait)
	defer cancel()
	if err := s.store.WaitApplied(ctx, idx); err != nil && ctx.Err() == nil {
		s.log.Warn().Err(err).Uint64("index", uint64(idx)).Msg("answering before an upload was applied")
	}
}
