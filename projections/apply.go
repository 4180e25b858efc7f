package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

// ApplyStats counts what applying events did.
type ApplyStats struct {
	Added     int64 // keys seen for the first time
	Updated   int64 // keys that gained packets
	Unchanged int64 // submissions that added nothing
	Rejected  int64 // events whose key does not parse (they are kept in the log)
	Refused   int64 // keys whose fingerprint is blocked
	Deleted   int64 // keys removed by an admin deletion
	Skipped   int64 // events of kinds this version does not project
}

func (a *ApplyStats) add(b ApplyStats) {
	a.Added += b.Added
	a.Updated += b.Updated
	a.Unchanged += b.Unchanged
	a.Rejected += b.Rejected
	a.Refused += b.Refused
	a.Deleted += b.Deleted
	a.Skipped += b.Skipped
}

// parsedEvent is an event with its key parsed and canonicalised, the part of
// applying that can run in parallel.
type parsedEvent struct {
	idx eventlog.Index
	ev  *eventlog.Event
	key *pgpkey.Key // nil when err != nil or the kind carries no key
	err error
}

func parseEvent(idx eventlog.Index, ev *eventlog.Event) parsedEvent {
	pe := parsedEvent{idx: idx, ev: ev}
	if ev.Kind == eventlog.KindKeySubmitted {
		pe.key, pe.err = ParseEventKey(ev.Key)
	}
	return pe
}

// ParseEventKey parses the single transferable public key an event carries,
// with the same code the upload and import paths use to validate it.
func ParseEventKey(b []byte) (*pgpkey.Key, error) {
	raw, err := pgpkey.FirstKey(b)
	if err != nil {
		return nil, err
	}
	return pgpkey.ParseKey(raw)
}

// batchApplier applies parsed events into one Pebble batch. Reads go to
// the committed database, with the batch's own writes kept in small
// overlays (the newest record of each key written, the hashes added and
// removed), so two versions of one key in the same batch merge correctly
// without the cost of an indexed batch.
type batchApplier struct {
	s        *Store
	b        *pebble.Batch
	keys     int64
	counters map[string][2]uint64
	stats    ApplyStats
	// written holds the newest record and parsed key of every key
	// written in this batch.
	written map[string]writtenKey
	// hashes overlays the hash index: a rid for a hash added in this
	// batch, nil for one removed.
	hashes map[pgpkey.KeyHash][]byte
	// blocked and suppressed overlay the blocked fingerprints and the
	// suppressed hashes: true when set in this batch, false when removed.
	blocked    map[string]bool
	suppressed map[pgpkey.KeyHash]bool
	// byOrigin splits stats by the events' origin, for metrics.
	byOrigin map[eventlog.Origin]ApplyStats
	// fprLists overlays the fingerprint index's record-ID lists.
	fprLists map[string][]byte
	// wordCounts holds the batch's changes of word posting counts,
	// added to the stored counts at commit.
	wordCounts map[string]int64
	// newCounts are the counts commitWordCounts wrote, for the apply
	// cache once the batch is committed.
	newCounts []wordCount
}

type wordCount struct {
	word string
	n    uint64
}

type writtenKey struct {
	rec *Record
	key *pgpkey.Key
}

func (s *Store) newBatchApplier() *batchApplier {
	s.writes.valid(s.Applied())
	return &batchApplier{
		s:          s,
		b:          s.db.NewBatch(),
		keys:       s.keys,
		counters:   make(map[string][2]uint64),
		written:    make(map[string]writtenKey),
		hashes:     make(map[pgpkey.KeyHash][]byte),
		blocked:    make(map[string]bool),
		suppressed: make(map[pgpkey.KeyHash]bool),
		byOrigin:   make(map[eventlog.Origin]ApplyStats),
		fprLists:   make(map[string][]byte),
		wordCounts: make(map[string]int64),
	}
}

// current returns the newest version of rid and its parsed key, or nil.
func (a *batchApplier) current(rid []byte) (*Record, *pgpkey.Key, error) {
	if w, ok := a.written[string(rid)]; ok {
		if w.rec.Deleted {
			return nil, nil, nil
		}
		return w.rec, w.key, nil
	}
	rec, err := a.s.latest(a.s.applyReader(), rid)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	k, err := ParseEventKey(rec.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("stored record %X@%d does not parse: %w", rid, rec.Index, err)
	}
	return rec, k, nil
}

// hashOwner reports whether h is in the hash index, batch included.
func (a *batchApplier) hashOwner(h pgpkey.KeyHash) ([]byte, bool, error) {
	if rid, ok := a.hashes[h]; ok {
		return rid, rid != nil, nil
	}
	v, closer, err := a.s.applyReader().Get(hashKey(h))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return bytes.Clone(v), true, nil
}

func (a *batchApplier) apply(pe parsedEvent) error {
	before := a.stats
	err := a.applyOne(pe)
	o := a.byOrigin[pe.ev.Origin]
	o.Added += a.stats.Added - before.Added
	o.Updated += a.stats.Updated - before.Updated
	o.Unchanged += a.stats.Unchanged - before.Unchanged
	o.Rejected += a.stats.Rejected - before.Rejected
	o.Refused += a.stats.Refused - before.Refused
	o.Deleted += a.stats.Deleted - before.Deleted
	o.Skipped += a.stats.Skipped - before.Skipped
	a.byOrigin[pe.ev.Origin] = o
	return err
}

func (a *batchApplier) applyOne(pe parsedEvent) error {
	switch pe.ev.Kind {
	case eventlog.KindKeySubmitted:
		if pe.err != nil {
			a.stats.Rejected++
			a.s.log.Debug().Uint64("index", uint64(pe.idx)).Err(pe.err).Msg("rejected key in log")
			return nil
		}
		return a.applyKey(pe.idx, pe.ev, pe.key)
	case eventlog.KindKeyBlocked, eventlog.KindKeyUnblocked, eventlog.KindKeyDeleted:
		return a.applyAdmin(pe.idx, pe.ev)
	default:
		// A kind from a newer version: the event stays in the log and a
		// replay with that version applies it.
		a.stats.Skipped++
		a.s.log.Warn().Uint64("index", uint64(pe.idx)).Uint8("kind", uint8(pe.ev.Kind)).Msg("event kind not projected by this version")
		return nil
	}
}

func (a *batchApplier) applyKey(idx eventlog.Index, ev *eventlog.Event, key *pgpkey.Key) error {
	rid := RecordID(key)
	if blocked, err := a.isBlocked(key.Fingerprint().Bytes()); err != nil {
		return err
	} else if blocked {
		a.stats.Refused++
		a.s.log.Info().Uint64("index", uint64(idx)).Str("fpr", key.Fingerprint().String()).Str("origin", ev.Origin.String()).Msg("refused blocked key")
		return nil
	}
	var old *Record
	var oldKey *pgpkey.Key
	if _, inBatch := a.written[string(rid)]; inBatch || !a.knownAbsent(rid) {
		var err error
		if old, oldKey, err = a.current(rid); err != nil {
			return err
		}
	}
	merged := key
	isNew := old == nil || old.Deleted
	if !isNew {
		merged = pgpkey.Merge(oldKey, key)
	}
	h := merged.Hash()
	if !isNew && h == old.Hash {
		a.stats.Unchanged++
		return nil
	}
	rec := &Record{
		RID:     rid,
		Index:   idx,
		Hash:    h,
		SKS:     merged.SKSCompatible(),
		Created: creationTime(merged.Primary.Body),
		Key:     merged.Marshal(),
	}
	if a.s.cfg.Log != nil && bytes.Equal(rec.Key, ev.Key) {
		// The event already holds these very bytes, durably: store a
		// reference to it (record.go).
		rec.keyInLog, rec.logKeyLen = true, len(rec.Key)
	}
	var flags byte
	if rec.SKS {
		flags |= flagSKS
	}
	b := a.b
	if err := b.Set(recordKey(rid, idx), encodeRecord(rec), nil); err != nil {
		return err
	}
	lk := latestKey(rid)
	a.s.presence.add(lk) // before the commit makes it visible (presence.go)
	if err := b.Set(lk, encodeLatest(idx, flags, h), nil); err != nil {
		return err
	}
	a.written[string(rid)] = writtenKey{rec: rec, key: merged}

	// Hash index and prefix tree: the old hash leaves, the new one enters
	// (keyhash.md §6 step 5, recon.md §5.7).
	if !isNew {
		if err := b.Delete(hashKey(old.Hash), nil); err != nil {
			return err
		}
		a.hashes[old.Hash] = nil
		if old.SKS {
			if err := treeOp(a.s, "delete", old.Hash, a.s.tree.Delete(old.Hash)); err != nil {
				return err
			}
		}
	}
	owner, taken, err := a.hashOwner(h)
	if err != nil {
		return err
	}
	if taken {
		// Another record already has this hash: only an MD5 collision can
		// do this. Keep the first owner in the hash index and the tree.
		a.s.log.Error().Str("key_hash", h.String()).Hex("owner", owner).Hex("rid", rid).Msg("key hash collision")
	} else {
		v := appendRID(nil, rid)
		hk := hashKey(h)
		a.s.presence.add(hk)
		if err := b.Set(hk, v, nil); err != nil {
			return err
		}
		a.hashes[h] = v
		suppressed, err := a.isSuppressed(h)
		if err != nil {
			return err
		}
		if suppressed {
			// The key was deleted and has come back (unblocked) with the
			// same content: its hash never left the tree.
			if err := b.Delete(suppressKey(h), nil); err != nil {
				return err
			}
			a.suppressed[h] = false
		} else if rec.SKS {
			if err := treeOp(a.s, "insert", h, a.s.tree.Insert(h)); err != nil {
				return err
			}
		}
	}

	if err := a.indexIDs(merged, rid); err != nil {
		return err
	}
	if err := a.indexWords(merged, oldKey, rec, flags); err != nil {
		return err
	}
	if isNew {
		a.keys++
		a.stats.Added++
	} else {
		a.stats.Updated++
	}
	a.count(ev.Time, isNew)
	return nil
}

// indexIDs records the fingerprints and key IDs of the primary key and every
// subkey. Writing an existing entry again is harmless.
func (a *batchApplier) indexIDs(k *pgpkey.Key, rid []byte) error {
	set := func(fpr pgpkey.Fingerprint, id pgpkey.KeyID) error {
		if err := a.updateFprList(fpr.Bytes(), rid, true); err != nil {
			return err
		}
		if err := a.b.Set(keyIDKey(uint64(id), rid), nil, nil); err != nil {
			return err
		}
		return a.b.Set(shortIDKey(id.Short(), rid), nil, nil)
	}
	if err := set(k.Fingerprint(), k.KeyID()); err != nil {
		return err
	}
	for _, sk := range k.SubkeyIDs() {
		if err := set(sk.Fingerprint, sk.KeyID); err != nil {
			return err
		}
	}
	return nil
}

// indexWords writes the postings of every word of k's user IDs with the
// new version's posting value (searchindex.go), counts the words old did
// not have, and adds the e-mail addresses of user IDs old did not have (a
// merge only ever adds user IDs).
func (a *batchApplier) indexWords(k, old *pgpkey.Key, rec *Record, flags byte) error {
	hadUID := make(map[string]bool)
	hadWord := make(map[string]bool)
	if old != nil {
		oldWords, _ := keyWords(old.UserIDs())
		for _, w := range oldWords {
			hadWord[w] = true
		}
		for _, u := range old.UserIDs() {
			hadUID[u] = true
		}
	}
	words, sig := keyWords(k.UserIDs())
	posting := encodePosting(rec.Index, flags, rec.Hash, rec.Created, sig)
	for _, w := range words {
		if err := a.b.Set(wordKey(prefixWord, w, rec.RID), posting, nil); err != nil {
			return err
		}
		if !hadWord[w] {
			a.wordCounts[w]++
		}
	}
	for _, u := range k.UserIDs() {
		if hadUID[u] {
			continue
		}
		if e := Email(u); e != "" {
			if err := a.b.Set(wordKey(prefixEmail, e, rec.RID), nil, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// commitWordCounts adds the batch's changes of word counts to the stored
// counts; a count that reaches zero is removed, as a replay never writes
// one. It reads the stored counts from the apply cache when it has them,
// and records the new ones for it in a.newCounts.
func (a *batchApplier) commitWordCounts() error {
	for w, d := range a.wordCounts {
		if d == 0 {
			continue
		}
		k := wordCountKey(w)
		n, ok := a.s.cache.count(w)
		if !ok {
			v, closer, err := a.s.db.Get(k)
			switch {
			case err == nil:
				n, err = decodeCount(v)
				closer.Close()
				if err != nil {
					return fmt.Errorf("word %q: %w", w, err)
				}
			case !errors.Is(err, pebble.ErrNotFound):
				return err
			}
		}
		if d < 0 && uint64(-d) > n {
			return fmt.Errorf("word %q: count %d would drop by %d: %w", w, n, -d, errBadRecord)
		}
		n = uint64(int64(n) + d)
		var err error
		if n == 0 {
			err = a.b.Delete(k, nil)
		} else {
			err = a.b.Set(k, binary.AppendUvarint(nil, n), nil)
		}
		if err != nil {
			return err
		}
		a.newCounts = append(a.newCounts, wordCount{w, n})
	}
	return nil
}

// count feeds the stats page's daily and hourly histograms of new and
// updated keys, keyed by the event's receive time.
func (a *batchApplier) count(t time.Time, isNew bool) {
	t = t.UTC()
	for _, k := range []string{"d" + t.Format("20060102"), "h" + t.Format("2006010215")} {
		c := a.counters[k]
		if isNew {
			c[0]++
		} else {
			c[1]++
		}
		a.counters[k] = c
	}
}

// commit writes the counters, the prefix tree and every projection's applied
// index into the batch and commits it. Pebble's own WAL is not synced: the
// event log is the durable record, and the applied index travels in the same
// atomic batch, so a lost batch is simply applied again after a crash.
//
// On error nothing of the batch is visible: the batch is dropped and so
// are the prefix tree's changes (its cache holds the batch's inserts and
// deletes until they are committed) and the apply cache is left as it was.
func (a *batchApplier) commit(applied eventlog.Index) error {
	newCounters, err := a.prepareCommit(applied)
	if err == nil {
		if err = a.b.Commit(pebble.NoSync); err != nil {
			err = fmt.Errorf("commit batch up to index %d: %w", applied, err)
		}
	}
	if err != nil {
		a.b.Close()
		a.s.tree.Reset()
		return err
	}
	invalidateRefs(&a.s.refs, a.written, a.fprLists)
	a.s.writes.committed(a.written, applied)
	a.s.keys = a.keys
	for _, wc := range a.newCounts {
		a.s.cache.putCount(wc.word, wc.n)
	}
	for k, v := range newCounters {
		a.s.cache.putCounter(k, v)
	}
	a.s.cache.at = applied
	return a.b.Close()
}

// prepareCommit completes the batch and returns the stats counters it
// writes.
func (a *batchApplier) prepareCommit(applied eventlog.Index) (map[string][16]byte, error) {
	b := a.b
	a.s.cache.valid(a.s.Applied())
	newCounters := make(map[string][16]byte, len(a.counters))
	for k, c := range a.counters {
		key := append([]byte{prefixCounters}, k...)
		prev, ok := a.s.cache.counter(k)
		if !ok {
			v, closer, err := a.s.db.Get(key)
			switch {
			case err == nil:
				copy(prev[:], v)
				closer.Close()
			case !errors.Is(err, pebble.ErrNotFound):
				return nil, fmt.Errorf("read counter %s: %w", k, err)
			}
		}
		var v [16]byte
		binary.BigEndian.PutUint64(v[0:8], binary.BigEndian.Uint64(prev[0:8])+c[0])
		binary.BigEndian.PutUint64(v[8:16], binary.BigEndian.Uint64(prev[8:16])+c[1])
		if err := b.Set(key, v[:], nil); err != nil {
			return nil, err
		}
		newCounters[k] = v
	}
	if err := b.Set(metaKey("keys"), binary.BigEndian.AppendUint64(nil, uint64(a.keys)), nil); err != nil {
		return nil, err
	}
	if err := a.commitWordCounts(); err != nil {
		return nil, err
	}
	if err := a.s.tree.Flush(b); err != nil {
		return nil, fmt.Errorf("flush prefix tree: %w", err)
	}
	for _, p := range Projections {
		if err := b.Set(appliedKey(p), binary.BigEndian.AppendUint64(nil, uint64(applied)), nil); err != nil {
			return nil, err
		}
	}
	return newCounters, nil
}

// treeOp decides what a prefix tree error means. A duplicate insert or a
// missing delete leaves the tree unchanged and only says the tree and the
// hash index disagree about one element: logged for an operator (grapevine
// check finds it), and applying goes on. Anything else (a read error, a
// corrupt node) fails the batch, which the runner retries.
func treeOp(s *Store, op string, h pgpkey.KeyHash, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ptree.ErrDuplicate), errors.Is(err, ptree.ErrMissing):
		s.log.Error().Err(err).Str("key_hash", h.String()).Msg("prefix tree " + op + " disagrees with the hash index")
		return nil
	default:
		return fmt.Errorf("prefix tree %s %s: %w", op, h, err)
	}
}

func (a *batchApplier) isBlocked(fpr []byte) (bool, error) {
	if v, ok := a.blocked[string(fpr)]; ok {
		return v, nil
	}
	return a.s.admin.isBlocked(fpr), nil
}

func (a *batchApplier) isSuppressed(h pgpkey.KeyHash) (bool, error) {
	if v, ok := a.suppressed[h]; ok {
		return v, nil
	}
	return a.s.admin.isSuppressed(h), nil
}

func exists(r Reader, key []byte) (bool, error) {
	_, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	return true, nil
}

// applyAdmin projects the operator's events (issue: deletion that sticks).
//
//   - KeyBlocked: the fingerprint is refused from now on, by upload, recon
//     and mail alike; a stored key stays until deleted.
//   - KeyUnblocked: the fingerprint is accepted again.
//   - KeyDeleted: the key leaves every projection and its fingerprint is
//     blocked, so no copy — the same or a changed one — comes back by
//     gossip. Its hash stays in the recon prefix tree, suppressed: peers
//     see nothing to send us, and hashquery never serves it.
//
// Targets are primary key fingerprints (16, 20 or 32 bytes).
func (a *batchApplier) applyAdmin(idx eventlog.Index, ev *eventlog.Event) error {
	fpr := ev.Target
	switch len(fpr) {
	case 16, 20, 32:
	default:
		a.stats.Rejected++
		a.s.log.Warn().Uint64("index", uint64(idx)).Int("target_bytes", len(fpr)).Msg("admin event without a fingerprint")
		return nil
	}
	block := func() error {
		v := binary.BigEndian.AppendUint64(nil, uint64(idx))
		v = append(v, ev.Reason...)
		a.blocked[string(fpr)] = true
		return a.b.Set(blockedKey(fpr), v, nil)
	}
	switch ev.Kind {
	case eventlog.KindKeyBlocked:
		return block()
	case eventlog.KindKeyUnblocked:
		a.blocked[string(fpr)] = false
		return a.b.Delete(blockedKey(fpr), nil)
	}
	if err := block(); err != nil {
		return err
	}
	rids, err := a.ridsOf(fpr)
	if err != nil {
		return err
	}
	for _, rid := range rids {
		if err := a.deleteKey(idx, rid); err != nil {
			return err
		}
	}
	return nil
}

// ridsOf returns the record IDs of the keys whose primary fingerprint is
// fpr (one, or several v3 keys), including keys written in this batch.
func (a *batchApplier) ridsOf(fpr []byte) ([][]byte, error) {
	seen := make(map[string]bool)
	var out [][]byte
	add := func(rid []byte) {
		if bytes.HasPrefix(rid, fpr) && !seen[string(rid)] {
			seen[string(rid)] = true
			out = append(out, bytes.Clone(rid))
		}
	}
	v, err := a.fprList(fpr)
	if err != nil {
		return nil, err
	}
	for _, rid := range ridList(v) {
		add(rid)
	}
	for rid := range a.written {
		add([]byte(rid))
	}
	return out, nil
}

// deleteKey writes a tombstone version of rid and removes the key from the
// indexes, keeping its hash in the prefix tree as suppressed.
func (a *batchApplier) deleteKey(idx eventlog.Index, rid []byte) error {
	old, key, err := a.current(rid)
	if err != nil || old == nil {
		return err
	}
	b := a.b
	tomb := &Record{RID: rid, Index: idx, Hash: old.Hash, Deleted: true, SKS: old.SKS, Created: old.Created}
	if err := b.Set(recordKey(rid, idx), encodeRecord(tomb), nil); err != nil {
		return err
	}
	flags := byte(flagDeleted)
	if old.SKS {
		flags |= flagSKS
	}
	if err := b.Set(latestKey(rid), encodeLatest(idx, flags, old.Hash), nil); err != nil {
		return err
	}
	a.written[string(rid)] = writtenKey{rec: tomb}
	if err := b.Delete(hashKey(old.Hash), nil); err != nil {
		return err
	}
	a.hashes[old.Hash] = nil
	if old.SKS {
		if err := b.Set(suppressKey(old.Hash), appendRID(nil, rid), nil); err != nil {
			return err
		}
		a.suppressed[old.Hash] = true
	}
	del := func(k []byte) error { return b.Delete(k, nil) }
	ids := append([]pgpkey.SubkeyID{{Fingerprint: key.Fingerprint(), KeyID: key.KeyID()}}, key.SubkeyIDs()...)
	for _, id := range ids {
		if err := errors.Join(a.updateFprList(id.Fingerprint.Bytes(), rid, false), del(keyIDKey(uint64(id.KeyID), rid)), del(shortIDKey(id.KeyID.Short(), rid))); err != nil {
			return err
		}
	}
	words, _ := keyWords(key.UserIDs())
	for _, w := range words {
		if err := del(wordKey(prefixWord, w, rid)); err != nil {
			return err
		}
		a.wordCounts[w]--
	}
	for _, u := range key.UserIDs() {
		if e := Email(u); e != "" {
			if err := del(wordKey(prefixEmail, e, rid)); err != nil {
				return err
			}
		}
	}
	a.keys--
	a.stats.Deleted++
	return nil
}

// fprList returns the record-ID list of a fingerprint, batch included.
func (a *batchApplier) fprList(fpr []byte) ([]byte, error) {
	if v, ok := a.fprLists[string(fpr)]; ok {
		return v, nil
	}
	v, closer, err := a.s.applyReader().Get(fprKey(fpr))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return bytes.Clone(v), nil
}

// updateFprList adds rid to (or removes it from) fpr's record-ID list.
func (a *batchApplier) updateFprList(fpr, rid []byte, add bool) error {
	old, err := a.fprList(fpr)
	if err != nil {
		return err
	}
	v := ridListWith(old, rid, add)
	if bytes.Equal(v, old) && (len(old) > 0 || !add) {
		return nil
	}
	a.fprLists[string(fpr)] = v
	if len(v) == 0 {
		return a.b.Delete(fprKey(fpr), nil)
	}
	fk := fprKey(fpr)
	a.s.presence.add(fk)
	return a.b.Set(fk, v, nil)
}
