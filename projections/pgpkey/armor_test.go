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
