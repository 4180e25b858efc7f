package wire

import (
	"fmt"
	"strings"
)

// MaxPrefixBits is the longest prefix this package accepts: every bit of an
// element. No tree is deeper; SKS and conflux never send more.
const MaxPrefixBits = 8 * ElementSize

// Prefix is a ptree node's bit string (spec recon.md §2.1 "bitstring",
// §5.3): bits run MSB-first inside each byte, so bit 0 is 0x80 of byte 0.
// The zero value is the empty prefix of the root.
//
// Prefix is an immutable value and is comparable, so it can be a map key.
type Prefix struct {
	// Invariant: 0 <= n <= MaxPrefixBits, len(b) == (n+7)/8, and the
	// unused low bits of the last byte are zero.
	n int
	b string
}

// NewPrefix returns the prefix of nbits bits held in b, MSB-first. It
// checks what the wire requires: len(b) == ceil(nbits/8), unused trailing
// bits zero, nbits <= MaxPrefixBits. b is copied.
func NewPrefix(nbits int, b []byte) (Prefix, error) {
	if reason := checkPrefix(nbits, b); reason != "" {
		return Prefix{}, fmt.Errorf("recon/wire: prefix: %s: %w", reason, ErrMalformed)
	}
	return Prefix{n: nbits, b: string(b)}, nil
}

// checkPrefix returns why (nbits, b) is not a valid prefix, or "".
func checkPrefix(nbits int, b []byte) string {
	switch {
	case nbits < 0:
		return fmt.Sprintf("negative bit count %d", nbits)
	case nbits > MaxPrefixBits:
		return fmt.Sprintf("%d bits is longer than %d", nbits, MaxPrefixBits)
	case len(b) != (nbits+7)/8:
		return fmt.Sprintf("%d bits need %d bytes, got %d", nbits, (nbits+7)/8, len(b))
	case nbits%8 != 0 && b[len(b)-1]&(0xff>>(nbits%8)) != 0:
		// Equal prefixes must compare equal. (The decoder clears such
		// bits instead, as SKS ignores them; NewPrefix takes our own
		// values, where junk is a bug.)
		return fmt.Sprintf("unused bits of last byte %#02x are not zero", b[len(b)-1])
	}
	return ""
}

// ParsePrefix parses a prefix written as '0' and '1' characters, first bit
// first, as String prints it ("" is the root).
func ParsePrefix(s string) (Prefix, error) {
	if len(s) > MaxPrefixBits {
		return Prefix{}, fmt.Errorf("recon/wire: prefix: %d bits is longer than %d: %w", len(s), MaxPrefixBits, ErrMalformed)
	}
	b := make([]byte, (len(s)+7)/8)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '0':
		case '1':
			b[i/8] |= 0x80 >> (i % 8)
		default:
			return Prefix{}, fmt.Errorf("recon/wire: prefix %q: character %d is not 0 or 1: %w", s, i, ErrMalformed)
		}
	}
	return Prefix{n: len(s), b: string(b)}, nil
}

// PrefixOf returns the first nbits bits of e (spec recon.md §5.3: bit k is
// (e[k/8] >> (7-k%8)) & 1). It panics if nbits is outside [0, MaxPrefixBits].
func PrefixOf(e Element, nbits int) Prefix {
	if nbits < 0 || nbits > MaxPrefixBits {
		panic(fmt.Sprintf("recon/wire: PrefixOf: %d bits out of range", nbits))
	}
	b := make([]byte, (nbits+7)/8)
	copy(b, e[:])
	if nbits%8 != 0 {
		b[len(b)-1] &^= 0xff >> (nbits % 8)
	}
	return Prefix{n: nbits, b: string(b)}
}

// Len returns the number of bits.
func (p Prefix) Len() int { return p.n }

// Bytes returns a copy of the ceil(Len/8) bytes of p, MSB-first.
func (p Prefix) Bytes() []byte { return []byte(p.b) }

// Bit returns bit i (0 or 1). It panics if i is outside [0, Len).
func (p Prefix) Bit(i int) int {
	if i < 0 || i >= p.n {
		panic(fmt.Sprintf("recon/wire: Prefix.Bit(%d) of a %d-bit prefix", i, p.n))
	}
	return int(p.b[i/8]>>(7-i%8)) & 1
}

// AppendBits returns p followed by the n low bits of v, most significant
// first. A child of a node is parent.AppendBits(uint64(child), bitquantum),
// with child 0..2^bitquantum-1 in SKS's order (spec recon.md §5.3). It
// panics if n is outside [0, 64] or the result would exceed MaxPrefixBits.
func (p Prefix) AppendBits(v uint64, n int) Prefix {
	if n < 0 || n > 64 || p.n+n > MaxPrefixBits {
		panic(fmt.Sprintf("recon/wire: Prefix.AppendBits: %d+%d bits out of range", p.n, n))
	}
	total := p.n + n
	b := make([]byte, (total+7)/8)
	copy(b, p.b)
	for i := 0; i < n; i++ {
		if v>>(n-1-i)&1 == 1 {
			k := p.n + i
			b[k/8] |= 0x80 >> (k % 8)
		}
	}
	return Prefix{n: total, b: string(b)}
}

// Contains reports whether e's bits start with p.
func (p Prefix) Contains(e Element) bool {
	full := p.n / 8
	if p.b[:full] != string(e[:full]) {
		return false
	}
	if rem := p.n % 8; rem != 0 {
		mask := byte(0xff) << (8 - rem)
		return e[full]&mask == p.b[full]
	}
	return true
}

// String returns the bits as '0' and '1' characters; the root is "".
func (p Prefix) String() string {
	var sb strings.Builder
	sb.Grow(p.n)
	for i := 0; i < p.n; i++ {
		sb.WriteByte(byte('0' + p.Bit(i)))
	}
	return sb.String()
}
