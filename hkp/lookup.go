package hkp

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// lookup serves GET /pks/lookup (hkp.md §3-§8).
func (s *Server) lookup(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		return err
	}
	if q.op == "stats" {
		return s.writeStats(w, r, q.mr || q.json)
	}
	if q.search == "" {
		return errBadRequest("missing search parameter")
	}
	s.awaitUploads(r.Context())
	var recs []*projections.Record
	if q.op == "hget" {
		h, err := pgpkey.ParseKeyHash(q.search)
		if err != nil {
			return errBadRequest("hget needs a 32-hex-digit SKS key hash, not %q", q.search)
		}
		rec, err := s.store.ByHash(h)
		if err != nil {
			if errors.Is(err, projections.ErrNotFound) {
				return errNotFound("No keys found")
			}
			return err
		}
		recs = []*projections.Record{rec}
	} else {
		id, err := classifySearch(q.search)
		if err != nil {
			return err
		}
		if q.op == "get" && id != nil && id.hexDigits >= 32 {
			return s.getByFingerprint(w, r, q, id.raw)
		}
		if recs, err = s.find(q, id); err != nil {
			return err
		}
	}
	recs, hidden := s.legacyRecords(q, recs)
	if len(recs) == 0 && hidden > 0 {
		return errLegacyHidden()
	}

	if q.op == "get" || q.op == "hget" {
		return s.writeGet(w, r, q, recs)
	}
	if q.op == "index" && q.mr {
		return s.writeMRIndex(w, r, q, recs)
	}
	keys := s.parseRecords(recs)
	s.summaries.fill(keys)
	defer s.summaries.keep(keys)
	total := len(keys)
	if total == 0 {
		return errNotFound("No keys found")
	}
	if q.limit >= 0 && q.limit < len(keys) {
		keys = keys[:q.limit]
	}
	w.Header().Set("X-HKP-Results-Count", strconv.Itoa(total))

	var body bytes.Buffer
	switch q.op {
	case "index", "vindex":
		switch {
		case q.mr:
			w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
			err = WriteMRIndex(&body, keys, time.Now())
		case q.op == "vindex":
			w.Header().Set("Content-Type", "text/html; charset=UTF-8")
			err = WriteHTMLVIndex(&body, q.search, keys, IndexOptions{Fingerprint: q.fingerprint, Hash: q.hash}, s.issuerLookup(), time.Now())
		default:
			w.Header().Set("Content-Type", "text/html; charset=UTF-8")
			err = WriteHTMLIndex(&body, q.search, keys, IndexOptions{Fingerprint: q.fingerprint, Hash: q.hash})
		}
		if err != nil {
			return err
		}
	}
	return writeBody(w, r, body.Bytes())
}

// writeMRIndex answers op=index&options=mr (hkp.md §6) from the cached
// index entries of the keys; only keys not cached yet are parsed and
// summarised. It answers exactly what WriteMRIndex writes for the parsed
// keys: a record that does not parse is skipped and logged, and the count
// and limit apply as on the other index pages (legacyRecords has already
// left out what legacy clients must not see).
func (s *Server) writeMRIndex(w http.ResponseWriter, r *http.Request, q query, recs []*projections.Record) error {
	entries, err := s.mrEntries(recs)
	if err != nil {
		return err
	}
	total := len(entries)
	if total == 0 {
		return errNotFound("No keys found")
	}
	if q.limit >= 0 && q.limit < len(entries) {
		entries = entries[:q.limit]
	}
	h := w.Header()
	h["X-Hkp-Results-Count"] = []string{strconv.Itoa(total)}
	h["Content-Type"] = textPlain
	// The entries' cached texts are written as they are, not copied into
	// one body first (what writeMREntries writes).
	return writeBody(w, r, mrEntryTexts(entries, time.Now())...)
}

// writeBody writes a 200 answer whose body is the pieces, in order.
func writeBody(w http.ResponseWriter, r *http.Request, body ...[]byte) error {
	n := 0
	for _, b := range body {
		n += len(b)
	}
	w.Header()["Content-Length"] = []string{strconv.Itoa(n)}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	for _, b := range body {
		if len(b) == 0 {
			continue
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// find resolves a search (hkp.md §4), classified as id (nil for a word
// search), to records.
func (s *Server) find(q query, id *idSearch) ([]*projections.Record, error) {
	if id != nil {
		switch id.hexDigits {
		case 8:
			return s.store.ByShortID(uint32(id.raw[0])<<24 | uint32(id.raw[1])<<16 | uint32(id.raw[2])<<8 | uint32(id.raw[3]))
		case 16:
			var v uint64
			for _, b := range id.raw {
				v = v<<8 | uint64(b)
			}
			return s.store.ByKeyID(pgpkey.KeyID(v))
		default: // 32 (v3), 40 (v4), 64 (v5/v6) fingerprints
			return s.store.ByFingerprint(id.raw)
		}
	}
	if q.exact {
		if addr := mailbox(q.search); addr != "" {
			recs, err := s.store.SearchEmail(addr, s.conf().MaxMatches)
			if err != nil || len(recs) > 0 {
				return recs, err
			}
		}
	}
	words := projections.Words(q.search)
	if len(words) == 0 {
		return nil, nil
	}
	lim := projections.SearchLimits{MaxMatches: s.conf().MaxMatches, MaxInternalMatches: s.conf().MaxInternalMatches}
	if q.op == "index" && q.mr {
		// writeMRIndex answers most keys from entries cached by key hash
		// and reads the key bytes of the others itself.
		return s.store.SearchWordsMeta(words, lim)
	}
	return s.store.SearchWords(words, lim)
}

// mailbox returns the address of "addr", "<addr>" or "Name <addr>", or "".
func mailbox(search string) string {
	s := strings.TrimSpace(search)
	if !strings.Contains(s, "<") {
		s = "<" + s + ">"
	}
	return projections.Email(s)
}

// parseRecords parses stored keys; a record that fails to parse (only
// possible after a bug or disk damage) is skipped and logged, so one
// unusual key never fails a whole answer.
func (s *Server) parseRecords(recs []*projections.Record) []*pgpkey.Key {
	keys := make([]*pgpkey.Key, 0, len(recs))
	for _, rec := range recs {
		k, err := projections.ParseEventKey(rec.Key)
		if err != nil {
			s.log.Error().Err(err).Str("key_hash", rec.Hash.String()).Msg("stored key does not parse")
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// mrEntries returns the MR index entries of recs, in order, from the
// summary cache where it has them. The others are built on up to
// GOMAXPROCS goroutines: building one verifies every self-signature of its
// key (RSA, ECDSA P-384: up to milliseconds each), and the first search to
// show a few such keys spent up to 120 ms doing that on one core. A key
// whose stored bytes do not parse is logged and left out.
func (s *Server) mrEntries(recs []*projections.Record) ([]*mrEntry, error) {
	entries := make([]*mrEntry, len(recs))
	sums := make([]*pgpkey.Summary, len(recs))
	var misses []int
	for i, rec := range recs {
		entries[i], sums[i] = s.summaries.mr(rec.Hash)
		if entries[i] == nil {
			misses = append(misses, i)
		}
	}
	build := func(i int) error {
		rec := recs[i]
		if rec.Key == nil { // from SearchWordsMeta, whose records are shared
			full := *rec
			if err := s.store.FillKey(&full); err != nil {
				return err
			}
			rec = &full
		}
		k, err := projections.ParseEventKey(rec.Key)
		if err != nil {
			s.log.Error().Err(err).Str("key_hash", rec.Hash.String()).Msg("stored key does not parse")
			return nil
		}
		if sums[i] != nil {
			k.SetSummary(*sums[i])
		}
		entries[i] = newMREntry(k)
		s.summaries.keepMR(rec.Hash, entries[i])
		return nil
	}
	workers := min(len(misses), runtime.GOMAXPROCS(0))
	if workers <= 1 {
		for _, i := range misses {
			if err := build(i); err != nil {
				return nil, err
			}
		}
	} else {
		var next atomic.Int64
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := int(next.Add(1) - 1); j < len(misses); j = int(next.Add(1) - 1) {
					if errs[w] = build(misses[j]); errs[w] != nil {
						return
					}
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
	}
	out := entries[:0]
	for _, e := range entries {
		if e != nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// getByFingerprint answers op=get by fingerprint (hkp.md §5), the lookup
// clients make most. It reads the keys' latest pointers first and the key
// bytes only when the armored answer of that version is not cached
// (armorCache): records stand in for the pointers, without Key, until
// loadKeys reads them.
func (s *Server) getByFingerprint(w http.ResponseWriter, r *http.Request, q query, fpr []byte) error {
	refs, err := s.store.FingerprintRefs(fpr)
	if err != nil {
		return err
	}
	if len(refs) == 1 && q.limit != 0 {
		// One key, the answer clients ask for most: legacyRecords' rule
		// for it without slices of stand-ins.
		if !refs[0].SKS && !s.legacyShown(q) {
			return errLegacyHidden()
		}
		return s.getOne(w, r, q, projections.Record{RID: refs[0].RID, Index: refs[0].Index})
	}
	recs := make([]*projections.Record, len(refs))
	stubs := make([]projections.Record, len(refs))
	for i, ref := range refs {
		stubs[i] = projections.Record{RID: ref.RID, Index: ref.Index, Hash: ref.Hash, SKS: ref.SKS}
		recs[i] = &stubs[i]
	}
	recs, hidden := s.legacyRecords(q, recs)
	if len(recs) == 0 && hidden > 0 {
		return errLegacyHidden()
	}
	if len(recs) == 1 && q.limit != 0 {
		return s.getOne(w, r, q, *recs[0])
	}
	if recs, err = s.loadKeys(recs); err != nil {
		return err
	}
	return s.writeGet(w, r, q, recs)
}

// getOne answers op=get with the one key version rec names (RID and
// Index), from the armor cache when it holds it.
func (s *Server) getOne(w http.ResponseWriter, r *http.Request, q query, rec projections.Record) error {
	armor := s.armors.get(&rec)
	if armor == nil {
		// Armored from the key bytes in place, kept in the cache and
		// written in pieces like a cached answer: no copy of the
		// record, none of the armor. The copies were 30 % of what a
		// get of a key no cache held allocated (every fingerprint
		// cycled), and allocation sets the GC's pace.
		err := s.store.ReadKey(projections.Ref{RID: rec.RID, Index: rec.Index}, func(key []byte) {
			armor = appendArmorKeys(nil, nil, key)
		})
		if errors.Is(err, projections.ErrNotFound) {
			return errNotFound("No keys found")
		}
		if err != nil {
			return err
		}
		s.armors.put(&rec, armor)
	}
	return s.writeCachedArmor(w, r, q, armor)
}

// loadKeys replaces the stand-ins of getByFingerprint with the stored
// versions they name. A version is never removed, so each is there; only
// a deletion version (which a live pointer never names) is left out.
func (s *Server) loadKeys(refs []*projections.Record) ([]*projections.Record, error) {
	recs := refs[:0]
	for _, ref := range refs {
		rec, err := s.store.Version(projections.Ref{RID: ref.RID, Index: ref.Index})
		if err == projections.ErrNotFound {
			continue
		}
		if err != nil {
			return nil, err
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// writeGet answers op=get and op=hget (hkp.md §5): the stored keys, which
// are already in SKS's serialised canonical form, in one armor block. No
// parsing on this path: it is the one clients hit hardest.
func (s *Server) writeGet(w http.ResponseWriter, r *http.Request, q query, recs []*projections.Record) error {
	total := len(recs)
	if total == 0 {
		return errNotFound("No keys found")
	}
	if q.limit >= 0 && q.limit < len(recs) {
		recs = recs[:q.limit]
	}
	return s.writeArmored(w, r, q, total, s.armorRecords(recs))
}

// writeCachedArmor writes the op=get answer of one key whose armor (without
// header lines) came from the armor cache. The machine-readable answer, the
// one clients ask for, is written in three pieces — first line, this
// server's header, the rest — instead of copying the armor into a new
// buffer with the header inserted: that copy was a third of the bytes a
// cached get allocated, and allocation is what sets the GC's pace
// (docs/benchmarks.md, optimisation log).
func (s *Server) writeCachedArmor(w http.ResponseWriter, r *http.Request, q query, armor []byte) error {
	if !q.mr {
		return s.writeArmored(w, r, q, 1, s.withArmorHeaders(armor))
	}
	hv := s.headerValues()
	h := w.Header()
	h["X-Hkp-Results-Count"] = one
	h["Content-Type"] = pgpKeysType
	h["Content-Disposition"] = gpgkeyAttachment
	return writeBody(w, r, armor[:len(armorBegin)], hv.armorComment, armor[len(armorBegin):])
}

// writeArmored writes an op=get answer of total keys: the armor itself
// (options=mr) or the HTML page that shows it.
func (s *Server) writeArmored(w http.ResponseWriter, r *http.Request, q query, total int, armored []byte) error {
	w.Header().Set("X-HKP-Results-Count", strconv.Itoa(total))
	if q.mr {
		w.Header().Set("Content-Type", "application/pgp-keys; charset=UTF-8")
		w.Header().Set("Content-Disposition", "attachment; filename=gpgkey.asc")
		return writeBody(w, r, armored)
	}
	var body bytes.Buffer
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	if err := WriteGetHTML(&body, q.search, armored); err != nil {
		return err
	}
	return writeBody(w, r, body.Bytes())
}

// armorRecords writes the stored keys in one armor block with a CRC and a
// final newline (hkp.md §5.1). The armor of a single key is cached by its
// version, without the header lines, which the configuration may change.
func (s *Server) armorRecords(recs []*projections.Record) []byte {
	if len(recs) == 1 && s.armors != nil {
		armor := s.armors.get(recs[0])
		if armor == nil {
			armor = appendArmor(nil, nil, recs)
			s.armors.put(recs[0], armor)
		}
		return s.withArmorHeaders(armor)
	}
	var headers []string
	if host := s.conf().Hostname; host != "" {
		headers = []string{"Comment: Hostname: " + truncate(host, 53)}
	}
	return appendArmor(nil, headers, recs)
}

// appendArmor appends the armor of the keys with these header lines.
func appendArmor(dst []byte, headers []string, recs []*projections.Record) []byte {
	keys := make([][]byte, len(recs))
	for i, rec := range recs {
		keys[i] = rec.Key
	}
	return appendArmorKeys(dst, headers, keys...)
}

// appendArmorKeys appends the armor of the keys, given as their bytes,
// with these header lines, growing dst once to the armor's size.
func appendArmorKeys(dst []byte, headers []string, keys ...[]byte) []byte {
	size := 128
	for _, k := range keys {
		size += len(k)*4/3 + len(k)/48 + 4
	}
	return pgpkey.AppendArmor(slices.Grow(dst, size), headers, keys...)
}

// armorBegin is the first line of every armor AppendArmor writes; the
// header lines follow it.
const armorBegin = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n"

// withArmorHeaders returns armor (written without header lines) with this
// server's: the Comment naming the host (hkp.md §5.1). Without a hostname
// it is armor itself, which the caller must not modify.
func (s *Server) withArmorHeaders(armor []byte) []byte {
	comment := s.headerValues().armorComment
	if len(comment) == 0 {
		return slices.Clip(armor)
	}
	out := make([]byte, 0, len(armor)+len(comment))
	out = append(out, armorBegin...)
	out = append(out, comment...)
	return append(out, armor[len(armorBegin):]...)
}

// armorComment returns the armor header line naming host, or nil without
// a hostname.
func armorComment(host string) []byte {
	if host == "" {
		return nil
	}
	return []byte("Comment: Hostname: " + truncate(host, 53) + "\n")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// issuerLookup names signers on vindex pages by their primary user ID.
func (s *Server) issuerLookup() IssuerLookup {
	return func(id pgpkey.KeyID) (string, bool) {
		recs, err := s.store.ByKeyID(id)
		if err != nil || len(recs) == 0 {
			return "", false
		}
		k, err := projections.ParseEventKey(recs[0].Key)
		if err != nil {
			return "", false
		}
		sum := k.Summary()
		for _, u := range sum.UIDs {
			if u.Primary && !u.IsAttribute {
				return u.Text, true
			}
		}
		for _, u := range sum.UIDs {
			if !u.IsAttribute {
				return u.Text, true
			}
		}
		return "", false
	}
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	return writeBody(w, r, []byte(fmt.Sprintf("OK\napplied: %d\n", s.store.Applied())))
}
