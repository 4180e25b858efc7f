package pgpkey

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// Limits applied by NewReader. SKS 1.1.6 has no key or packet size limit
// (keyhash.md §8); these bound the memory one Reader can take.
const (
	// DefaultMaxPacketBytes bounds one packet body. The largest legitimate
	// packets are photo IDs and PQC keys, far below it; a larger length is
	// treated as a framing error, because it is far more often garbage.
	DefaultMaxPacketBytes = 64 << 20
	// DefaultMaxKeyBytes bounds one key (all its packets, with headers). It
	// admits the certificate-flooded keys of 2019, which ran to tens of MiB.
	DefaultMaxKeyBytes = 128 << 20
)

// Sentinel errors carried by ParseError.Err; test with errors.Is.
var (
	// ErrSecretKey marks input holding secret key material (tags 5, 7, or
	// an armored private key block). Such input is refused, never stored.
	ErrSecretKey = errors.New("pgpkey: secret key material refused")
	// ErrNoUserID marks a key without any user ID packet.
	ErrNoUserID = errors.New("pgpkey: key has no user ID")
	// ErrTooLarge marks a packet or key over the Reader's limits.
	ErrTooLarge = errors.New("pgpkey: key too large")
	// ErrNoKey marks input in which Decode found no public key at all.
	ErrNoKey = errors.New("pgpkey: no OpenPGP public key found")
)

// ParseError reports bad input and says where it is.
type ParseError struct {
	// Offset is the byte offset in the input stream of the bad packet
	// header, or of the key when Packet is 0. For armored input (Block > 0)
	// it counts bytes of the block's decoded binary, except for armor
	// errors, where it is the offset in the armored text. -1 means unknown
	// (Canonicalize has no offsets; ParseKey fills them in).
	Offset int64
	// Packet is the 1-based index of the offending packet within its key,
	// or 0 when the error is about the key (or the armor) as a whole.
	Packet int
	// Reason says what is wrong, in lowercase words.
	Reason string
	// Block is the 1-based index of the armor block, 0 for binary input.
	Block int
	// Err is an optional sentinel or cause: ErrSecretKey, ErrNoUserID,
	// ErrTooLarge, ErrNoKey, or io.ErrUnexpectedEOF for truncated input.
	Err error
}

// Error formats the error as "packet 3 at byte 812: length past end of key",
// "key at byte 812: key has no user ID", prefixed by "armor block 2: " for
// armored input.
func (e *ParseError) Error() string {
	var b []byte
	if e.Block > 0 {
		b = append(b, "armor block "...)
		b = strconv.AppendInt(b, int64(e.Block), 10)
		b = append(b, ": "...)
	}
	if e.Packet > 0 {
		b = append(b, "packet "...)
		b = strconv.AppendInt(b, int64(e.Packet), 10)
	} else {
		b = append(b, "key"...)
	}
	if e.Offset >= 0 {
		b = append(b, " at byte "...)
		b = strconv.AppendInt(b, e.Offset, 10)
	}
	b = append(b, ": "...)
	b = append(b, e.Reason...)
	return string(b)
}

// Unwrap returns e.Err.
func (e *ParseError) Unwrap() error { return e.Err }

// RawKey is one key as split from a packet stream (keyhash.md §3): the
// packets from one public-key packet (or the start of the stream) up to the
// next public-key packet, before any canonicalisation.
type RawKey struct {
	// Offset is the byte offset of the key's first packet in the input
	// (for Decode of armored input: in its block's decoded binary).
	Offset int64
	// Block is the 1-based armor block the key came from (Decode only);
	// 0 for binary input.
	Block int
	// Packets are the key's packets in input order. Their bodies alias Raw.
	Packets []Packet
	// Raw is the exact input bytes of the key (binary, headers included).
	Raw []byte
}

// Reader splits a binary packet stream, such as a dump file, into keys
// SKS-style: a new key starts at every public-key packet (tag 6).
//
// A Reader is not safe for concurrent use. Keys it returns stay valid after
// later calls, and nothing writes to them; keys read together may share
// memory (a buffer-sized slab), which stays allocated while any of them is
// referenced.
type Reader struct {
	// MaxPacketBytes bounds one packet body; a longer length is a framing
	// error. Set by NewReader to DefaultMaxPacketBytes; ≤ 0 means that
	// default.
	MaxPacketBytes int64
	// MaxKeyBytes bounds one key; a longer key is reported with ErrTooLarge
	// and skipped. Set by NewReader to DefaultMaxKeyBytes; ≤ 0 means that
	// default.
	MaxKeyBytes int64

	br  inputBuffer
	off int64 // bytes consumed from br
	err error // sticky: io.EOF or a read error

	resync  bool // scan for a plausible public key header before the next key
	skipKey bool // discard packets up to the next public key packet

	spans []span // scratch: packets of the key being read
}

// span locates one packet in the key buffer.
type span struct {
	tag        uint8
	start, end int // body
}

// readerBufferSize is the bufio size; resync scans one buffer at a time.
const readerBufferSize = 64 << 10

// NewReader returns a Reader over a binary packet stream.
func NewReader(r io.Reader) *Reader { return NewReaderSize(r, readerBufferSize) }

// NewReaderSize returns a Reader over a binary packet stream that reads it
// size bytes at a time (at least 16; NewReader: 64 KiB). Keys up to that
// size are handed out without a copy of their own, so a large size suits
// a dump read whole (one read system call per size bytes, no other buffer
// needed in front of r) and a small one a stream of a few keys.
func NewReaderSize(r io.Reader, size int) *Reader {
	return &Reader{
		MaxPacketBytes: DefaultMaxPacketBytes,
		MaxKeyBytes:    DefaultMaxKeyBytes,
		br:             newSlabBuffer(r, size),
	}
}

// Offset returns the number of input bytes consumed so far.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next key of the stream, or io.EOF after the last one.
//
// Bad input yields a *ParseError and never ends the stream:
//
//   - a framing error (bit 7 clear, indeterminate or partial length, a body
//     length over MaxPacketBytes) drops the key being read; the next call
//     resynchronises at the next plausible public-key packet header and
//     continues from there;
//   - a key over MaxKeyBytes is reported (ErrTooLarge) and the next call
//     skips the rest of it packet by packet;
//   - input that ends inside a packet drops the key being read and reports
//     io.ErrUnexpectedEOF; the next call returns io.EOF. SKS instead keeps
//     the packets before the truncated one (keyhash.md §2); we do not,
//     because that key would get a hash no peer has.
//
// A read error of the underlying reader is returned as is and is sticky.
func (r *Reader) Next() (*RawKey, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.resync {
		r.resync = false
		if err := r.scan(); err != nil {
			r.err = err
			return nil, err
		}
	}
	if r.skipKey {
		r.skipKey = false
		if err := r.skip(); err != nil {
			return nil, err
		}
	}
	return r.readKey()
}

func (r *Reader) maxPacket() int64 {
	if r.MaxPacketBytes <= 0 {
		return DefaultMaxPacketBytes
	}
	return r.MaxPacketBytes
}

func (r *Reader) maxKey() int64 {
	if r.MaxKeyBytes <= 0 {
		return DefaultMaxKeyBytes
	}
	return r.MaxKeyBytes
}

// peekHeader decodes the header at the current position without consuming
// it. It returns io.EOF at a clean end of input, a *ParseError for framing
// errors and truncated headers, or a read error.
func (r *Reader) peekHeader(packet int) (header, error) {
	b, err := r.br.Peek(2)
	if len(b) == 0 {
		if err == nil || err == io.EOF {
			return header{}, io.EOF
		}
		return header{}, err
	}
	n, reason := headerLen(b)
	if reason != "" {
		return header{}, &ParseError{Offset: r.off, Packet: packet, Reason: reason}
	}
	if len(b) < n {
		b, err = r.br.Peek(n)
	}
	if len(b) < n {
		if err == nil || err == io.EOF {
			return header{}, r.truncated(r.off, packet, "truncated packet header")
		}
		return header{}, err
	}
	if n, reason = headerLen(b); reason != "" { // second octet now known
		return header{}, &ParseError{Offset: r.off, Packet: packet, Reason: reason}
	}
	return parseHeader(b, n), nil
}

// truncated builds the error for input ending inside a packet, and makes
// the stream end after it.
func (r *Reader) truncated(off int64, packet int, reason string) error {
	r.err = io.EOF
	return &ParseError{Offset: off, Packet: packet, Reason: reason, Err: io.ErrUnexpectedEOF}
}

// fail handles an error met while reading a key: framing errors schedule a
// resync, other errors (truncation, read errors) are already sticky or are
// made so.
func (r *Reader) fail(err error) error {
	var pe *ParseError
	if errors.As(err, &pe) {
		if pe.Err == nil {
			r.resync = true
		}
		return err
	}
	r.err = err
	return err
}

// readBuffered reads the next key in one piece, into a buffer of exactly its
// size, when the key fits in the bufio buffer: the common case, and three
// allocations per key. It returns nil, having consumed nothing, when the key
// is larger than the buffer or anything is wrong with it; readKey then reads
// it piecewise and reports what is wrong. Only a read error of the
// underlying reader is returned from here, because bufio hands it out once.
//
// It blocks only where readKey would: for bytes the key needs, or for the
// header after it.
func (r *Reader) readBuffered() (*RawKey, error) {
	r.spans = r.spans[:0]
	off := 0 // end of the packets walked so far
	want := max(r.br.Buffered(), 2)
	for {
		b, err := r.br.Peek(min(want, r.br.Size()))
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			return nil, err
		}
		atEOF := err == io.EOF
		if off == len(b) && atEOF && len(r.spans) > 0 {
			break // the input ends after a whole packet: so does the key
		}
		need := 0
		n, reason := 0, ""
		if off < len(b) {
			n, reason = headerLen(b[off:])
		}
		switch {
		case reason != "":
			return nil, nil
		case off+2 > len(b) || off+n > len(b):
			need = off + max(n, 2)
		default:
			h := parseHeader(b[off:], n)
			if h.tag == TagPublicKey && len(r.spans) > 0 {
				return r.takeBuffered(off), nil
			}
			end := int64(off) + int64(n) + h.bodyLen
			if h.bodyLen > r.maxPacket() || end > r.maxKey() {
				return nil, nil
			}
			if end > int64(len(b)) {
				need = int(min(end, int64(r.br.Size())+1))
				break
			}
			r.spans = append(r.spans, span{tag: h.tag, start: off + n, end: int(end)})
			off = int(end)
			continue
		}
		// More input is needed to go on.
		if need > r.br.Size() || atEOF {
			return nil, nil // too big for the buffer, or truncated
		}
		want = need
	}
	return r.takeBuffered(off), nil
}

// inputBuffer is what a Reader reads through: a *bufio.Reader (Decode,
// which recycles them) or a *slabBuffer (NewReader).
type inputBuffer interface {
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	Read(p []byte) (int, error)
	Buffered() int
	Size() int
}

var (
	_ inputBuffer = (*bufio.Reader)(nil)
	_ inputBuffer = (*slabBuffer)(nil)
)

// takeBuffered consumes the n buffered bytes that readBuffered walked as
// one key: a slice of a slabBuffer's slab, or a copy of bufio's bytes.
func (r *Reader) takeBuffered(n int) *RawKey {
	var buf []byte
	if sb, ok := r.br.(*slabBuffer); ok {
		buf = sb.take(n)
	} else {
		buf = make([]byte, n)
		io.ReadFull(r.br, buf) // cannot fail: the bytes are buffered
	}
	k := r.finish(r.off, buf)
	r.off += int64(n)
	return k
}

func (r *Reader) readKey() (*RawKey, error) {
	if k, err := r.readBuffered(); k != nil || err != nil {
		if err != nil {
			return nil, r.fail(err)
		}
		return k, nil
	}
	start := r.off
	r.spans = r.spans[:0]
	var buf []byte
	for {
		packet := len(r.spans) + 1
		h, err := r.peekHeader(packet)
		if err == io.EOF {
			if len(r.spans) == 0 {
				r.err = io.EOF
				return nil, io.EOF
			}
			return r.finish(start, buf), nil
		}
		if err != nil {
			return nil, r.fail(err)
		}
		if h.tag == TagPublicKey && len(r.spans) > 0 {
			return r.finish(start, buf), nil
		}
		if h.bodyLen > r.maxPacket() {
			return nil, r.fail(&ParseError{Offset: r.off, Packet: packet,
				Reason: fmt.Sprintf("packet length %d exceeds limit of %d bytes", h.bodyLen, r.maxPacket())})
		}
		total := int64(h.hdrLen) + h.bodyLen
		if int64(len(buf))+total > r.maxKey() {
			// The framing is sound, so skip the rest of this key packet
			// by packet rather than scanning its bodies for headers.
			r.skipKey = len(r.spans) > 0
			if !r.skipKey {
				// The oversized packet is the key's first: drop it here so
				// that skip starts after it.
				if err := r.discard(total); err != nil {
					return nil, r.fail(err)
				}
				r.skipKey = true
			}
			return nil, &ParseError{Offset: start, Reason: fmt.Sprintf("key exceeds limit of %d bytes", r.maxKey()),
				Err: ErrTooLarge}
		}
		if buf == nil {
			// readBuffered gave up, usually because the key is larger
			// than the buffered data: start with room for that.
			buf = make([]byte, 0, max(4096, min(total, 1<<20), int64(r.br.Buffered())))
		}
		pktOff := r.off
		buf, err = r.readN(buf, h.hdrLen)
		if err != nil {
			return nil, r.fail(err)
		}
		bodyStart := len(buf)
		buf, err = r.readN(buf, int(h.bodyLen))
		if err == io.ErrUnexpectedEOF {
			return nil, r.truncated(pktOff, packet,
				fmt.Sprintf("truncated packet: body of %d bytes ends after %d", h.bodyLen, len(buf)-bodyStart))
		}
		if err != nil {
			return nil, r.fail(err)
		}
		r.spans = append(r.spans, span{tag: h.tag, start: bodyStart, end: len(buf)})
	}
}

// readN appends n bytes of input to buf, growing it at most 1 MiB ahead of
// the data actually read, so that a lying length cannot make us allocate
// memory the input does not back. It returns io.ErrUnexpectedEOF if the
// input ends first.
func (r *Reader) readN(buf []byte, n int) ([]byte, error) {
	for n > 0 {
		c := min(n, 1<<20)
		buf = slices.Grow(buf, c)
		m, err := io.ReadFull(r.br, buf[len(buf):len(buf)+c])
		buf = buf[:len(buf)+m]
		r.off += int64(m)
		n -= m
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

func (r *Reader) finish(start int64, buf []byte) *RawKey {
	buf = buf[:len(buf):len(buf)]
	pkts := make([]Packet, len(r.spans))
	for i, s := range r.spans {
		pkts[i] = Packet{Tag: s.tag, Body: buf[s.start:s.end:s.end]}
	}
	return &RawKey{Offset: start, Packets: pkts, Raw: buf}
}

func (r *Reader) discard(n int64) error {
	for n > 0 {
		c := int(min(n, 1<<30))
		m, err := r.br.Discard(c)
		r.off += int64(m)
		n -= int64(m)
		if err == io.EOF {
			return r.truncated(r.off, 0, "truncated packet")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// skip discards the rest of a key that was too large: whole packets up to
// the next public-key packet.
func (r *Reader) skip() error {
	for {
		h, err := r.peekHeader(0)
		if err == io.EOF {
			return nil // readKey reports the clean end
		}
		if err != nil {
			return r.fail(err)
		}
		if h.tag == TagPublicKey {
			return nil
		}
		if h.bodyLen > r.maxPacket() {
			return r.fail(&ParseError{Offset: r.off, Reason: fmt.Sprintf("packet length %d exceeds limit of %d bytes", h.bodyLen, r.maxPacket())})
		}
		if err := r.discard(int64(h.hdrLen) + h.bodyLen); err != nil {
			return r.fail(err)
		}
	}
}

// scan skips at least one byte, then up to the next plausible public-key
// packet header. It returns io.EOF if there is none.
func (r *Reader) scan() error {
	if _, err := r.br.Discard(1); err != nil {
		if err == io.EOF {
			return io.EOF
		}
		return err
	}
	r.off++
	for {
		b, err := r.br.Peek(r.br.Size())
		if len(b) == 0 {
			if err == nil || err == io.EOF || err == bufio.ErrBufferFull {
				return io.EOF
			}
			return err
		}
		i := 0
		for ; i < len(b); i++ {
			if !pkHeaderByte[b[i]] {
				continue
			}
			ok, more := r.plausibleKeyHeader(b[i:])
			if ok {
				r.br.Discard(i)
				r.off += int64(i)
				return nil
			}
			if more && err == nil && i > 0 {
				break // refill so the candidate is at the buffer start
			}
		}
		r.br.Discard(i)
		r.off += int64(i)
		if i == len(b) && err != nil && err != bufio.ErrBufferFull {
			if err == io.EOF {
				return io.EOF
			}
			return err
		}
	}
}

// pkHeaderByte marks first octets that can start a public-key packet
// header: old format tag 6 with a 1-, 2- or 4-octet length, or new format
// tag 6.
var pkHeaderByte = [256]bool{0x98: true, 0x99: true, 0x9a: true, 0xc6: true}

// plausibleKeyHeader reports whether b starts with what looks like a
// public-key packet: sound framing, a length within limits and large
// enough, a key version of 2–6 and a known public-key algorithm. more
// reports that b is too short to decide.
func (r *Reader) plausibleKeyHeader(b []byte) (ok, more bool) {
	n, reason := headerLen(b)
	if reason != "" {
		return false, false
	}
	if len(b) < n+8 {
		return false, true
	}
	h := parseHeader(b, n)
	if h.bodyLen < 8 || h.bodyLen > r.maxPacket() {
		return false, false
	}
	body := b[n:]
	var algo byte
	switch body[0] {
	case 2, 3:
		algo = body[7]
	case 4, 5, 6:
		algo = body[5]
	default:
		return false, false
	}
	return knownPublicKeyAlgo(algo), false
}

// knownPublicKeyAlgo reports whether a is an assigned or private-use
// public-key algorithm (RFC 9580 §9.1, draft-ietf-openpgp-pqc).
func knownPublicKeyAlgo(a byte) bool {
	switch {
	case a >= 1 && a <= 3, a >= 16 && a <= 22, a >= 25 && a <= 36, a >= 100 && a <= 110:
		return true
	}
	return false
}
