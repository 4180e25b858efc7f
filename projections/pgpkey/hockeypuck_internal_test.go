package pgpkey

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// hpFile returns the binary packets of testdata/hockeypuck/name, armored
// keys shipped in Hockeypuck's source (src/hockeypuck/testing/data at tag
// 2.3.3).
func hpFile(tb testing.TB, name string) []byte {
	tb.Helper()
	f, err := os.ReadFile(filepath.Join("testdata", "hockeypuck", name))
	if err != nil {
		tb.Fatal(err)
	}
	blk, err := armor.Decode(bytes.NewReader(f))
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	b, err := io.ReadAll(blk.Body)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return b
}

// TestHockeypuckParseDigest checks the hash of keys as Hockeypuck's parser
// leaves them, before validation, against Hockeypuck's own tests
// (openpgp/io_test.go TestSksDigest and TestSksDigestWithNoisyTrust): trust
// packets count only in their noisy SKS form.
func TestHockeypuckParseDigest(t *testing.T) {
	for _, tc := range []struct{ file, hash, keyID string }{
		{"sksdigest.asc", "da84f40d830a7be2a3c0b7f2e146bfaa", "cc5112bdce353cf4"},
		{"sksdigest-noisy.asc", "1be5ab9fec9594d06ba6ec86ee27cfb2", "cc5112bdce353cf4"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			keys, err := readHockeypuck(hpFile(t, tc.file), 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 {
				t.Fatalf("got %d keys, want 1", len(keys))
			}
			if got, want := keys[0].keyID, tc.keyID; got != want {
				t.Errorf("key ID = %s, want %s", got, want)
			}
			if got, want := keys[0].Hash().String(), tc.hash; !equalFoldHex(got, want) {
				t.Errorf("hash = %s, want %s", got, want)
			}
		})
	}
}

func equalFoldHex(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

// FuzzReadHockeypuck: hostile bytes (hashquery answers, log events) never
// panic the Hockeypuck reader, and a key it keeps reads back from its
// stored form with the same hash.
func FuzzReadHockeypuck(f *testing.F) {
	for _, name := range []string{"alice_signed.asc", "test-key-uid-revoked.asc", "sksdigest-noisy.asc", "0xd46b7c827be290fe4d1f9291b1ebc61a.asc", "252B8B37.dupsig.asc"} {
		f.Add(hpFile(f, name))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ReadHockeypuck(b)
		if err != nil {
			return
		}
		for _, k := range keys {
			back, err := ReadHockeypuckStored(k.Marshal())
			if err != nil {
				t.Fatalf("stored form does not read back: %v", err)
			}
			if back.Hash() != k.Hash() {
				t.Fatalf("stored form hashes to %s, want %s", back.Hash(), k.Hash())
			}
			if m, err := MergeHockeypuck(k.Marshal(), back); err == nil && m.Hash() != k.Hash() {
				t.Fatalf("merging a key into itself changed its hash: %s, want %s", m.Hash(), k.Hash())
			}
		}
	})
}
