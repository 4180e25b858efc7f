package projections

import (
	"encoding/binary"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// Key spaces in the projections' Pebble database. Pebble has no column
// families, so each projection owns a one-byte prefix. The byte values are on
// disk: append only, never reuse one.
const (
	prefixMeta     = 'm' // m<name>                      → meta values (applied indexes, counters, schema)
	prefixRecord   = 'K' // K<len><rid><index BE8>       → record version (see encodeRecord)
	prefixLatest   = 'L' // L<len><rid>                  → <index BE8><flags><hash16>: the newest version
	prefixFpr      = 'F' // F<len><fpr>                  → (<len><rid>)+: keys with this primary or subkey fingerprint
	prefixKeyID    = 'I' // I<keyid BE8><len><rid>       → empty: 64-bit IDs of primaries and subkeys
	prefixShortID  = 'S' // S<short BE4><len><rid>       → empty: 32-bit IDs of primaries and subkeys
	prefixHash     = 'H' // H<hash16>                    → <len><rid>: SKS hash of every live record
	prefixWord     = 'W' // W<word>\x00<len><rid>         → posting (searchindex.go): search words of user IDs; W<word>\x01 → count
	prefixEmail    = 'E' // E<address>\x00<len><rid>      → empty: whole e-mail addresses of user IDs
	prefixPtree    = 'P' // P...                         → recon prefix tree nodes (projections/ptree)
	prefixCounters = 'c' // c<d|h><YYYYMMDD[HH]>         → <new BE8><updated BE8>: stats histograms
	prefixBlocked  = 'B' // B<len><fpr>                  → <index BE8><reason>: fingerprints refused (admin)
	prefixSuppress = 'X' // X<hash16>                    → <len><rid>: hashes of deleted keys, kept in the prefix tree, never served

	// The Hockeypuck dataset (hockeypuck.go), keyed by primary fingerprint.
	prefixHPRecord   = 'k' // k<len><fpr>                  → <hash16><key bytes>: the key as Hockeypuck 2.3 holds it
	prefixHPHash     = 'h' // h<hash16>                    → <len><fpr>: Hockeypuck hash of every live key
	prefixHPPtree    = 'p' // p...                         → Hockeypuck recon prefix tree nodes
	prefixHPSuppress = 'x' // x<hash16>                    → <len><fpr>: deleted keys' hashes, kept in the tree, never served
	prefixHPBlocked  = 'b' // b<len><fpr>                  → <index BE8>: fingerprints the Hockeypuck dataset refuses
)

// schemaVersion names the layout above. A store written with another
// version is rebuilt from the log (replay) rather than misread.
// 2: F holds a list of record IDs per fingerprint.
// 3: W postings carry the key's hash, version, creation time and word
// signature, and each word has a count (searchindex.go).
// 4: a K value may hold, instead of the key, a reference to the log event
// that carried the same bytes (record.go); schema 3 stores are upgraded in
// place (store.go, load).
const schemaVersion = 4

// Projection names, as stored with their applied index and shown by stats.
const (
	ProjectionKeys   = "keys"   // key index, key-ID index, hash index, stats counters
	ProjectionSearch = "search" // word and e-mail index
	ProjectionPtree  = "ptree"  // recon prefix tree
)

// Projections lists every projection the runner maintains, in apply order.
var Projections = []string{ProjectionKeys, ProjectionSearch, ProjectionPtree}

func metaKey(name string) []byte { return append([]byte{prefixMeta}, name...) }

func appliedKey(projection string) []byte { return metaKey("applied/" + projection) }

// appendRID appends a length-prefixed record ID.
func appendRID(dst, rid []byte) []byte {
	dst = append(dst, byte(len(rid)))
	return append(dst, rid...)
}

func recordKey(rid []byte, idx eventlog.Index) []byte {
	k := make([]byte, 0, 2+len(rid)+8)
	k = append(k, prefixRecord)
	k = appendRID(k, rid)
	return binary.BigEndian.AppendUint64(k, uint64(idx))
}

func recordPrefix(rid []byte) []byte {
	return appendRID([]byte{prefixRecord}, rid)
}

func latestKey(rid []byte) []byte { return appendRID([]byte{prefixLatest}, rid) }

// fprKey is the key of a fingerprint's list of record IDs. One key per
// fingerprint, so that the most common lookup is a point Get (Bloom
// filters apply) rather than an iterator.
func fprKey(fpr []byte) []byte { return appendFprKey(nil, fpr) }

func appendFprKey(dst, fpr []byte) []byte { return appendRID(append(dst, prefixFpr), fpr) }

// ridList is a value of <len><rid> entries.
func ridList(v []byte) [][]byte {
	var out [][]byte
	for len(v) > 0 {
		l := int(v[0])
		if len(v) < 1+l {
			break
		}
		out = append(out, v[1:1+l])
		v = v[1+l:]
	}
	return out
}

// ridListWith returns v with rid added (if absent) or removed.
func ridListWith(v, rid []byte, add bool) []byte {
	var out []byte
	found := false
	for _, r := range ridList(v) {
		if string(r) == string(rid) {
			found = true
			if !add {
				continue
			}
		}
		out = appendRID(out, r)
	}
	if add && !found {
		out = appendRID(out, rid)
	}
	return out
}

func keyIDKey(id uint64, rid []byte) []byte { return appendKeyIDKey(nil, id, rid) }

func appendKeyIDKey(dst []byte, id uint64, rid []byte) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, prefixKeyID), id)
	return appendRID(dst, rid)
}

func shortIDKey(id uint32, rid []byte) []byte { return appendShortIDKey(nil, id, rid) }

func appendShortIDKey(dst []byte, id uint32, rid []byte) []byte {
	dst = binary.BigEndian.AppendUint32(append(dst, prefixShortID), id)
	return appendRID(dst, rid)
}

func hashKey(h [16]byte) []byte { return appendHashKey(nil, h) }

func appendHashKey(dst []byte, h [16]byte) []byte { return append(append(dst, prefixHash), h[:]...) }

func suppressKey(h [16]byte) []byte { return append([]byte{prefixSuppress}, h[:]...) }

func blockedKey(fpr []byte) []byte { return appendRID([]byte{prefixBlocked}, fpr) }

func wordKey(prefix byte, word string, rid []byte) []byte {
	return appendWordKey(make([]byte, 0, 3+len(word)+len(rid)), prefix, word, rid)
}

func appendWordKey(dst []byte, prefix byte, word string, rid []byte) []byte {
	dst = append(append(dst, prefix), word...)
	return appendRID(append(dst, 0), rid)
}

// prefixEnd returns the smallest key greater than every key with prefix p
// (the exclusive upper bound of a prefix scan).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// splitRIDSuffix reads the trailing <len><rid> of an index key that starts
// with a fixed-size or NUL-terminated part of n bytes.
func ridAt(k []byte, n int) ([]byte, bool) {
	if len(k) < n+1 {
		return nil, false
	}
	l := int(k[n])
	if len(k) != n+1+l {
		return nil, false
	}
	return k[n+1:], true
}
