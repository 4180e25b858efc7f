package pgpkey

import (
	"encoding/base64"
)

// crc24Table is the byte-at-a-time table of the OpenPGP CRC-24 (RFC 9580
// §6.1): 256 words, computed once, read-only afterwards.
var crc24Table = func() (t [256]uint32) {
	const poly = 0x1864cfb
	for i := range t {
		crc := uint32(i) << 16
		for range 8 {
			crc <<= 1
			if crc&0x1000000 != 0 {
				crc ^= poly
			}
		}
		t[i] = crc & 0xffffff
	}
	return t
}()

// crc24Slices extends crc24Table for six bytes a step: crc24Slices[k][b]
// is b·x^(24+8k) mod P, so that one step folds the CRC into three bytes and
// adds three more, with six independent lookups instead of six dependent
// ones (op=get armors every answer; the byte loop was 7 % of its CPU).
var crc24Slices = func() (t [6][256]uint32) {
	t[0] = crc24Table
	for k := 1; k < 6; k++ {
		for b := range 256 {
			v := t[k-1][b]
			t[k][b] = (v<<8 ^ crc24Table[byte(v>>16)]) & 0xffffff
		}
	}
	return t
}()

// CRC24 returns the OpenPGP armor checksum of data, continuing from crc
// (start with CRC24Init).
func CRC24(crc uint32, data []byte) uint32 {
	t := &crc24Slices
	for len(data) >= 6 {
		c := crc ^ (uint32(data[0])<<16 | uint32(data[1])<<8 | uint32(data[2]))
		crc = t[5][byte(c>>16)] ^ t[4][byte(c>>8)] ^ t[3][byte(c)] ^
			t[2][data[3]] ^ t[1][data[4]] ^ t[0][data[5]]
		data = data[6:]
	}
	for _, b := range data {
		crc = (crc<<8 ^ crc24Table[byte(crc>>16)^b]) & 0xffffff
	}
	return crc
}

// CRC24Init is the initial value of the OpenPGP CRC-24.
const CRC24Init = 0xb704ce

// AppendArmor appends one "PGP PUBLIC KEY BLOCK" armor holding the
// concatenation of keys (binary packets) to dst: the header lines given as
// "Name: value" strings, a blank line, base64 in 64-character lines, the
// CRC-24 line and the END line with a final newline (hkp.md §5.1). It is
// the hot path of op=get, hence not go-crypto's armor writer, whose
// bit-by-bit CRC took a tenth of a lookup's CPU.
func AppendArmor(dst []byte, headers []string, keys ...[]byte) []byte {
	dst = append(dst, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n"...)
	for _, h := range headers {
		dst = append(dst, h...)
		dst = append(dst, '\n')
	}
	dst = append(dst, '\n')
	crc := uint32(CRC24Init)
	// Encode in 48-byte groups (64 base64 characters a line), carrying
	// the remainder of one key into the next.
	var carry [48]byte
	n := 0
	line := make([]byte, 64)
	flush := func(b []byte) {
		m := base64.StdEncoding.EncodedLen(len(b))
		base64.StdEncoding.Encode(line[:m], b)
		dst = append(dst, line[:m]...)
		dst = append(dst, '\n')
	}
	for _, k := range keys {
		crc = CRC24(crc, k)
		for len(k) > 0 {
			if n == 0 && len(k) >= 48 {
				flush(k[:48])
				k = k[48:]
				continue
			}
			c := copy(carry[n:], k)
			n += c
			k = k[c:]
			if n == 48 {
				flush(carry[:])
				n = 0
			}
		}
	}
	if n > 0 {
		flush(carry[:n])
	}
	sum := []byte{byte(crc >> 16), byte(crc >> 8), byte(crc)}
	dst = append(dst, '=')
	dst = base64.StdEncoding.AppendEncode(dst, sum)
	dst = append(dst, '\n')
	return append(dst, "-----END PGP PUBLIC KEY BLOCK-----\n"...)
}
