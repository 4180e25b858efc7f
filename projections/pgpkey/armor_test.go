package pgpkey_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// AppendArmor's output decodes with go-crypto (which checks the CRC) and
// with our Decode, to the same bytes, for every split of keys.
func TestAppendArmorRoundTrip(t *testing.T) {
	data := readShared(t, testKeysDir+"/keys-a.pgp")
	for _, split := range []int{0, 1, 47, 48, 49, 100, len(data) - 1} {
		keys := [][]byte{data[:split], data[split:]}
		out := pgpkey.AppendArmor(nil, []string{"Comment: test"}, keys...)
		blk, err := armor.Decode(bytes.NewReader(out))
		if err != nil {
			t.Fatalf("split %d: go-crypto cannot decode: %v\n%s", split, err, out)
		}
		got, err := io.ReadAll(blk.Body)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("split %d: go-crypto decoded %d bytes (%v), want %d", split, len(got), err, len(data))
		}
		raws, err := pgpkey.Decode(out)
		if err != nil || len(raws) != 3 {
			t.Fatalf("split %d: Decode: %d keys, %v", split, len(raws), err)
		}
		if !bytes.HasSuffix(out, []byte("\n-----END PGP PUBLIC KEY BLOCK-----\n")) {
			t.Fatal("no END line with a final newline")
		}
	}
}

func BenchmarkAppendArmor(b *testing.B) {
	data := readShared(b, testKeysDir+"/keys-a.pgp")
	b.SetBytes(int64(len(data)))
	var buf []byte
	for b.Loop() {
		buf = pgpkey.AppendArmor(buf[:0], nil, data)
	}
}

// CRC24 equals the bit-at-a-time definition (RFC 9580 §6.1) for every
// length around its six-byte steps, from the initial value and continued
// from another.
func TestCRC24MatchesDefinition(t *testing.T) {
	bitwise := func(crc uint32, data []byte) uint32 {
		for _, b := range data {
			crc ^= uint32(b) << 16
			for range 8 {
				crc <<= 1
				if crc&0x1000000 != 0 {
					crc ^= 0x1864cfb
				}
			}
		}
		return crc & 0xffffff
	}
	data := make([]byte, 200)
	x := uint32(1)
	for i := range data {
		x = x*1103515245 + 12345
		data[i] = byte(x >> 16)
	}
	for n := 0; n <= len(data); n++ {
		for _, start := range []uint32{pgpkey.CRC24Init, 0, 0xffffff, 0x123456} {
			if got, want := pgpkey.CRC24(start, data[:n]), bitwise(start, data[:n]); got != want {
				t.Fatalf("CRC24(%06x, %d bytes) = %06x, want %06x", start, n, got, want)
			}
		}
	}
}
