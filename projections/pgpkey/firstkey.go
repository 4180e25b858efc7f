package pgpkey

import "io"

// FirstKey splits the first key off a binary packet stream held in memory,
// without copying: the packets and Raw alias b. It is the fast path for
// bytes that already hold one key each — log events, stored records,
// hashquery key strings — where NewReader's buffering would cost more than
// the parsing. Like SKS reading a hashquery key string (keyhash.md §3), it
// keeps only the first key: it stops at the second public-key packet.
// A framing error or input ending inside a packet is a *ParseError.
func FirstKey(b []byte) (*RawKey, error) {
	var pkts []Packet
	off := 0
	for off < len(b) {
		n, reason := headerLen(b[off:])
		if reason != "" {
			return nil, &ParseError{Offset: int64(off), Packet: len(pkts) + 1, Reason: reason}
		}
		if off+n > len(b) {
			return nil, &ParseError{Offset: int64(off), Packet: len(pkts) + 1, Reason: "truncated packet header", Err: io.ErrUnexpectedEOF}
		}
		h := parseHeader(b[off:], n)
		if h.tag == TagPublicKey && len(pkts) > 0 {
			break
		}
		end := int64(off) + int64(n) + h.bodyLen
		if h.bodyLen > DefaultMaxPacketBytes || end > int64(len(b)) {
			return nil, &ParseError{Offset: int64(off), Packet: len(pkts) + 1, Reason: "truncated packet", Err: io.ErrUnexpectedEOF}
		}
		body := b[off+n : end : end]
		pkts = append(pkts, Packet{Tag: h.tag, Body: body})
		off = int(end)
	}
	if len(pkts) == 0 {
		return nil, &ParseError{Offset: 0, Reason: "no packets", Err: io.ErrUnexpectedEOF}
	}
	return &RawKey{Packets: pkts, Raw: b[:off:off]}, nil
}
