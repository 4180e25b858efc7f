package hkp

import (
	"github.com/grapevine-keyserver/grapevine/projections"
)

// legacyRecords applies the v1 rule for v5 and v6 keys to a /pks/lookup
// answer (docs/compat.md, "v6 keys"). GnuPG 2.2 and Sequoia 0.27 fail a
// whole import when one key in the block is v6 ("packet(6) with unknown
// version 6", "Unsupported Cert"), so a v5/v6 key must never ride along
// in an answer a legacy client did not aim at it. It stays in only when
// the search named exactly that key: its (or a subkey's) 64-hex
// fingerprint or 16-hex key ID, which an old client cannot produce and a
// collision on costs 2^64 work, or its SKS hash (op=hget). Short key IDs
// and text searches never return one; IndexV6 turns the rule off.
// Hockeypuck master drops v6 keys from every legacy answer instead.
//
// hidden counts the keys dropped, so that an empty answer can say where
// they are served.
func (s *Server) legacyRecords(q query, recs []*projections.Record) (kept []*projections.Record, hidden int) {
	// Record.SKS is set exactly for v2–v4 primary keys. Most answers hold
	// none other, so look before classifying the search again.
	for _, rec := range recs {
		if !rec.SKS {
			hidden++
		}
	}
	if hidden == 0 || s.legacyShown(q) {
		return recs, 0
	}
	kept = make([]*projections.Record, 0, len(recs)-hidden)
	for _, rec := range recs {
		if rec.SKS {
			kept = append(kept, rec)
		}
	}
	return kept, hidden
}

// legacyShown reports whether a v1 answer to q includes v5 and v6 keys:
// with IndexV6, for hget, and for searches by fingerprint or long key ID
// of 16 or 64 hex digits.
func (s *Server) legacyShown(q query) bool {
	if s.conf().IndexV6 || q.op == "hget" {
		return true
	}
	id, err := classifySearch(q.search)
	return err == nil && id != nil && (id.hexDigits == 16 || id.hexDigits == 64)
}

// errLegacyHidden is the 404 for a v1 search whose only matches are v5/v6
// keys. It keeps "No keys found", which OpenKeychain looks for (hkp.md §11).
func errLegacyHidden() error {
	return errNotFound("No keys found (v5/v6 keys are served only when asked for by fingerprint or long key ID, and at /pks/v2/ and /vks/v1/)")
}
