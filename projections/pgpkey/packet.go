package pgpkey

import (
	"bytes"
	"encoding/binary"
	"strconv"
)

// Packet tags that the key grammar and the hygiene rules name (RFC 9580 §5).
const (
	TagSignature     uint8 = 2
	TagSecretKey     uint8 = 5
	TagPublicKey     uint8 = 6
	TagSecretSubkey  uint8 = 7
	TagMarker        uint8 = 10
	TagTrust         uint8 = 12
	TagUserID        uint8 = 13
	TagPublicSubkey  uint8 = 14
	TagUserAttribute uint8 = 17
)

// Packet is one OpenPGP packet: its tag and its body without the header.
// The header's format (old or new, length encoding) is deliberately not kept:
// SKS ignores it for hashing and rewrites it when storing (keyhash.md §7).
//
// Body usually aliases a larger buffer (a RawKey's Raw, or the slice given to
// Canonicalize); treat it as read-only.
type Packet struct {
	Tag  uint8
	Body []byte
}

// Equal reports whether p and q have the same tag and body.
func (p Packet) Equal(q Packet) bool {
	return p.Tag == q.Tag && bytes.Equal(p.Body, q.Body)
}

// recordCompare orders packets the way SKS's OCaml structural comparison of
// its packet record does: tag, then body length, then body bytes
// (keyhash.md §4.3, "record order"). Canonical storage order uses it.
func recordCompare(a, b Packet) int {
	if a.Tag != b.Tag {
		return int(a.Tag) - int(b.Tag)
	}
	if len(a.Body) != len(b.Body) {
		if len(a.Body) < len(b.Body) {
			return -1
		}
		return 1
	}
	return bytes.Compare(a.Body, b.Body)
}

// hashCompare orders packets for the key hash: tag, then body bytes, with no
// length step (keyhash.md §5; OCaml compare on strings == bytes.Compare).
func hashCompare(a, b Packet) int {
	if a.Tag != b.Tag {
		return int(a.Tag) - int(b.Tag)
	}
	return bytes.Compare(a.Body, b.Body)
}

// tagName names a tag for error messages.
func tagName(tag uint8) string {
	switch tag {
	case TagSignature:
		return "signature"
	case TagSecretKey:
		return "secret key"
	case TagPublicKey:
		return "public key"
	case TagSecretSubkey:
		return "secret subkey"
	case TagMarker:
		return "marker"
	case TagTrust:
		return "trust"
	case TagUserID:
		return "user ID"
	case TagPublicSubkey:
		return "public subkey"
	case TagUserAttribute:
		return "user attribute"
	}
	return "tag " + strconv.Itoa(int(tag))
}

// header is a decoded packet header (keyhash.md §2).
type header struct {
	tag     uint8
	hdrLen  int   // octets of header
	bodyLen int64 // octets of body
}

// Reasons for framing errors. The wording follows SKS parsePGP.ml where SKS
// has a message.
const (
	reasonBit7          = "bit 7 of packet tag is clear"
	reasonIndeterminate = "indeterminate packet length (old format length type 3)"
	reasonPartial       = "partial body length"
)

// headerLen returns the header length implied by its first one or two octets,
// or a framing reason. b must hold at least one octet. A new-format header
// needs its second octet too: when it is missing, headerLen returns 2 so that
// the caller fetches it and asks again.
func headerLen(b []byte) (n int, reason string) {
	c := b[0]
	if c&0x80 == 0 {
		return 0, reasonBit7
	}
	if c&0x40 == 0 { // old format
		switch c & 3 {
		case 0:
			return 2, ""
		case 1:
			return 3, ""
		case 2:
			return 5, ""
		}
		return 0, reasonIndeterminate
	}
	if len(b) < 2 {
		return 2, "" // caller must supply the length octet
	}
	switch b1 := b[1]; {
	case b1 < 192:
		return 2, ""
	case b1 < 224:
		return 3, ""
	case b1 == 255:
		return 6, ""
	}
	return 0, reasonPartial
}

// parseHeader decodes a complete header; b must hold headerLen(b) octets.
func parseHeader(b []byte, n int) header {
	c := b[0]
	if c&0x40 == 0 {
		h := header{tag: (c >> 2) & 0x0f, hdrLen: n}
		switch n {
		case 2:
			h.bodyLen = int64(b[1])
		case 3:
			h.bodyLen = int64(binary.BigEndian.Uint16(b[1:3]))
		case 5:
			h.bodyLen = int64(binary.BigEndian.Uint32(b[1:5]))
		}
		return h
	}
	h := header{tag: c & 0x3f, hdrLen: n}
	switch n {
	case 2:
		h.bodyLen = int64(b[1])
	case 3:
		h.bodyLen = (int64(b[1])-192)<<8 + int64(b[2]) + 192
	case 6:
		h.bodyLen = int64(binary.BigEndian.Uint32(b[2:6]))
	}
	return h
}

// packetHeaderSize is the size of the header SKS write_packet puts before a
// body of n octets with the given tag (keyhash.md §7).
func packetHeaderSize(tag uint8, n int) int {
	switch {
	case tag >= 16:
		return 6
	case n < 256:
		return 2
	case n < 65536:
		return 3
	}
	return 5
}

// AppendPacket appends p to dst in SKS write_packet framing (keyhash.md §7)
// and returns the extended slice: tags below 16 in the old format with the
// smallest length type that fits, tags 16 and above in the new format with a
// five-octet length.
func AppendPacket(dst []byte, p Packet) []byte {
	n := len(p.Body)
	switch {
	case p.Tag >= 16:
		dst = append(dst, 0xc0|p.Tag, 0xff)
		dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	case n < 256:
		dst = append(dst, 0x80|p.Tag<<2, byte(n))
	case n < 65536:
		dst = append(dst, 0x80|p.Tag<<2|1)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|p.Tag<<2|2)
		dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	}
	return append(dst, p.Body...)
}

// packetOffsets walks a buffer holding whole packets, as a RawKey's Raw
// does. It returns the offset of every packet header, and false if the
// buffer does not frame cleanly.
func packetOffsets(raw []byte) ([]int64, bool) {
	var offs []int64
	for off := 0; off < len(raw); {
		n, reason := headerLen(raw[off:])
		if reason != "" || off+n > len(raw) {
			return offs, false
		}
		h := parseHeader(raw[off:], n)
		offs = append(offs, int64(off))
		end := int64(off) + int64(n) + h.bodyLen
		if end > int64(len(raw)) {
			return offs, false
		}
		off = int(end)
	}
	return offs, true
}
