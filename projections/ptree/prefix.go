package ptree

import (
	"errors"
	"fmt"
	"strings"
)

// MaxPrefixBits is the longest prefix: every bit of the 17-byte element wire
// form. Real trees stay far shallower, because 51 distinct key hashes always
// differ within their 128 bits.
const MaxPrefixBits = 8 * ZpSize

// ErrBadPrefix is returned for a prefix that is malformed or whose length
// does not fit the tree (SKS get_node_key raises Invalid_argument, spec
// recon.md §5.6).
var ErrBadPrefix = errors.New("ptree: invalid prefix")

// Prefix is a bit string naming a prefix-tree node: the leading bits of the
// wire form of the elements below it, MSB-first within each byte (spec
// recon.md §5.3). The zero value is the empty prefix, which names the root.
// Prefix is comparable and works as a map key.
type Prefix struct {
	n uint8        // number of bits; invariant: n <= MaxPrefixBits
	b [ZpSize]byte // bits MSB-first; invariant: bits at positions >= n are zero
}

// PrefixFromWire builds a prefix from the recon wire fields (spec recon.md
// §2.1 bitstring): nbits and the ceil(nbits/8) bytes that follow it.
// Unused low bits of the last byte are cleared: SKS only ever reads the
// first nbits bits, so it accepts any padding.
func PrefixFromWire(nbits int, b []byte) (Prefix, error) {
	if nbits < 0 || nbits > MaxPrefixBits {
		return Prefix{}, fmt.Errorf("%w: %d bits, limit %d", ErrBadPrefix, nbits, MaxPrefixBits)
	}
	if want := (nbits + 7) / 8; len(b) != want {
		return Prefix{}, fmt.Errorf("%w: %d bits in %d bytes, want %d bytes", ErrBadPrefix, nbits, len(b), want)
	}
	var p Prefix
	p.n = uint8(nbits)
	copy(p.b[:], b)
	if r := nbits % 8; r != 0 {
		p.b[nbits/8] &= byte(0xff << (8 - r))
	}
	return p, nil
}

// ParsePrefix parses the form String prints: a string of '0' and '1'
// characters, empty for the root.
func ParsePrefix(s string) (Prefix, error) {
	if len(s) > MaxPrefixBits {
		return Prefix{}, fmt.Errorf("%w: %d bits, limit %d", ErrBadPrefix, len(s), MaxPrefixBits)
	}
	var p Prefix
	p.n = uint8(len(s))
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '0':
		case '1':
			p.b[i/8] |= 0x80 >> (i % 8)
		default:
			return Prefix{}, fmt.Errorf("%w: %q: character %d is not a bit", ErrBadPrefix, s, i)
		}
	}
	return p, nil
}

// PrefixOf returns the first nbits bits of z's wire form: the prefix of the
// node at depth nbits/q on z's path. It panics if nbits is out of range.
func PrefixOf(z Zp, nbits int) Prefix {
	if nbits < 0 || nbits > MaxPrefixBits {
		panic(fmt.Sprintf("ptree: PrefixOf %d bits", nbits))
	}
	var p Prefix
	z.AppendBytes(p.b[:0])
	p.n = uint8(nbits)
	p.clearFrom(nbits)
	return p
}

// prefixOfHash is PrefixOf for a key hash, without the field conversion.
func prefixOfHash(h *[16]byte, nbits int) Prefix {
	var p Prefix
	copy(p.b[:], h[:])
	p.n = uint8(nbits)
	p.clearFrom(nbits)
	return p
}

// truncate returns the first n bits of p; n must not exceed p.Bits().
func (p Prefix) truncate(n int) Prefix {
	p.n = uint8(n)
	p.clearFrom(n)
	return p
}

// clearFrom zeroes every bit at position >= n.
func (p *Prefix) clearFrom(n int) {
	i := n / 8
	if r := n % 8; r != 0 {
		p.b[i] &= byte(0xff << (8 - r))
		i++
	}
	for ; i < len(p.b); i++ {
		p.b[i] = 0
	}
}

// Bits returns the length of p in bits (the wire nbits field).
func (p Prefix) Bits() int { return int(p.n) }

// Bytes returns the ceil(Bits/8) wire bytes of p, MSB-first, with unused
// trailing bits zero (spec recon.md §2.1). The root gives an empty slice.
func (p Prefix) Bytes() []byte {
	out := make([]byte, (int(p.n)+7)/8)
	copy(out, p.b[:])
	return out
}

// Bit returns bit i of p (0 or 1). It panics if i is out of range.
func (p Prefix) Bit(i int) int {
	if i < 0 || i >= int(p.n) {
		panic(fmt.Sprintf("ptree: bit %d of a %d-bit prefix", i, p.n))
	}
	return int(p.b[i/8]>>(7-i%8)) & 1
}

// String returns p as '0' and '1' characters; the root is the empty string.
func (p Prefix) String() string {
	var sb strings.Builder
	sb.Grow(int(p.n))
	for i := 0; i < int(p.n); i++ {
		sb.WriteByte(byte('0' + p.Bit(i)))
	}
	return sb.String()
}

// Child returns p followed by the bitQuantum bits of index, first bit most
// significant: child index i of the node named p (spec recon.md §5.3). It
// panics if index does not fit in bitQuantum bits or the result would be
// longer than MaxPrefixBits.
func (p Prefix) Child(index, bitQuantum int) Prefix {
	if bitQuantum < 1 || index < 0 || index >= 1<<bitQuantum || int(p.n)+bitQuantum > MaxPrefixBits {
		panic(fmt.Sprintf("ptree: child %d (bitquantum %d) of a %d-bit prefix", index, bitQuantum, p.n))
	}
	c := p
	for i := 0; i < bitQuantum; i++ {
		if index>>(bitQuantum-1-i)&1 != 0 {
			k := int(p.n) + i
			c.b[k/8] |= 0x80 >> (k % 8)
		}
	}
	c.n += uint8(bitQuantum)
	return c
}

// Matches reports whether z's wire form starts with p, that is whether z
// belongs under the node named p whatever the tree's shape.
func (p Prefix) Matches(z Zp) bool {
	return PrefixOf(z, int(p.n)) == p
}

// digit returns the child index taken at depth d: bits d·q … d·q+q−1 of p.
func (p Prefix) digit(d, q int) int {
	return extractBits(p.b[:], d*q, q)
}

// hashDigit returns the child index of key hash h at depth d: bits
// d·q … d·q+q−1 of the element's wire form, whose 17th byte is zero
// (SKS PrefixTree.string_index).
func hashDigit(h *[16]byte, d, q int) int {
	return extractBits(h[:], d*q, q)
}

// extractBits returns the n bits of b starting at bit start, MSB-first, as
// an integer with the first bit most significant. Bits past the end of b
// read as zero.
func extractBits(b []byte, start, n int) int {
	v := 0
	for k := start; k < start+n; k++ {
		bit := 0
		if i := k / 8; i < len(b) {
			bit = int(b[i]>>(7-k%8)) & 1
		}
		v = v<<1 | bit
	}
	return v
}
