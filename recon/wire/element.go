package wire

import (
	"encoding/hex"
	"strings"
)

// ElementSize is the width of a field element on the wire: the value mod p,
// little-endian, zero-padded (spec recon.md §2.1, §3.1; SKS zZp.ml).
const ElementSize = 17

// KeyHashSize is the width of an SKS key hash (the MD5 of keyhash.md).
const KeyHashSize = 16

// Element is a field element in its 17-byte wire form.
//
// This package gives it no numeric meaning: arithmetic mod p lives in
// projections/ptree. An element that stands for a key hash is the 16 hash
// bytes in their natural order followed by 0x00 (spec recon.md §3.2).
// Element is comparable and can be a map key.
type Element [ElementSize]byte

// ElementFromKeyHash returns the wire form of the element for key hash h:
// h's 16 bytes followed by 0x00 (the hash read as a little-endian integer,
// which is < 2^128 < p, so no reduction).
func ElementFromKeyHash(h [KeyHashSize]byte) Element {
	var e Element
	copy(e[:], h[:])
	return e
}

// KeyHash returns the key hash that e stands for, and reports whether e can
// stand for one at all (its high byte is 0). SKS and Hockeypuck take the
// first 16 bytes without checking (RMisc.truncate, zb[:len(zb)-1]); callers
// that want that behaviour can ignore ok.
func (e Element) KeyHash() (h [KeyHashSize]byte, ok bool) {
	copy(h[:], e[:KeyHashSize])
	return h, e[KeyHashSize] == 0
}

// String returns the 34 hex digits of the wire form, uppercase.
func (e Element) String() string {
	return strings.ToUpper(hex.EncodeToString(e[:]))
}
