package hkp

import (
	"fmt"
	"strconv"
	"strings"
)

// query holds the parameters of /pks/lookup (hkp.md §3).
type query struct {
	op          string // get, index, vindex, hget, stats
	search      string
	mr          bool // options=mr
	json        bool // options=json (stats)
	fingerprint bool
	hash        bool
	exact       bool
	clean       bool
	limit       int // -1: none
}

// maxQueryBytes bounds the raw query string we parse.
const maxQueryBytes = 8 << 10

// parseQuery parses a raw query string the way SKS does (hkp.md §3.1): pairs
// split at the first '=', values URL-decoded ('+' is a space) and trimmed of
// spaces, the last duplicate wins, pieces without '=' and unknown names are
// ignored. A missing or unknown op means index, as on SKS.
func parseQuery(raw string) (query, error) {
	q := query{op: "index", clean: true, limit: -1}
	if len(raw) > maxQueryBytes {
		return q, errBadRequest("query string longer than %d bytes", maxQueryBytes)
	}
	// Cut instead of Split: no slice of pieces per request (op=get is
	// the request clients make most; docs/benchmarks.md, get6).
	for rest := raw; rest != ""; {
		var piece string
		piece, rest, _ = strings.Cut(rest, "&")
		name, value, ok := strings.Cut(piece, "=")
		if !ok {
			continue
		}
		value = strings.Trim(unescape(value), " ")
		switch strings.ToLower(name) {
		case "op":
			switch v := strings.ToLower(value); v {
			case "get", "index", "vindex", "hget", "stats":
				q.op = v
			case "x-hget", "x-stats":
				q.op = strings.TrimPrefix(v, "x-")
			default:
				q.op = "index"
			}
		case "search":
			q.search = value
		case "options":
			for opts := value; opts != ""; {
				var o string
				o, opts, _ = strings.Cut(opts, ",")
				switch strings.ToLower(strings.TrimSpace(o)) {
				case "mr":
					q.mr = true
				case "json":
					q.json = true
				}
			}
		case "fingerprint":
			q.fingerprint = isOn(value)
		case "hash", "x-hash":
			q.hash = isOn(value)
		case "exact":
			q.exact = isOn(value)
		case "clean", "x-clean":
			q.clean = !strings.EqualFold(value, "off")
		case "limit":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 {
				return q, errBadRequest("limit %q is not a non-negative integer", value)
			}
			q.limit = n
		}
	}
	return q, nil
}

func isOn(v string) bool {
	return strings.EqualFold(v, "on") || v == "1" || strings.EqualFold(v, "true")
}

// unescape decodes %XY (invalid pairs stay as they are) and '+'.
func unescape(s string) string {
	if !strings.ContainsAny(s, "%+") {
		return s
	}
	return string(appendUnescaped(make([]byte, 0, len(s)), s))
}

// unescapeBytes is unescape for a form value in a request body (the
// armored key of an upload, kilobytes): one copy, no string conversions.
func unescapeBytes(v []byte) []byte {
	return appendUnescaped(make([]byte, 0, len(v)), v)
}

// appendUnescaped appends s to dst with %XY (valid pairs) and '+' decoded.
func appendUnescaped[T string | []byte](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			dst = append(dst, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			dst = append(dst, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// idSearch is a key ID or fingerprint search.
type idSearch struct {
	hexDigits int    // 8, 16, 32, 40 or 64
	raw       []byte // decoded bytes, in buf
	buf       [32]byte
}

// classifySearch decides between an ID search and a word search
// (hkp.md §4): "0x" + 8/16/32/40/64 hex digits is an ID; so is a bare or
// space-separated 40- or 64-hex fingerprint (what users paste; Hockeypuck
// accepts it too). Anything else is a word search.
func classifySearch(search string) (*idSearch, error) {
	s := strings.TrimSpace(search)
	has0x := len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X")
	if has0x {
		s = s[2:]
	}
	compact := s
	if strings.ContainsAny(s, " \t\n\v\f\r") || !isASCII(s) {
		compact = strings.Join(strings.Fields(s), "")
	}
	allHex := compact != "" && strings.IndexFunc(compact, func(r rune) bool { return r > 0x7f || !isHex(byte(r)) }) < 0
	switch {
	case has0x && !strings.ContainsAny(s, " \t"):
		if !allHex {
			return nil, errBadRequest("%q is not a hexadecimal key ID or fingerprint", search)
		}
		switch len(compact) {
		case 8, 16, 32, 40, 64:
		default:
			return nil, errBadRequest("key ID %q has %d hex digits; use 8, 16, 40 or 64", search, len(compact))
		}
	case allHex && (len(compact) == 40 || len(compact) == 64) && (has0x || len(compact) == len(s) || strings.ContainsAny(s, " ")):
		// a pasted fingerprint, possibly in groups
	default:
		return nil, nil
	}
	// One allocation: the digits (checked above: hex, an even count of at
	// most 64) are decoded into the idSearch itself.
	id := &idSearch{hexDigits: len(compact)}
	for i := 0; i+1 < len(compact); i += 2 {
		id.buf[i/2] = unhex(compact[i])<<4 | unhex(compact[i+1])
	}
	id.raw = id.buf[:len(compact)/2]
	return id, nil
}

// unhex is the value of a hex digit c (isHex(c)).
func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func (s *idSearch) String() string { return fmt.Sprintf("0x%X", s.raw) }
