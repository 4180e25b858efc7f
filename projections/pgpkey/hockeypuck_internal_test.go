package pgpkey

import (
	"bytes"
	"crypto/sha1"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
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

// HPFile is hpFile for the external tests (package pgpkey_test).
var HPFile = hpFile

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
// panic the Hockeypuck reader, a key it keeps reads back from its stored
// form with the same hash, merging it into its stored form gives the same
// key with and without the verification memo, and merging is idempotent.
// (A key's first version is stored without dedup, so merging it into
// itself may drop a repeated signature: testdata/fuzz 75fd4e5f3303d3dc.)
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
			stored := k.Marshal()
			back, err := ReadHockeypuckStored(stored)
			if err != nil {
				t.Fatalf("stored form does not read back: %v", err)
			}
			if back.Hash() != k.Hash() {
				t.Fatalf("stored form hashes to %s, want %s", back.Hash(), k.Hash())
			}
			plain, errPlain := MergeHockeypuck(stored, back)
			memo, errMemo := MergeHockeypuck(stored, k)
			if (errPlain == nil) != (errMemo == nil) {
				t.Fatalf("merge without memo: %v, with memo: %v", errPlain, errMemo)
			}
			if errPlain != nil {
				continue
			}
			if !bytes.Equal(plain.Marshal(), memo.Marshal()) {
				t.Fatalf("merge with memo gave %s, without %s", memo.Hash(), plain.Hash())
			}
			again, err := MergeHockeypuck(plain.Marshal(), memo)
			if err != nil {
				t.Fatalf("merging a merged key into itself: %v", err)
			}
			if again.Hash() != plain.Hash() {
				t.Fatalf("merging a merged key into itself changed its hash: %s, want %s", again.Hash(), plain.Hash())
			}
		}
	})
}

// hpRead is ReadHockeypuck with a verifier the test can inspect: budget
// replaces hpVerifyBudget when > 0.
func hpRead(t *testing.T, b []byte, budget int64) []*HockeypuckKey {
	t.Helper()
	keys, err := readHockeypuck(b, HockeypuckMaxPacketBytes, HockeypuckMaxKeyBytes)
	if err != nil {
		t.Fatal(err)
	}
	var out []*HockeypuckKey
	for _, k := range keys {
		v := k.verifier()
		if budget > 0 {
			v.budget = budget
		}
		if k.validSelfSigned(false) == nil {
			out = append(out, k)
		}
	}
	return out
}

// TestHockeypuckVerifyMemo: a duplicated self-signature is verified once,
// and merging a key read from a submission into its stored form verifies
// nothing again, with the same result as a merge without the memo.
func TestHockeypuckVerifyMemo(t *testing.T) {
	b := hpFile(t, "252B8B37.dupsig.asc")
	keys := hpRead(t, b, 0)
	if len(keys) != 1 {
		t.Fatalf("got %d keys, want 1", len(keys))
	}
	k := keys[0]
	// 10 self-signatures, two of them repeated (same parent, same packet).
	if got, want := k.verified.checks, 8; got != want {
		t.Errorf("verifications on read = %d, want %d", got, want)
	}
	plain, err := MergeHockeypuck(k.Marshal(), mustStored(t, k.Marshal()))
	if err != nil {
		t.Fatal(err)
	}
	before := k.verified.checks
	memo, err := MergeHockeypuck(k.Marshal(), k)
	if err != nil {
		t.Fatal(err)
	}
	if got := k.verified.checks - before; got != 0 {
		t.Errorf("merge verified %d signatures again, want 0", got)
	}
	if memo.Hash() != plain.Hash() || !bytes.Equal(memo.Marshal(), plain.Marshal()) {
		t.Errorf("merge with memo = %s, without = %s", memo.Hash(), plain.Hash())
	}
}

func mustStored(t *testing.T, b []byte) *HockeypuckKey {
	t.Helper()
	k, err := ReadHockeypuckStored(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestHockeypuckVerifyBudget: a small budget leaves the self-signatures
// past it unverified (invalid), so the key loses them; the default budget
// keeps every one of a real key.
func TestHockeypuckVerifyBudget(t *testing.T) {
	b := hpFile(t, "alice_signed.asc")
	full := hpRead(t, b, 0)
	if len(full) != 1 || len(full[0].uids) == 0 {
		t.Fatalf("alice_signed: %d keys", len(full))
	}
	one := verifyCost(full[0].v3, full[0].v4)
	cut := hpRead(t, b, one) // room for one primary-key verification
	if len(cut) != 1 {
		t.Fatalf("got %d keys, want 1", len(cut))
	}
	if got := cut[0].verified.checks; got != 1 {
		t.Errorf("verifications within a budget of one = %d, want 1", got)
	}
	if cut[0].Hash() == full[0].Hash() {
		t.Error("a budget of one verification left the key whole")
	}
}

// TestHockeypuckHostileDSA: a key whose primary is a 16384-bit DSA key
// (q of 512 bits, the largest tooCostly lets through) with many distinct
// self-signatures whose hash tags match, so each one reaches dsa.Verify
// (~70 ms of CPU each). The budget stops verification after a few.
func TestHockeypuckHostileDSA(t *testing.T) {
	const nsigs = 200
	mpiBytes := func(bitLen int, fill byte) []byte {
		n := (bitLen + 7) / 8
		b := bytes.Repeat([]byte{fill}, n)
		b[0] = 0x80 | fill>>1 // top bit set: exactly bitLen bits
		b[n-1] |= 1
		return append([]byte{byte(bitLen >> 8), byte(bitLen)}, b...)
	}
	body := []byte{4, 0x5f, 0, 0, 0, 17}
	body = append(body, mpiBytes(16384, 0x5a)...) // p
	body = append(body, mpiBytes(512, 0x33)...)   // q
	body = append(body, mpiBytes(16000, 0x71)...) // g
	body = append(body, mpiBytes(16000, 0x29)...) // y
	hk, err := parseHPPublicKey(&packet.OpaquePacket{Tag: TagPublicKey, Contents: body}, false)
	if err != nil {
		t.Fatalf("parse hostile key: %v", err)
	}
	pk := hk.v4
	uid := []byte("hostile <h@example.org>")
	var in []byte
	in = AppendPacket(in, Packet{Tag: TagPublicKey, Body: body})
	in = AppendPacket(in, Packet{Tag: TagUserID, Body: uid})
	for i := 0; i < nsigs; i++ {
		hashed := []byte{5, 2, 0x60, 0, byte(i >> 8), byte(i)} // creation time
		sig := append([]byte{4, 0x13, 17, 2, 0, byte(len(hashed))}, hashed...)
		h := sha1.New()
		if err := pk.SerializeForHash(h); err != nil {
			t.Fatal(err)
		}
		h.Write([]byte{0xb4, 0, 0, byte(len(uid) >> 8), byte(len(uid))})
		h.Write(uid)
		h.Write(sig)
		h.Write([]byte{4, 0xff, 0, 0, 0, byte(len(sig))})
		sum := h.Sum(nil)
		sig = append(sig, 0, 10, 9, 16) // unhashed: issuer
		sig = append(sig, pk.Fingerprint[12:20]...)
		sig = append(sig, sum[0], sum[1])
		sig = append(sig, 0, 1, 1, 0, 1, 1) // r = s = 1
		in = AppendPacket(in, Packet{Tag: TagSignature, Body: sig})
	}
	keys, err := readHockeypuck(in, HockeypuckMaxPacketBytes, HockeypuckMaxKeyBytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || len(keys[0].uids) != 1 || len(keys[0].uids[0].sigs) != nsigs {
		t.Fatalf("hostile key did not parse as built: %d keys", len(keys))
	}
	k := keys[0]
	if err := k.validSelfSigned(false); err == nil {
		t.Error("forged self-signatures validated")
	}
	max := int(hpVerifyBudget / verifyCost(nil, k.v4))
	if got := k.verified.checks; got > max || got == 0 {
		t.Errorf("ran %d DSA verifications, want 1..%d", got, max)
	}
}
