package hkp

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
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
			if err == projections.ErrNotFound {
				return errNotFound("No keys found")
			}
			return err
		}
		recs = []*projections.Record{rec}
	} else if recs, err = s.find(q); err != nil {
		return err
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
	entries := make([]*mrEntry, 0, len(recs))
	for _, rec := range recs {
		e, sum := s.summaries.mr(rec.Hash)
		if e == nil {
			if rec.Key == nil { // from SearchWordsMeta
				if err := s.store.FillKey(rec); err != nil {
					return err
				}
			}
			k, err := projections.ParseEventKey(rec.Key)
			if err != nil {
				s.log.Error().Err(err).Str("key_hash", rec.Hash.String()).Msg("stored key does not parse")
				continue
			}
			if sum != nil {
				k.SetSummary(*sum)
			}
			e = newMREntry(k)
			s.summaries.keepMR(rec.Hash, e)
		}
		entries = append(entries, e)
	}
	total := len(entries)
	if total == 0 {
		return errNotFound("No keys found")
	}
	if q.limit >= 0 && q.limit < len(entries) {
		entries = entries[:q.limit]
	}
	w.Header().Set("X-HKP-Results-Count", strconv.Itoa(total))
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	var body bytes.Buffer
	if err := writeMREntries(&body, entries, time.Now()); err != nil {
		return err
	}
	return writeBody(w, r, body.Bytes())
}

func writeBody(w http.ResponseWriter, r *http.Request, body []byte) error {
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, err := w.Write(body)
		return err
	}
	return nil
}

// find resolves a search (hkp.md §4) to records.
func (s *Server) find(q query) ([]*projections.Record, error) {
	id, err := classifySearch(q.search)
	if err != nil {
		return nil, err
	}
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
	w.Header().Set("X-HKP-Results-Count", strconv.Itoa(total))
	armored, err := s.armorRecords(recs)
	if err != nil {
		return err
	}
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
// final newline (hkp.md §5.1).
func (s *Server) armorRecords(recs []*projections.Record) ([]byte, error) {
	var headers []string
	if s.conf().Hostname != "" {
		headers = []string{"Comment: Hostname: " + truncate(s.conf().Hostname, 53)}
	}
	keys := make([][]byte, len(recs))
	size := 128
	for i, rec := range recs {
		keys[i] = rec.Key
		size += len(rec.Key)*4/3 + len(rec.Key)/48 + 4
	}
	return pgpkey.AppendArmor(make([]byte, 0, size), headers, keys...), nil
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
