package projections

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cockroachdb/pebble"
	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

// Parts of the store a Finding is about, as `grapevine check` prints them.
const (
	CheckLog         = "log"
	CheckProjections = "projections"
	CheckPtree       = "prefix tree"
	CheckKeyCount    = "key count"
)

// Finding is one problem Check found.
type Finding struct {
	Part  string         // CheckLog, CheckProjections, CheckPtree or CheckKeyCount
	Index eventlog.Index // the log index concerned (CheckLog), or 0
	Text  string         // what is wrong, without the part
}

// String returns the finding as one report line, "part: text".
func (f Finding) String() string { return f.Part + ": " + f.Text }

// CheckOptions tune Check. The zero value of a field means its default.
type CheckOptions struct {
	// TempDir is where the replay store is built, in a fresh subdirectory
	// that Check removes. It needs about as much space as the store
	// itself. Default os.TempDir().
	TempDir string
	// MaxFindings bounds the findings reported per part (and per key space
	// for the comparison with the replay); the rest are only counted.
	// Default 10.
	MaxFindings int
}

// CheckResult sums up what Check read and found.
type CheckResult struct {
	// Applied is the index the store had applied when Check compared it
	// (after catching up): every other count is as of this index.
	Applied eventlog.Index
	// Events is the number of log records in [first, Applied] that decoded
	// (their checksums verified); BadEvents the number that did not.
	Events, BadEvents int64
	// Replayed is the index the replay store reached; the comparison runs
	// only when it equals Applied.
	Replayed eventlog.Index
	// Compared is the number of Pebble keys compared with the replay, and
	// Differences how many of them differ (present on one side only, or
	// with different values).
	Compared, Differences int64
	// PtreeElements is the number of elements the prefix tree holds
	// (walked, not the root's count), and SKSHashes the number of hashes
	// in the hash index whose key is in the SKS recon set.
	PtreeElements, SKSHashes int64
	// Keys is the number of live keys (latest entries not deleted), and
	// KeyCount the count stored in the meta data.
	Keys, KeyCount int64
	// HockeypuckApplied is the index the Hockeypuck dataset had applied
	// (at least Applied); HockeypuckPtreeElements and HockeypuckHashes
	// count its tree's elements and its hash index (hockeypuck.go).
	HockeypuckApplied                         eventlog.Index
	HockeypuckPtreeElements, HockeypuckHashes int64
	// Findings is the number of problems found, reported or not.
	Findings int64
}

// OK reports whether Check found nothing wrong.
func (r CheckResult) OK() bool { return r.Findings == 0 }

// Check verifies the store against the log, and reports each problem to
// report (which may be nil) as it finds it:
//
//   - it first catches the store up with log, so that both describe the
//     same index (CheckResult.Applied);
//   - it reads every record of the log up to that index, which verifies
//     each record's checksum, and applies the events to a new store in a
//     temporary directory: a clean replay;
//   - it compares every key and value of the two Pebble databases;
//   - it walks the prefix tree and checks that its elements are exactly the
//     hashes in the hash index whose keys are in the SKS recon set, and that
//     every node's element count and svalues equal those of the elements
//     below it (ptree.SValues);
//   - it checks that the stored key count equals the number of live keys.
//
// Problems in the data are findings, not errors: Check returns an error only
// when it cannot go on (I/O on the temporary store, ctx done). It reads the
// store from a snapshot, so a daemon may keep applying meanwhile; only one
// Check should run at a time per TempDir's filesystem space.
func (s *Store) Check(ctx context.Context, log *eventlog.Log, opts CheckOptions, report func(Finding)) (CheckResult, error) {
	if opts.MaxFindings <= 0 {
		opts.MaxFindings = 10
	}
	c := &checker{s: s, opts: opts, report: report, counts: make(map[string]int)}

	// Catch up and take a snapshot under the apply lock, so that the
	// snapshot holds exactly the index it reports.
	s.applyMu.Lock()
	if _, err := s.catchUp(ctx, log, nil); err != nil {
		if ctx.Err() != nil {
			s.applyMu.Unlock()
			return c.res, ctx.Err()
		}
		c.find(CheckProjections, 0, "catch up with the log: %v", err)
	}
	hpUnlock, err := s.hockeypuckCheckLock(ctx, log, s.Applied())
	if err != nil {
		c.find(CheckProjections, 0, "catch the Hockeypuck dataset up with the log: %v", err)
	}
	snap := s.db.NewSnapshot()
	c.res.Applied = s.Applied()
	c.res.HockeypuckApplied = s.HockeypuckApplied()
	hpUnlock()
	s.applyMu.Unlock()
	defer snap.Close()

	if err := c.replay(ctx, log, snap); err != nil {
		return c.res, err
	}
	if err := c.checkTree(ctx, snap); err != nil {
		return c.res, err
	}
	if err := c.checkHockeypuck(ctx, snap); err != nil {
		return c.res, err
	}
	if err := c.checkKeyCount(snap); err != nil {
		return c.res, err
	}
	if err := c.checkWordIndex(ctx, snap); err != nil {
		return c.res, err
	}
	return c.res, nil
}

type checker struct {
	s      *Store
	opts   CheckOptions
	report func(Finding)
	res    CheckResult
	counts map[string]int // findings reported per part or key space
}

// find counts a finding and reports it unless its part already reported
// MaxFindings.
func (c *checker) find(part string, idx eventlog.Index, format string, args ...any) {
	c.findIn(part, part, idx, format, args...)
}

func (c *checker) findIn(part, bucket string, idx eventlog.Index, format string, args ...any) {
	c.res.Findings++
	c.counts[bucket]++
	n := c.counts[bucket]
	if c.report == nil || n > c.opts.MaxFindings {
		return
	}
	text := fmt.Sprintf(format, args...)
	if n == c.opts.MaxFindings {
		text += " (further findings of this kind are counted, not listed)"
	}
	c.report(Finding{Part: part, Index: idx, Text: text})
}

// replay reads the log up to the applied index into a fresh store and
// compares it with snap.
func (c *checker) replay(ctx context.Context, log *eventlog.Log, snap *pebble.Snapshot) error {
	dir, err := os.MkdirTemp(c.opts.TempDir, "grapevine-check-")
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer os.RemoveAll(dir)
	cfg := c.s.cfg
	cfg.Logger = zerolog.Nop() // the live store logged these events' warnings already
	tmp, err := Open(dir, cfg)
	if err != nil {
		return fmt.Errorf("check: replay store: %w", err)
	}
	defer tmp.Close()

	at := c.res.Applied
	replaying := true // false once an event could not be read or applied
	var batch []parsedEvent
	flush := func() {
		if !replaying || len(batch) == 0 {
			batch = batch[:0]
			return
		}
		tmp.parseParallel(batch)
		tmp.applyMu.Lock()
		err := tmp.applyBatch(batch)
		tmp.applyMu.Unlock()
		if err != nil {
			c.find(CheckProjections, 0, "replay stopped: %v", err)
			replaying = false
		}
		batch = batch[:0]
	}

	// Read [first, at], going on after a bad record to find the next
	// ones; a long run of unreadable indexes means the framing is broken,
	// and nothing after it can be trusted.
	next := log.FirstIndex()
	if next == 0 {
		next = 1
	}
	if next > 1 && at > 0 {
		c.find(CheckLog, next, "log starts at index %d: events 1 to %d are missing", next, next-1)
		replaying = false
	}
	it := log.NewDiskIterator(next, at+1) // what is on disk, not the log's copy in memory
	defer func() { it.Close() }()
	badRun := 0
	for next <= at {
		if err := ctx.Err(); err != nil {
			return err
		}
		idx, ev, err := it.Next()
		if err == io.EOF {
			flush()
			c.find(CheckLog, next, "log ends at index %d, but the projections applied %d", next-1, at)
			replaying = false
			break
		}
		if err != nil {
			if !errors.Is(err, eventlog.ErrCorrupt) && !errors.Is(err, eventlog.ErrUnknownVersion) {
				return fmt.Errorf("check: read log: %w", err)
			}
			c.res.BadEvents++
			c.find(CheckLog, next, "%v", err)
			flush()
			replaying = false
			if badRun++; badRun >= c.opts.MaxFindings {
				c.find(CheckLog, next, "log unreadable from index %d on: stopped reading", next-eventlog.Index(badRun)+1)
				break
			}
			next++
			it = log.NewDiskIterator(next, at+1)
			continue
		}
		badRun = 0
		c.res.Events++
		next = idx + 1
		if replaying {
			batch = append(batch, parsedEvent{idx: idx, ev: ev})
			if len(batch) >= tmp.cfg.BatchEvents {
				flush()
			}
		}
	}
	flush()
	c.res.Replayed = tmp.Applied()
	if !replaying || c.res.Replayed != at {
		c.find(CheckProjections, 0, "not compared: the replay reached index %d of %d", c.res.Replayed, at)
		return nil
	}
	if err := tmp.CatchUpHockeypuck(ctx, log, c.res.HockeypuckApplied); err != nil || tmp.HockeypuckApplied() != c.res.HockeypuckApplied {
		c.find(CheckProjections, 0, "not compared: the Hockeypuck replay reached index %d of %d: %v", tmp.HockeypuckApplied(), c.res.HockeypuckApplied, err)
		return nil
	}
	// The replay's memtables hold everything; compare from a snapshot.
	rsnap := tmp.db.NewSnapshot()
	defer rsnap.Close()
	return c.compare(ctx, snap, rsnap)
}

// compare walks both databases in key order and reports every key that is
// on one side only or whose values differ, by key space.
func (c *checker) compare(ctx context.Context, live, replay pebble.Reader) error {
	a, err := live.NewIter(nil)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer a.Close()
	b, err := replay.NewIter(nil)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer b.Close()
	a.First()
	b.First()
	for n := 0; a.Valid() || b.Valid(); n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		c.res.Compared++
		var cmp int
		switch {
		case !a.Valid():
			cmp = 1
		case !b.Valid():
			cmp = -1
		default:
			cmp = bytes.Compare(a.Key(), b.Key())
		}
		switch {
		case cmp < 0:
			c.diff(a.Key(), "only in the store, not in the replay")
			a.Next()
		case cmp > 0:
			c.diff(b.Key(), "missing from the store (the replay has it)")
			b.Next()
		default:
			if !bytes.Equal(a.Value(), b.Value()) && !c.sameRecord(a.Key(), a.Value(), b.Value()) {
				c.diff(a.Key(), "differs from the replay")
			}
			a.Next()
			b.Next()
		}
	}
	if err := a.Error(); err != nil {
		return fmt.Errorf("check: read store: %w", err)
	}
	if err := b.Error(); err != nil {
		return fmt.Errorf("check: read replay: %w", err)
	}
	return nil
}

// sameRecord reports whether two record values of key k hold the same
// version, one with its key bytes and the other with a reference to the
// log event that holds the same bytes: the bulk path stores every version
// whole, the applier a reference where it can (record.go), so a store
// built by an import and its replay differ so.
func (c *checker) sameRecord(k, live, replay []byte) bool {
	rid, idx, ok := splitRecordKey(k)
	if !ok {
		return false
	}
	x, err := decodeRecord(rid, idx, live)
	if err != nil {
		return false
	}
	y, err := decodeRecord(rid, idx, replay)
	if err != nil || x.keyInLog == y.keyInLog {
		return false
	}
	if c.s.resolveKey(x) != nil || c.s.resolveKey(y) != nil {
		return false
	}
	return x.Deleted == y.Deleted && x.SKS == y.SKS && x.Hash == y.Hash &&
		x.Created.Equal(y.Created) && bytes.Equal(x.Key, y.Key)
}

func (c *checker) diff(k []byte, what string) {
	c.res.Differences++
	name := spaceName(k)
	c.findIn(CheckProjections, "projections/"+name, 0, "%s: %s %s", name, describeKey(k), what)
}

// spaceName names the projection that owns key k (see layout.go).
func spaceName(k []byte) string {
	if len(k) == 0 {
		return "empty key"
	}
	switch k[0] {
	case prefixMeta:
		return "meta"
	case prefixRecord:
		return "key index"
	case prefixLatest:
		return "key index (latest)"
	case prefixFpr:
		return "fingerprint index"
	case prefixKeyID:
		return "key-ID index"
	case prefixShortID:
		return "short key-ID index"
	case prefixHash:
		return "hash index"
	case prefixWord:
		return "search index (words)"
	case prefixEmail:
		return "search index (e-mails)"
	case prefixPtree:
		return "prefix tree"
	case prefixCounters:
		return "stats counters"
	case prefixHPRecord, prefixHPHash, prefixHPSuppress, prefixHPBlocked:
		return "Hockeypuck dataset"
	case prefixHPPtree:
		return "Hockeypuck prefix tree"
	}
	return fmt.Sprintf("unknown key space %q", k[0])
}

// describeKey prints k for a report line: its prefix byte, then text for
// the key spaces keyed by text and uppercase hex otherwise, shortened.
func describeKey(k []byte) string {
	if len(k) == 0 {
		return `""`
	}
	var sb strings.Builder
	sb.WriteByte(k[0])
	rest := k[1:]
	switch k[0] {
	case prefixMeta, prefixCounters:
		sb.WriteString(string(rest))
	case prefixPtree:
		// P n d₀ d₁ …: a node by its child indexes (ptree doc.go).
		if len(rest) > 0 && rest[0] == 'n' {
			sb.WriteByte('n')
			for _, d := range rest[1:] {
				fmt.Fprintf(&sb, ".%d", d)
			}
		} else {
			sb.WriteString(strings.ToUpper(hex.EncodeToString(rest)))
		}
	case prefixWord, prefixEmail:
		if word, ok := bytes.CutSuffix(rest, []byte{1}); ok && k[0] == prefixWord && !bytes.Contains(word, []byte{0}) {
			sb.WriteString(string(word) + " (count)")
			break
		}
		word, rid, _ := bytes.Cut(rest, []byte{0})
		sb.WriteString(string(word))
		if len(rid) > 0 {
			sb.WriteByte(' ')
			sb.WriteString(strings.ToUpper(hex.EncodeToString(rid[1:])))
		}
	default:
		sb.WriteString(strings.ToUpper(hex.EncodeToString(rest)))
	}
	out := sb.String()
	if len(out) > 96 {
		out = out[:93] + "..."
	}
	return out
}

// checkTree walks the prefix tree in snap and compares its elements with
// the SKS hashes of the hash index. Both come in the same order: an
// element's wire form is its key hash's bytes, the tree is walked in
// prefix order, and the hash index is keyed by the hash.
func (c *checker) checkTree(ctx context.Context, snap *pebble.Snapshot) error {
	cfg := c.s.cfg.Ptree
	hc, err := newSKSHashCursor(snap, c)
	if err != nil {
		return err
	}
	defer hc.close()
	var prev pgpkey.KeyHash
	first := true
	emit := func(z ptree.Zp) {
		c.res.PtreeElements++
		h, ok := z.KeyHash()
		if !ok {
			c.find(CheckPtree, 0, "element %s is not a key hash", z)
			return
		}
		kh := pgpkey.KeyHash(h)
		if !first && bytes.Compare(kh[:], prev[:]) <= 0 {
			c.find(CheckPtree, 0, "element %s out of order after %s", kh, prev)
		}
		first, prev = false, kh
		for hc.valid && bytes.Compare(hc.h[:], kh[:]) < 0 {
			c.find(CheckPtree, 0, "hash index has %s (SKS set) but the tree does not", hc.h)
			hc.next()
		}
		if hc.valid && hc.h == kh {
			hc.next()
			return
		}
		// The hash of a deleted key stays in the tree, suppressed: recon
		// then neither serves it nor fetches it again.
		if _, closer, err := snap.Get(suppressKey(kh)); err == nil {
			closer.Close()
			return
		}
		c.find(CheckPtree, 0, "tree has %s but the hash index has no such SKS key", kh)
	}
	if err := c.walkTree(ctx, snap, cfg, CheckPtree, emit); err != nil {
		return err
	}
	for hc.valid {
		c.find(CheckPtree, 0, "hash index has %s (SKS set) but the tree does not", hc.h)
		hc.next()
	}
	return hc.err
}

// walkTree checks the structure of the prefix tree cfg names in snap — every
// node's element count and svalues against its subtree — recording what is
// wrong under part, and calls emit for every leaf element in prefix order.
// The SKS tree and the Hockeypuck dataset's tree share it.
func (c *checker) walkTree(ctx context.Context, snap *pebble.Snapshot, cfg ptree.Config, part string, emit func(ptree.Zp)) error {
	points := ptree.SamplePoints(cfg.NumSamples())
	var visit func(p ptree.Prefix) (int, []ptree.Zp, bool, error)
	visit = func(p ptree.Prefix) (int, []ptree.Zp, bool, error) {
		if err := ctx.Err(); err != nil {
			return 0, nil, false, err
		}
		n, err := ptree.ReadNode(snap, cfg, p)
		if err != nil {
			if errors.Is(err, ptree.ErrCorrupt) || errors.Is(err, ptree.ErrNodeNotFound) {
				c.find(part, 0, "node %q: %v", p, err)
				return 0, nil, false, nil
			}
			return 0, nil, false, fmt.Errorf("check: read %s node %q: %w", part, p, err)
		}
		var count int
		var sv []ptree.Zp
		ok := true
		if n.IsLeaf {
			for _, z := range n.Elements {
				emit(z)
			}
			count, sv = len(n.Elements), ptree.SValues(n.Elements, points)
		} else {
			sv = ptree.SValues(nil, points) // all ones
			for _, ch := range n.Children {
				cc, csv, cok, err := visit(ch)
				if err != nil {
					return 0, nil, false, err
				}
				if !cok {
					ok = false
					continue
				}
				count += cc
				for i := range sv {
					sv[i] = sv[i].Mul(csv[i])
				}
			}
		}
		if !ok { // a node below is unreadable: its ancestors' sums say nothing new
			return 0, nil, false, nil
		}
		if n.NumElements != count {
			c.find(part, 0, "node %q: holds %d elements, the subtree below it %d", p, n.NumElements, count)
		}
		if !equalZps(n.SValues, sv) {
			c.find(part, 0, "node %q: svalues differ from the product over its %d elements", p, count)
		}
		return n.NumElements, n.SValues, true, nil
	}
	_, _, _, err := visit(ptree.Prefix{})
	return err
}

func equalZps(a, b []ptree.Zp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sksHashCursor walks the hash index in order, yielding the hashes whose
// live record is in the SKS recon set. Entries that disagree with the key
// index are findings.
type sksHashCursor struct {
	c     *checker
	r     pebble.Reader
	it    *pebble.Iterator
	h     pgpkey.KeyHash
	valid bool
	err   error
}

func newSKSHashCursor(r pebble.Reader, c *checker) (*sksHashCursor, error) {
	p := []byte{prefixHash}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	hc := &sksHashCursor{c: c, r: r, it: it}
	it.First()
	hc.advance()
	return hc, nil
}

func (hc *sksHashCursor) next() {
	hc.it.Next()
	hc.advance()
}

// advance moves to the first SKS hash at or after the iterator.
func (hc *sksHashCursor) advance() {
	for ; hc.it.Valid(); hc.it.Next() {
		k := hc.it.Key()
		if len(k) != 17 {
			hc.c.find(CheckPtree, 0, "hash index key %X: malformed", k)
			continue
		}
		var h pgpkey.KeyHash
		copy(h[:], k[1:])
		rid, ok := ridAt(hc.it.Value(), 0)
		if !ok {
			hc.c.find(CheckPtree, 0, "hash index %s: malformed value", h)
			continue
		}
		v, closer, err := hc.r.Get(latestKey(rid))
		if errors.Is(err, pebble.ErrNotFound) {
			hc.c.find(CheckPtree, 0, "hash index %s: key %X has no latest version", h, rid)
			continue
		}
		if err != nil {
			hc.err = fmt.Errorf("check: read latest %X: %w", rid, err)
			hc.valid = false
			return
		}
		_, flags, lh, err := decodeLatest(v)
		closer.Close()
		if err != nil {
			hc.c.find(CheckPtree, 0, "hash index %s: key %X: latest version malformed", h, rid)
			continue
		}
		if lh != h {
			hc.c.find(CheckPtree, 0, "hash index %s: key %X is now %s", h, rid, lh)
			continue
		}
		if flags&flagDeleted != 0 || flags&flagSKS == 0 {
			continue
		}
		hc.c.res.SKSHashes++
		hc.h, hc.valid = h, true
		return
	}
	hc.valid = false
	if err := hc.it.Error(); err != nil {
		hc.err = fmt.Errorf("check: read hash index: %w", err)
	}
}

func (hc *sksHashCursor) close() { hc.it.Close() }

// checkKeyCount compares the stored key count with the live latest entries.
func (c *checker) checkKeyCount(snap *pebble.Snapshot) error {
	p := []byte{prefixLatest}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		if _, flags, _, err := decodeLatest(it.Value()); err != nil {
			c.find(CheckKeyCount, 0, "latest entry %s: malformed", describeKey(it.Key()))
		} else if flags&flagDeleted == 0 {
			c.res.Keys++
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("check: read key index: %w", err)
	}
	v, closer, err := snap.Get(metaKey("keys"))
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return fmt.Errorf("check: read key count: %w", err)
	default:
		if len(v) == 8 {
			c.res.KeyCount = int64(binary.BigEndian.Uint64(v))
		} else {
			c.find(CheckKeyCount, 0, "stored key count is %d bytes, want 8", len(v))
		}
		closer.Close()
	}
	if c.res.KeyCount != c.res.Keys {
		c.find(CheckKeyCount, 0, "stored count %d, but the key index holds %d live keys", c.res.KeyCount, c.res.Keys)
	}
	return nil
}

// checkWordIndex walks the word index (searchindex.go): every posting
// value must decode, and every word's count must equal its number of
// postings, since a search trusts the counts to pick its rarest word and
// to answer "insufficiently specific". The replay comparison finds a store
// that differs from a replay; this finds a count wrong in both.
func (c *checker) checkWordIndex(ctx context.Context, snap *pebble.Snapshot) error {
	p := []byte{prefixWord}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return err
	}
	defer it.Close()
	var word []byte // W<word> of the postings counted in n
	var n uint64
	end := func() {
		if word != nil && n > 0 {
			c.find(CheckProjections, 0, "search index: word %q has %d postings but no count", word[1:], n)
		}
		word, n = nil, 0
	}
	var rec Record
	for it.First(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := it.Key()
		i := bytes.IndexByte(k, 0)
		if i < 0 {
			w, ok := bytes.CutSuffix(k, []byte{1})
			if !ok {
				c.find(CheckProjections, 0, "search index: malformed key %s", describeKey(k))
				continue
			}
			got, err := decodeCount(it.Value())
			switch {
			case err != nil:
				c.find(CheckProjections, 0, "search index: %s: %v", describeKey(k), err)
			case !bytes.Equal(w, word) && got != 0:
				c.find(CheckProjections, 0, "search index: word %q counts %d postings but has none", w[1:], got)
			case bytes.Equal(w, word) && got != n:
				c.find(CheckProjections, 0, "search index: word %q counts %d postings but has %d", w[1:], got, n)
			}
			word, n = nil, 0
			continue
		}
		if !bytes.Equal(k[:i], word) {
			end()
			word = append(word[:0], k[:i]...)
		}
		n++
		if _, ok := ridAt(k, i+1); !ok {
			c.find(CheckProjections, 0, "search index: malformed posting key %s", describeKey(k))
		} else if err := decodePosting(it.Value(), &rec); err != nil {
			c.find(CheckProjections, 0, "search index: %s: %v", describeKey(k), err)
		}
	}
	end()
	return it.Error()
}
