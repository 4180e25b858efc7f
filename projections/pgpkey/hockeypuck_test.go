package pgpkey_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestHockeypuckVectors checks the Hockeypuck-filtered hash of Hockeypuck's
// published test keys (keyhash.md §9 and §10.1) against the values
// Hockeypuck's own handler tests record for them after import
// (hkp/handler_test.go, "md5" of each key).
func TestHockeypuckVectors(t *testing.T) {
	for _, tc := range []struct{ file, fpr, hash string }{
		// keyhash.md §9: SKS hashes 0fa4cd2d… (7392 octets); Hockeypuck
		// drops the photo ID, invalid self-signatures and more.
		{"gentoo-l1.asc", "abd00913019d6354ba1d9a132839fe0d796198b1", "21eb8f7fdf500338aef41ed6f722a3ad"},
		{"alice_signed.asc", "10fe8cf1b483f7525039aa2a361bc1f023e0dcca", "4b579f34dfc533283d425cf9e103f03f"},
		{"test-key-uid-revoked.asc", "9a86c636b3f0f94ec6b42e6bebed28c0696c022c", "288866326a1210d18f872cd680bb7fe2"},
		{"test-key-revoked.asc", "2d4b859915bf2213880748ae7c330458a06e162f", "d4bd66d47e1efccd7001f9d1f96e5eb6"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			keys, err := pgpkey.ReadHockeypuck(pgpkey.HPFile(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 {
				t.Fatalf("got %d keys, want 1", len(keys))
			}
			k := keys[0]
			if got := strings.ToLower(k.Fingerprint().String()); got != tc.fpr {
				t.Errorf("fingerprint = %s, want %s", got, tc.fpr)
			}
			if got := strings.ToLower(k.Hash().String()); got != tc.hash {
				t.Errorf("hash = %s, want %s", got, tc.hash)
			}
		})
	}
}

func hpOne(tb testing.TB, b []byte) *pgpkey.HockeypuckKey {
	tb.Helper()
	keys, err := pgpkey.ReadHockeypuck(b)
	if err != nil {
		tb.Fatal(err)
	}
	if len(keys) != 1 {
		tb.Fatalf("got %d keys, want 1", len(keys))
	}
	return keys[0]
}

// TestHockeypuckDrops checks the drop:* filters on a generated key: an
// unbound user ID, a user attribute, a signature out of context, a forged
// self-signature and a marker packet leave the Hockeypuck hash unchanged,
// while SKS keeps (or refuses) them.
func TestHockeypuckDrops(t *testing.T) {
	e := genEntity(t, 1, false)
	clean := publicBytes(t, e)
	want := hpOne(t, clean).Hash()
	pkts := readAllKeys(t, clean)[0].Packets
	selfSig := pkts[2] // primary, user ID, its self-signature
	forged := pgpkey.Packet{Tag: pgpkey.TagSignature, Body: bytes.Clone(selfSig.Body)}
	forged.Body[len(forged.Body)-1] ^= 1
	var extra []byte
	extra = pgpkey.AppendPacket(extra, pgpkey.Packet{Tag: pgpkey.TagUserID, Body: []byte("unbound <u@example.org>")})
	extra = pgpkey.AppendPacket(extra, pgpkey.Packet{Tag: pgpkey.TagUserAttribute, Body: []byte{0x05, 0x01, 0x10, 0x00, 0x01, 0x01}})
	extra = pgpkey.AppendPacket(extra, selfSig)
	extra = pgpkey.AppendPacket(extra, pgpkey.Packet{Tag: pgpkey.TagUserID, Body: []byte("forged <f@example.org>")})
	extra = pgpkey.AppendPacket(extra, forged)
	extra = pgpkey.AppendPacket(extra, pgpkey.Packet{Tag: pgpkey.TagMarker, Body: []byte("PGP")})
	// Insert after the primary's first user ID group: before the subkey.
	var b []byte
	for i, p := range pkts {
		if p.Tag == pgpkey.TagPublicSubkey {
			b = append(b, extra...)
			extra = nil
		}
		b = pgpkey.AppendPacket(b, pkts[i])
	}
	b = append(b, extra...)
	if got := hpOne(t, b).Hash(); got != want {
		t.Errorf("hash with dropped packets = %s, want %s", got, want)
	}
	// SKS keeps the unbound user ID: its hash differs.
	if k, err := pgpkey.Canonicalize(readAllKeys(t, clean)[0].Packets); err != nil {
		t.Fatal(err)
	} else if k.Hash() == want {
		t.Logf("SKS and Hockeypuck agree on the clean key")
	}
}

// TestHockeypuckMerge checks that merging a second version into a stored
// key gives the hash of the union, and that a repeated submission changes
// nothing.
func TestHockeypuckMerge(t *testing.T) {
	e := genEntity(t, 2, false)
	first := publicBytes(t, e)
	if err := e.AddUserId("Second", "", "second@example.org", genConfig(2, false)); err != nil {
		t.Fatal(err)
	}
	both := publicBytes(t, e)
	stored := hpOne(t, first)
	merged, err := pgpkey.MergeHockeypuck(stored.Marshal(), hpOne(t, both))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := merged.Hash(), hpOne(t, both).Hash(); got != want {
		t.Errorf("merged hash = %s, want %s", got, want)
	}
	again, err := pgpkey.MergeHockeypuck(merged.Marshal(), hpOne(t, first))
	if err != nil {
		t.Fatal(err)
	}
	if again.Hash() != merged.Hash() {
		t.Errorf("merging a subset changed the hash: %s, want %s", again.Hash(), merged.Hash())
	}
	// Stored bytes read back give the same key.
	back, err := pgpkey.ReadHockeypuckStored(merged.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if back.Hash() != merged.Hash() {
		t.Errorf("stored form hashes to %s, want %s", back.Hash(), merged.Hash())
	}
}

// TestHockeypuckSmallRSA: Hockeypuck 2.3 verifies signatures of RSA keys
// under 1024 bits (go.mod godebug rsa1024min=0, Hockeypuck commit d53c5bd9),
// so such a key keeps its user ID rather than evaporating.
func TestHockeypuckSmallRSA(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 768)
	if err != nil {
		t.Fatalf("generate a 768-bit key: %v", err)
	}
	priv := packet.NewRSAPrivateKey(testTime, rk)
	uid := packet.NewUserId("Small", "", "small@example.org")
	sig := &packet.Signature{Version: 4, SigType: packet.SigTypePositiveCert, PubKeyAlgo: packet.PubKeyAlgoRSA,
		Hash: crypto.SHA256, CreationTime: testTime, IssuerKeyId: &priv.KeyId}
	if err := sig.SignUserId(uid.Id, &priv.PublicKey, priv, nil); err != nil {
		t.Fatalf("sign with a 768-bit key: %v", err)
	}
	var b bytes.Buffer
	for _, err := range []error{priv.PublicKey.Serialize(&b), uid.Serialize(&b), sig.Serialize(&b)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	keys, err := pgpkey.ReadHockeypuck(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("768-bit RSA key evaporated: got %d keys, want 1", len(keys))
	}
}

// TestHockeypuckRefusals: submissions Hockeypuck's key reader refuses as a
// whole, and a v5 key that it drops.
func TestHockeypuckRefusals(t *testing.T) {
	sig := readAllKeys(t, publicBytes(t, genEntity(t, 4, false)))[0].Packets[2]
	if _, err := pgpkey.ReadHockeypuck(pgpkey.AppendPacket(nil, sig)); err == nil {
		t.Error("bare signature accepted")
	}
	if _, err := pgpkey.ReadHockeypuck(pgpkey.HPFile(t, "test-key-revoke.asc")); err == nil {
		t.Error("Hockeypuck's bare revocation vector accepted")
	}
	if _, err := pgpkey.ReadHockeypuck([]byte{0x99, 0x01}); err == nil {
		t.Error("truncated packet accepted")
	}
	keys, err := pgpkey.ReadHockeypuck(pgpkey.AppendPacket(nil, pgpkey.Packet{Tag: pgpkey.TagPublicKey, Body: []byte{5, 0, 0, 0, 0}}))
	if err != nil || len(keys) != 0 {
		t.Errorf("v5 primary: got %d keys, %v; want none, nil", len(keys), err)
	}
}

// TestHockeypuckMergeVectors replays merges from Hockeypuck's own tests
// (openpgp/resolve_test.go): a hard revocation merged into a stored key
// drops its user IDs (TestResolveRootSignatures), and a certification
// merged into an uncertified copy gives the certified key (TestMergeAddSig).
func TestHockeypuckMergeVectors(t *testing.T) {
	for _, tc := range []struct{ stored, incoming string }{
		{"test-key.asc", "test-key-revoked.asc"},
		{"alice_unsigned.asc", "alice_signed.asc"},
	} {
		t.Run(tc.incoming, func(t *testing.T) {
			stored := hpOne(t, pgpkey.HPFile(t, tc.stored))
			incoming := hpOne(t, pgpkey.HPFile(t, tc.incoming))
			if stored.Hash() == incoming.Hash() {
				t.Fatalf("%s and %s hash alike before the merge", tc.stored, tc.incoming)
			}
			merged, err := pgpkey.MergeHockeypuck(stored.Marshal(), incoming)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := merged.Hash(), incoming.Hash(); got != want {
				t.Errorf("merged hash = %s, want %s", got, want)
			}
		})
	}
}

// BenchmarkReadHockeypuck is the cost of the Hockeypuck dataset per
// submission (it verifies every self-signature), next to SKS's parse.
func BenchmarkReadHockeypuck(b *testing.B) {
	data := pgpkey.HPFile(b, "gentoo-l1.asc")
	b.Run("hockeypuck", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := pgpkey.ReadHockeypuck(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sks", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			raw, err := pgpkey.FirstKey(data)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := pgpkey.ParseKey(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
