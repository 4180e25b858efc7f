package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// KeyStringsTrailer is what SKS appends after a hashquery response body
// (wserver.ml send_result adds "\r\n" to every answer and counts it in
// Content-length); Hockeypuck appends it too because "SKS expects" it.
// Readers ignore it (spec recon.md §11.4).
const KeyStringsTrailer = "\r\n"

// EncodeHashQuery returns the body of a POST /pks/hashquery request (spec
// recon.md §11.3): u32 count, then per hash u32 16 and the 16 hash bytes.
func EncodeHashQuery(hashes [][KeyHashSize]byte) []byte {
	b := make([]byte, 0, 4+len(hashes)*(4+KeyHashSize))
	b = binary.BigEndian.AppendUint32(b, uint32(len(hashes)))
	for i := range hashes {
		b = binary.BigEndian.AppendUint32(b, KeyHashSize)
		b = append(b, hashes[i][:]...)
	}
	return b
}

// DecodeHashQuery reads a hashquery request body from r. The count is
// checked against lim.MaxHashQueryCount and every string must be exactly 16
// bytes; SKS and Hockeypuck would look up a string of another length and
// skip it as unknown, but no implementation sends one. Bytes after the last
// hash are not read. Input that ends early, including an empty body, gives
// an error wrapping io.ErrUnexpectedEOF.
func DecodeHashQuery(r io.Reader, lim Limits) ([][KeyHashSize]byte, error) {
	lim = lim.norm()
	s := streamDecoder{r: r, what: "hashquery body"}
	n := s.count(lim.MaxHashQueryCount)
	if s.err != nil {
		return nil, s.err
	}
	// Grow as hashes arrive: the count is only a claim.
	hashes := make([][KeyHashSize]byte, 0, min(int(n), readChunk/KeyHashSize))
	for i := uint32(0); i < n; i++ {
		l := s.u32("hash length")
		if s.err == nil && l != KeyHashSize {
			s.fail(s.off-4, ErrMalformed, fmt.Sprintf("hash %d has length %d, want %d", i, l, KeyHashSize))
		}
		var h [KeyHashSize]byte
		s.full(h[:], "hash")
		if s.err != nil {
			return nil, s.err
		}
		hashes = append(hashes, h)
	}
	return hashes, nil
}

// EncodeKeyStrings returns the body of a hashquery response (spec recon.md
// §11.4): u32 count, then per key u32 length and the key's binary packets,
// then KeyStringsTrailer. Set Content-Length to len of the result; SKS
// counts the trailer too.
func EncodeKeyStrings(keys [][]byte) []byte {
	size := 4 + len(KeyStringsTrailer)
	for _, k := range keys {
		size += 4 + len(k)
	}
	b := make([]byte, 0, size)
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = binary.BigEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
	}
	return append(b, KeyStringsTrailer...)
}

// DecodeKeyStrings reads a hashquery response body from r: the count, then
// that many length-prefixed keys. Like SKS it reads nothing after the last
// key, so the trailing "\r\n" (or anything else there) is ignored and the
// caller may close the body. Limits: lim.MaxHashQueryCount keys,
// lim.MaxKeyStringBytes per key, lim.MaxHashQueryBytes in total, each
// checked before the key is allocated; memory then grows only with the
// bytes received. Input that ends early gives an error wrapping
// io.ErrUnexpectedEOF. The keys are not parsed.
func DecodeKeyStrings(r io.Reader, lim Limits) ([][]byte, error) {
	lim = lim.norm()
	s := streamDecoder{r: r, what: "key strings body"}
	n := s.count(lim.MaxHashQueryCount)
	if s.err != nil {
		return nil, s.err
	}
	keys := make([][]byte, 0, min(int(n), 1024))
	var total uint64
	for i := uint32(0); i < n; i++ {
		l := s.u32("key length")
		if s.err != nil {
			return nil, s.err
		}
		switch {
		case uint64(l) > uint64(lim.MaxKeyStringBytes):
			s.fail(s.off-4, ErrTooLarge, fmt.Sprintf("key %d length %d exceeds limit %d", i, l, lim.MaxKeyStringBytes))
		case total+uint64(l) > uint64(lim.MaxHashQueryBytes):
			s.fail(s.off-4, ErrTooLarge, fmt.Sprintf("key %d brings the body to %d bytes, limit %d", i, total+uint64(l), lim.MaxHashQueryBytes))
		}
		if s.err != nil {
			return nil, s.err
		}
		total += uint64(l)
		k, err := readN(r, int(l))
		if err != nil {
			return nil, readErr(err, s.what, s.off+int64(len(k)), "key")
		}
		s.off += int64(l)
		keys = append(keys, k)
	}
	return keys, nil
}

// streamDecoder reads primitives straight from an io.Reader and keeps the
// first error (sticky).
type streamDecoder struct {
	r    io.Reader
	off  int64
	what string
	err  error
}

func (s *streamDecoder) fail(off int64, sentinel error, reason string) {
	if s.err == nil {
		s.err = &DecodeError{What: s.what, Offset: off, Reason: reason, Err: sentinel}
	}
}

func (s *streamDecoder) full(b []byte, field string) {
	if s.err != nil {
		return
	}
	n, err := io.ReadFull(s.r, b)
	if err != nil {
		s.err = readErr(err, s.what, s.off+int64(n), field)
	}
	s.off += int64(n)
}

func (s *streamDecoder) u32(field string) uint32 {
	var b [4]byte
	s.full(b[:], field)
	if s.err != nil {
		return 0
	}
	return binary.BigEndian.Uint32(b[:])
}

func (s *streamDecoder) count(limit int) uint32 {
	n := s.u32("count")
	if s.err == nil && uint64(n) > uint64(limit) {
		s.fail(0, ErrTooLarge, fmt.Sprintf("count %d exceeds limit %d", n, limit))
	}
	return n
}
