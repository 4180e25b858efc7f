package pgpkey_test

import (
	"bytes"
	"crypto/md5"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// testTime is the creation time of generated keys.
var testTime = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// seededRand is a deterministic randomness source for key generation.
type seededRand struct{ r *rand.ChaCha8 }

func (s seededRand) Read(p []byte) (int, error) { return s.r.Read(p) }

func newRand(seed byte) seededRand {
	var s [32]byte
	s[0] = seed
	return seededRand{rand.NewChaCha8(s)}
}

// genConfig returns a go-crypto config for small, fast, reproducible keys.
func genConfig(seed byte, v6 bool) *packet.Config {
	c := &packet.Config{
		Rand:      newRand(seed),
		Time:      func() time.Time { return testTime },
		Algorithm: packet.PubKeyAlgoEdDSA,
	}
	if v6 {
		c.V6Keys = true
		c.Algorithm = packet.PubKeyAlgoEd25519
	}
	return c
}

func genEntity(tb testing.TB, seed byte, v6 bool) *openpgp.Entity {
	tb.Helper()
	e, err := openpgp.NewEntity("Test Key", "", "test@example.org", genConfig(seed, v6))
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

func publicBytes(tb testing.TB, e *openpgp.Entity) []byte {
	tb.Helper()
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func parseOne(tb testing.TB, data []byte) (*pgpkey.Key, error) {
	tb.Helper()
	raws := readAllKeys(tb, data)
	if len(raws) != 1 {
		tb.Fatalf("got %d keys, want 1", len(raws))
	}
	return pgpkey.ParseKey(raws[0])
}

func TestParseKeyRefusesSecretKeys(t *testing.T) {
	e := genEntity(t, 1, false)
	var sec bytes.Buffer
	if err := e.SerializePrivate(&sec, nil); err != nil {
		t.Fatal(err)
	}
	pub := publicBytes(t, e)
	pubKey, err := parseOne(t, pub)
	if err != nil {
		t.Fatal(err)
	}

	// Public primary with a secret subkey packet spliced in after it.
	secRaws := readAllKeys(t, sec.Bytes())
	var secSub pgpkey.Packet
	for _, p := range secRaws[0].Packets {
		if p.Tag == pgpkey.TagSecretSubkey {
			secSub = p
		}
	}
	if secSub.Body == nil {
		t.Fatal("generated secret key has no secret subkey")
	}
	withoutSubkeys := &pgpkey.Key{Primary: pubKey.Primary, UIDs: pubKey.UIDs}
	mixed := withoutSubkeys.Marshal()
	subOff := int64(len(mixed))
	mixed = pgpkey.AppendPacket(mixed, secSub)

	for _, tc := range []struct {
		name   string
		data   []byte
		packet int
		offset int64
	}{
		{"SecretKey", sec.Bytes(), 1, 0},
		{"SecretSubkeyInPublicKey", mixed, 1 + withoutSubkeys.Len(), subOff},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raws := readAllKeys(t, tc.data)
			_, err := pgpkey.ParseKey(raws[0])
			pe := checkErr(t, result{err: err}, tc.offset, tc.packet, "secret key material refused")
			if !errors.Is(pe, pgpkey.ErrSecretKey) {
				t.Errorf("error %v is not ErrSecretKey", pe)
			}
		})
	}
}

func TestParseKeyStripsTrustAndMarker(t *testing.T) {
	s := fixtureStream(t)
	want := s.keys[1]
	// Insert trust packets after the primary, a UID and the last packet,
	// and a marker after the first UID, as a GnuPG keyring export with
	// trust would have.
	trust := pgpkey.Packet{Tag: pgpkey.TagTrust, Body: []byte{0x00, 0x3c}}
	marker := pgpkey.Packet{Tag: pgpkey.TagMarker, Body: []byte("PGP")}
	var pkts []pgpkey.Packet
	for i, p := range want.Packets() {
		pkts = append(pkts, p)
		if i == 0 || p.Tag == pgpkey.TagUserID {
			pkts = append(pkts, trust)
		}
		if i == 1 {
			pkts = append(pkts, marker)
		}
	}
	pkts = append(pkts, trust)
	var data []byte
	for _, p := range pkts {
		data = pgpkey.AppendPacket(data, p)
	}

	// SKS rejects this key (keyhash.md §8); Canonicalize does too.
	if _, err := pgpkey.Canonicalize(pkts); err == nil {
		t.Fatal("Canonicalize accepted trust packets")
	}
	k, err := parseOne(t, data)
	if err != nil {
		t.Fatalf("ParseKey: %v", err)
	}
	if got, want := k.Hash(), want.Hash(); got != want {
		t.Errorf("hash %s, want %s (the key without its trust packets)", got, want)
	}

	t.Run("ErrorOffsetsCountStrippedPackets", func(t *testing.T) {
		// A bad packet after stripped ones is reported at its real place.
		bad := append(append([]byte(nil), data...), 0xb4, 0x01, 'x') // a UID after the subkeys
		raws := readAllKeys(t, bad)
		_, err := pgpkey.ParseKey(raws[0])
		checkErr(t, result{err: err}, int64(len(data)), len(pkts)+1, "user ID after a subkey")
	})
	t.Run("OnlyMarker", func(t *testing.T) {
		// A leading marker packet is its own pseudo-key (keyhash.md §3).
		_, err := parseOne(t, []byte{0xa8, 0x03, 'P', 'G', 'P'})
		checkErr(t, result{err: err}, 0, 0, "key holds only trust and marker packets")
	})
}

func TestParseKeyRequiresUserID(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"NoUIDs", `(6,P) (2,041f) (14,0411) (2,0418)`},
		{"OnlyAttribute", `(6,P) (17,0102) (2,0413)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := mustCanonicalize(t, vec(t, tc.in)) // SKS accepts it
			raw := &pgpkey.RawKey{Offset: 77, Block: 0, Packets: k.Packets(), Raw: k.Marshal()}
			_, err := pgpkey.ParseKey(raw)
			pe := checkErr(t, result{err: err}, 77, 0, "key has no user ID")
			if !errors.Is(pe, pgpkey.ErrNoUserID) {
				t.Errorf("error %v is not ErrNoUserID", pe)
			}
		})
	}
}

func TestParseKeyV6(t *testing.T) {
	e := genEntity(t, 2, true)
	k, err := parseOne(t, publicBytes(t, e))
	if err != nil {
		t.Fatalf("ParseKey(v6): %v", err)
	}
	if got, want := k.Version(), 6; got != want {
		t.Errorf("Version() = %d, want %d", got, want)
	}
	if k.SKSCompatible() {
		t.Error("SKSCompatible() = true for a v6 key")
	}
	if got, want := k.Fingerprint().Bytes(), e.PrimaryKey.Fingerprint; !bytes.Equal(got, want) {
		t.Errorf("Fingerprint() = %X, want %X", got, want)
	}
	if got, want := k.KeyID(), pgpkey.KeyID(e.PrimaryKey.KeyId); got != want {
		t.Errorf("KeyID() = %s, want %s (the high 64 bits)", got, want)
	}
	if got := k.Identity(); got.Fingerprint != k.Fingerprint() || got.KeyID != k.KeyID() {
		t.Errorf("Identity() = %+v, want Fingerprint() and KeyID()", got)
	}
	subs := k.SubkeyIDs()
	if len(subs) != 1 || !bytes.Equal(subs[0].Fingerprint.Bytes(), e.Subkeys[0].PublicKey.Fingerprint) ||
		subs[0].KeyID != pgpkey.KeyID(e.Subkeys[0].PublicKey.KeyId) {
		t.Errorf("SubkeyIDs() = %+v, want the subkey's", subs)
	}
	if got := k.UserIDs(); len(got) != 1 || got[0] != "Test Key <test@example.org>" {
		t.Errorf("UserIDs() = %q", got)
	}
}

func TestFingerprintV4MatchesGoCrypto(t *testing.T) {
	e := genEntity(t, 3, false)
	k, err := parseOne(t, publicBytes(t, e))
	if err != nil {
		t.Fatal(err)
	}
	if !k.SKSCompatible() || k.Version() != 4 {
		t.Errorf("v4 key: Version %d, SKSCompatible %v", k.Version(), k.SKSCompatible())
	}
	if got, want := k.Fingerprint().Bytes(), e.PrimaryKey.Fingerprint; !bytes.Equal(got, want) {
		t.Errorf("Fingerprint() = %X, want %X", got, want)
	}
	if got, want := k.KeyID(), pgpkey.KeyID(e.PrimaryKey.KeyId); got != want {
		t.Errorf("KeyID() = %s, want %s", got, want)
	}
	if got := k.Identity(); got.Fingerprint != k.Fingerprint() || got.KeyID != k.KeyID() {
		t.Errorf("Identity() = %+v, want Fingerprint() and KeyID()", got)
	}
	subs := k.SubkeyIDs()
	if len(subs) != 1 || subs[0].KeyID != pgpkey.KeyID(e.Subkeys[0].PublicKey.KeyId) {
		t.Errorf("SubkeyIDs() = %+v", subs)
	}
}

func TestV3Key(t *testing.T) {
	// A hand-built v3 RSA key: version 3, created, validity 0 days,
	// algorithm 1, MPI n (72 bits), MPI e (17 bits).
	n := []byte{0xc1, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09}
	e := []byte{0x01, 0x00, 0x01}
	body := []byte{3, 0x40, 0, 0, 0, 0, 0, 1}
	body = append(body, 0, 72)
	body = append(body, n...)
	body = append(body, 0, 17)
	body = append(body, e...)
	primary := pgpkey.Packet{Tag: pgpkey.TagPublicKey, Body: body}
	uid := pgpkey.Packet{Tag: pgpkey.TagUserID, Body: []byte("v3 <v3@example.org>")}

	k, err := pgpkey.Canonicalize([]pgpkey.Packet{primary, uid})
	if err != nil {
		t.Fatal(err)
	}
	if !k.SKSCompatible() || k.Version() != 3 {
		t.Errorf("Version %d, SKSCompatible %v; want 3, true", k.Version(), k.SKSCompatible())
	}
	sum := md5.Sum(append(append([]byte(nil), n...), e...))
	if got := k.Fingerprint().Bytes(); !bytes.Equal(got, sum[:]) {
		t.Errorf("Fingerprint() = %X, want MD5(n||e) = %X", got, sum)
	}
	if got, want := k.KeyID(), pgpkey.KeyID(0x0203040506070809); got != want {
		t.Errorf("KeyID() = %s, want %s (low 64 bits of n)", got, want)
	}
	if got := k.Identity(); got.Fingerprint != k.Fingerprint() || got.KeyID != k.KeyID() {
		t.Errorf("Identity() = %+v, want Fingerprint() and KeyID()", got)
	}
	s := k.Summary()
	if s.Version != 3 || s.Algorithm != 1 || s.Bits != 72 || !s.Created.Equal(time.Unix(0x40000000, 0)) || s.Verified {
		t.Errorf("Summary() = %+v", s)
	}
}

func TestIDsFormatAndParse(t *testing.T) {
	const fpr = "3B03A965A519A6CAE8B09425CED1786732CA2E5C"
	for _, in := range []string{fpr, "0x" + fpr, "3b03a965a519a6cae8b09425ced1786732ca2e5c"} {
		f, err := pgpkey.ParseFingerprint(in)
		if err != nil {
			t.Fatalf("ParseFingerprint(%q): %v", in, err)
		}
		if f.String() != fpr || f.Len() != 20 || f.IsZero() {
			t.Errorf("ParseFingerprint(%q) = %s (len %d)", in, f, f.Len())
		}
		if got, want := f.KeyID().String(), "CED1786732CA2E5C"; got != want {
			t.Errorf("KeyID() = %s, want %s", got, want)
		}
		if got, want := f.KeyID().Short(), uint32(0x32CA2E5C); got != want {
			t.Errorf("Short() = %08X, want %08X", got, want)
		}
	}
	for _, bad := range []string{"", "0x", fpr[:38], fpr + "00", "Z" + fpr[1:]} {
		if _, err := pgpkey.ParseFingerprint(bad); err == nil {
			t.Errorf("ParseFingerprint(%q) succeeded", bad)
		}
	}
	v6 := "CB186C4F0609A697E4D52DFA6C722B0C1F1E27C18A56708F6525EC27BAD9ACC9"
	f6, err := pgpkey.ParseFingerprint(v6)
	if err != nil || f6.String() != v6 || f6.KeyID().String() != "CB186C4F0609A697" {
		t.Errorf("v6 fingerprint: %s, %v, key ID %s", f6, err, f6.KeyID())
	}
	f3, err := pgpkey.FingerprintFromBytes(make([]byte, 16))
	if err != nil || f3.Len() != 16 || f3 == (pgpkey.Fingerprint{}) {
		t.Errorf("FingerprintFromBytes(16 bytes) = %v, %v", f3, err)
	}
	if _, err := pgpkey.FingerprintFromBytes(make([]byte, 21)); err == nil {
		t.Error("FingerprintFromBytes(21 bytes) succeeded")
	}
	// Fingerprints of different lengths differ even when one is a prefix of
	// the other; they work as map keys.
	f20, _ := pgpkey.FingerprintFromBytes(make([]byte, 20))
	m := map[pgpkey.Fingerprint]int{f3: 3, f20: 4}
	if len(m) != 2 || !(pgpkey.Fingerprint{}).IsZero() || (pgpkey.Fingerprint{}).String() != "" {
		t.Error("Fingerprint zero value or map keys misbehave")
	}

	h, err := pgpkey.ParseKeyHash("313310dc2038f6dfe36de1b9a11d3179")
	if err != nil || h.String() != "313310DC2038F6DFE36DE1B9A11D3179" {
		t.Errorf("ParseKeyHash = %s, %v", h, err)
	}
	if _, err := pgpkey.ParseKeyHash("313310dc2038f6dfe36de1b9a11d31"); err == nil {
		t.Error("ParseKeyHash accepted 30 digits")
	}
	id, err := pgpkey.ParseKeyID("0xced1786732ca2e5c")
	if err != nil || id.String() != "CED1786732CA2E5C" {
		t.Errorf("ParseKeyID = %s, %v", id, err)
	}
}
