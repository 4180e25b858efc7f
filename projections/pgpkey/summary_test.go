package pgpkey_test

import (
	"bytes"
	"context"
	"crypto"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

// TestSummaryMatchesSKSIndex compares the summary of Alice's key with the
// machine-readable index a real SKS 1.1.6 served for it
// (fixtures/sks/hkp-gpg-search-keys.response.http): algorithm, bits,
// creation time and each user ID's self-certification time.
func TestSummaryMatchesSKSIndex(t *testing.T) {
	resp := string(readShared(t, "fixtures/sks/hkp-gpg-search-keys.response.http"))
	var pub []string
	uidCreated := map[string]string{}
	for _, line := range strings.Split(resp, "\n") {
		f := strings.Split(strings.TrimRight(line, "\r"), ":")
		switch f[0] {
		case "pub":
			pub = f
		case "uid":
			uidCreated[f[1]] = f[2]
		}
	}
	if len(pub) < 6 || len(uidCreated) != 2 {
		t.Fatalf("unexpected fixture content: pub %q, uids %q", pub, uidCreated)
	}
	var k *pgpkey.Key
	for _, raw := range readAllKeys(t, testKeyFiles(t)["keys-a.pgp"]) {
		kk, err := pgpkey.ParseKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		if kk.Fingerprint().String() == pub[1] {
			k = kk
		}
	}
	if k == nil {
		t.Fatalf("no key %s in keys-a.pgp", pub[1])
	}
	s := k.Summary()
	unix := func(tm time.Time) string {
		if tm.IsZero() {
			return ""
		}
		return strconv.FormatInt(tm.Unix(), 10)
	}
	if got, want := strconv.Itoa(s.Algorithm), pub[2]; got != want {
		t.Errorf("Algorithm = %s, want %s", got, want)
	}
	if got, want := strconv.Itoa(s.Bits), pub[3]; got != want {
		t.Errorf("Bits = %s, want %s (SKS shows Ed25519 as 256)", got, want)
	}
	if got, want := unix(s.Created), pub[4]; got != want {
		t.Errorf("Created = %s, want %s", got, want)
	}
	if got, want := unix(s.Expires), pub[5]; got != want {
		t.Errorf("Expires = %q, want %q", got, want)
	}
	if len(s.UIDs) != 2 {
		t.Fatalf("%d UIDs, want 2", len(s.UIDs))
	}
	for _, u := range s.UIDs {
		if got, want := unix(u.Created), uidCreated[u.Text]; got != want {
			t.Errorf("UID %q: Created = %s, want %s", u.Text, got, want)
		}
	}
}

// TestSummaryTestKeys checks algorithm and size of every test key against
// test-keys.tsv (gpg's listing), where SKS's convention differs for 25519
// curves: gpg says 255 bits, SKS (and we) 256.
func TestSummaryTestKeys(t *testing.T) {
	files := testKeyFiles(t)
	for _, tk := range loadTestKeys(t) {
		f := strings.Split(tk.algo, "/")
		wantAlgo, _ := strconv.Atoi(f[0])
		wantBits, _ := strconv.Atoi(f[1])
		if f[2] == "ed25519" || f[2] == "cv25519" {
			wantBits = 256
		}
		for _, raw := range readAllKeys(t, files[tk.file]) {
			k, err := pgpkey.ParseKey(raw)
			if err != nil {
				t.Fatal(err)
			}
			if k.Fingerprint().String() != tk.fingerprint {
				continue
			}
			s := k.Summary()
			if s.Algorithm != wantAlgo || s.Bits != wantBits || s.Version != 4 || !s.Verified || s.Revoked {
				t.Errorf("%s: Summary = %+v, want algorithm %d, %d bits", tk.fingerprint, s, wantAlgo, wantBits)
			}
			primaries := 0
			for _, u := range s.UIDs {
				if u.Primary {
					primaries++
				}
				if u.Created.IsZero() || u.Revoked {
					t.Errorf("%s: UID %q: %+v", tk.fingerprint, u.Text, u)
				}
			}
			if primaries != 1 {
				t.Errorf("%s: %d primary UIDs, want 1", tk.fingerprint, primaries)
			}
			ids := k.SubkeyIDs()
			if len(s.Subkeys) != len(ids) {
				t.Fatalf("%s: %d subkey summaries, %d subkey IDs", tk.fingerprint, len(s.Subkeys), len(ids))
			}
			for i, sub := range s.Subkeys {
				if sub.Fingerprint != ids[i].Fingerprint || sub.KeyID != ids[i].KeyID || sub.Bits == 0 || sub.Created.IsZero() {
					t.Errorf("%s: subkey %d: %+v", tk.fingerprint, i, sub)
				}
			}
		}
	}
}

// keyOf parses an entity's public key.
func keyOf(tb testing.TB, e *openpgp.Entity) *pgpkey.Key {
	tb.Helper()
	k, err := parseOne(tb, publicBytes(tb, e))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// withSig returns a copy of k with sig added to the direct sigs (uid < 0)
// or to UID group uid.
func withSig(tb testing.TB, k *pgpkey.Key, uid int, sig *packet.Signature) *pgpkey.Key {
	tb.Helper()
	p := sigPacket(tb, sig)
	c := &pgpkey.Key{Primary: k.Primary, DirectSigs: k.DirectSigs, UIDs: append([]pgpkey.Group(nil), k.UIDs...), Subkeys: k.Subkeys}
	if uid < 0 {
		c.DirectSigs = append(append([]pgpkey.Packet(nil), k.DirectSigs...), p)
	} else {
		c.UIDs[uid].Sigs = append(append([]pgpkey.Packet(nil), c.UIDs[uid].Sigs...), p)
	}
	return c
}

func sigPacket(tb testing.TB, sig *packet.Signature) pgpkey.Packet {
	tb.Helper()
	var b bytes.Buffer
	if err := sig.Serialize(&b); err != nil {
		tb.Fatal(err)
	}
	raws := readAllKeys(tb, b.Bytes())
	return raws[0].Packets[0]
}

func TestSummaryExpiry(t *testing.T) {
	cfg := genConfig(10, false)
	cfg.KeyLifetimeSecs = 400 * 86400
	e, err := openpgp.NewEntity("Expiring", "", "exp@example.org", cfg)
	if err != nil {
		t.Fatal(err)
	}
	// NewEntity binds its subkey without expiry; this one expires.
	subCfg := genConfig(12, false)
	subCfg.KeyLifetimeSecs = cfg.KeyLifetimeSecs
	if err := e.AddEncryptionSubkey(subCfg); err != nil {
		t.Fatal(err)
	}
	s := keyOf(t, e).Summary()
	want := testTime.Add(400 * 24 * time.Hour)
	if !s.Created.Equal(testTime) || !s.Expires.Equal(want) {
		t.Errorf("Created %v, Expires %v; want %v, %v", s.Created, s.Expires, testTime, want)
	}
	if len(s.Subkeys) != 2 {
		t.Fatalf("%d subkeys, want 2", len(s.Subkeys))
	}
	for _, sub := range s.Subkeys {
		expiring := bytes.Equal(sub.Fingerprint.Bytes(), e.Subkeys[1].PublicKey.Fingerprint)
		if got := !sub.Expires.IsZero(); got != expiring || (expiring && !sub.Expires.Equal(want)) {
			t.Errorf("subkey %s: Expires %v (expiring: %v, want %v)", sub.Fingerprint, sub.Expires, expiring, want)
		}
	}
	if len(s.UIDs) != 1 || !s.UIDs[0].Primary || !s.UIDs[0].Created.Equal(testTime) {
		t.Errorf("UIDs %+v", s.UIDs)
	}

	// A newer self-certification without expiry supersedes it.
	later := testTime.Add(time.Hour)
	k := keyOf(t, e)
	sig := &packet.Signature{Version: 4, SigType: packet.SigTypePositiveCert, PubKeyAlgo: e.PrimaryKey.PubKeyAlgo,
		Hash: crypto.SHA256, CreationTime: later, IssuerKeyId: &e.PrimaryKey.KeyId}
	uid := k.UserIDs()[0]
	if err := sig.SignUserId(uid, e.PrimaryKey, e.PrivateKey, genConfig(11, false)); err != nil {
		t.Fatal(err)
	}
	s = withSig(t, k, 0, sig).Summary()
	if !s.Expires.IsZero() || !s.UIDs[0].Created.Equal(later) {
		t.Errorf("after re-certification without expiry: Expires %v, UID created %v", s.Expires, s.UIDs[0].Created)
	}
}

func TestSummaryRevocation(t *testing.T) {
	t.Run("SelfRevoked", func(t *testing.T) {
		e := genEntity(t, 20, false)
		if s := keyOf(t, e).Summary(); s.Revoked {
			t.Fatal("fresh key reported revoked")
		}
		if err := e.RevokeKey(packet.KeyCompromised, "test", genConfig(21, false)); err != nil {
			t.Fatal(err)
		}
		if s := keyOf(t, e).Summary(); !s.Revoked {
			t.Error("self-revoked key not reported revoked")
		}
	})

	// A "revocation" made by another key. SKS would show the key as
	// revoked (hkp.md §6.1); it must not count here.
	victim := genEntity(t, 22, false)
	attacker := genEntity(t, 23, false)
	forged := &packet.Signature{Version: 4, SigType: packet.SigTypeKeyRevocation, PubKeyAlgo: attacker.PrimaryKey.PubKeyAlgo,
		Hash: crypto.SHA256, CreationTime: testTime.Add(time.Hour), IssuerKeyId: &victim.PrimaryKey.KeyId}
	if err := forged.RevokeKey(victim.PrimaryKey, attacker.PrivateKey, genConfig(24, false)); err != nil {
		t.Fatal(err)
	}
	k := keyOf(t, victim)
	t.Run("ThirdParty", func(t *testing.T) {
		if s := withSig(t, k, -1, forged).Summary(); s.Revoked {
			t.Error("third-party revocation marked the key revoked")
		}
	})
	t.Run("ForgedIssuer", func(t *testing.T) {
		// Rewrite the issuer subpackets to claim the victim's identity: the
		// signature now passes the issuer check and must fail verification.
		p := sigPacket(t, forged)
		body := bytes.ReplaceAll(p.Body, attacker.PrimaryKey.Fingerprint, victim.PrimaryKey.Fingerprint)
		if bytes.Equal(body, p.Body) {
			t.Fatal("issuer fingerprint not found in the signature")
		}
		c := &pgpkey.Key{Primary: k.Primary, DirectSigs: []pgpkey.Packet{{Tag: pgpkey.TagSignature, Body: body}}, UIDs: k.UIDs, Subkeys: k.Subkeys}
		if s := c.Summary(); s.Revoked {
			t.Error("forged self-revocation marked the key revoked")
		}
	})

	t.Run("UIDRevoked", func(t *testing.T) {
		e := genEntity(t, 25, false)
		if err := e.AddUserId("Second", "", "second@example.org", genConfig(26, false)); err != nil {
			t.Fatal(err)
		}
		k := keyOf(t, e)
		var idx int
		for i, u := range k.Summary().UIDs {
			if strings.HasPrefix(u.Text, "Second") {
				idx = i
			}
		}
		rev := &packet.Signature{Version: 4, SigType: packet.SigTypeCertificationRevocation, PubKeyAlgo: e.PrimaryKey.PubKeyAlgo,
			Hash: crypto.SHA256, CreationTime: testTime.Add(time.Hour), IssuerKeyId: &e.PrimaryKey.KeyId}
		if err := rev.SignUserId(k.Summary().UIDs[idx].Text, e.PrimaryKey, e.PrivateKey, genConfig(27, false)); err != nil {
			t.Fatal(err)
		}
		s := withSig(t, k, idx, rev).Summary()
		for i, u := range s.UIDs {
			if u.Revoked != (i == idx) {
				t.Errorf("UID %q: Revoked = %v", u.Text, u.Revoked)
			}
			if u.Primary && u.Revoked {
				t.Errorf("revoked UID %q is primary", u.Text)
			}
		}
		if s.Revoked {
			t.Error("a UID revocation revoked the key")
		}
		// The same revocation by another key does nothing.
		rev3 := &packet.Signature{Version: 4, SigType: packet.SigTypeCertificationRevocation, PubKeyAlgo: attacker.PrimaryKey.PubKeyAlgo,
			Hash: crypto.SHA256, CreationTime: testTime.Add(time.Hour), IssuerKeyId: &e.PrimaryKey.KeyId}
		if err := rev3.SignUserId(k.Summary().UIDs[idx].Text, e.PrimaryKey, attacker.PrivateKey, genConfig(28, false)); err != nil {
			t.Fatal(err)
		}
		if withSig(t, k, idx, rev3).Summary().UIDs[idx].Revoked {
			t.Error("third-party certification revocation revoked the UID")
		}
	})

	t.Run("SubkeyRevoked", func(t *testing.T) {
		e := genEntity(t, 29, false)
		if err := e.RevokeSubkey(&e.Subkeys[0], packet.KeySuperseded, "", genConfig(30, false)); err != nil {
			t.Fatal(err)
		}
		s := keyOf(t, e).Summary()
		if len(s.Subkeys) != 1 || !s.Subkeys[0].Revoked || s.Revoked {
			t.Errorf("Summary = %+v, want only the subkey revoked", s)
		}
	})
}

func TestSummaryV6(t *testing.T) {
	cfg := genConfig(40, true)
	cfg.KeyLifetimeSecs = 86400
	e, err := openpgp.NewEntity("Six", "", "six@example.org", cfg)
	if err != nil {
		t.Fatal(err)
	}
	k := keyOf(t, e)
	s := k.Summary()
	if s.Version != 6 || s.Algorithm != 27 || s.Bits != 256 || !s.Verified {
		t.Errorf("Summary = %+v, want v6 Ed25519 (27), 256 bits, verified", s)
	}
	if want := testTime.Add(24 * time.Hour); !s.Expires.Equal(want) {
		t.Errorf("Expires = %v, want %v (from the direct-key signature)", s.Expires, want)
	}
	if len(s.Subkeys) != 1 || s.Subkeys[0].Algorithm != 25 || s.Subkeys[0].Bits != 255 {
		t.Errorf("Subkeys = %+v, want one X25519 (25) subkey of 255 bits", s.Subkeys)
	}
	if err := e.RevokeKey(packet.NoReason, "", genConfig(41, true)); err != nil {
		t.Fatal(err)
	}
	if !keyOf(t, e).Summary().Revoked {
		t.Error("self-revoked v6 key not reported revoked")
	}
}

func TestSummaryOddPackets(t *testing.T) {
	// Unparseable signatures, a malformed subkey and an unknown algorithm
	// never make Summary fail.
	k := mustCanonicalize(t, vec(t, `(6,045f0000006301) (2,04) (13,"u") (2,ff00) (14,04) (2,0418)`))
	s := k.Summary()
	if s.Version != 4 || s.Algorithm != 99 || s.Bits != 0 || s.Verified || len(s.UIDs) != 1 || len(s.Subkeys) != 1 {
		t.Errorf("Summary = %+v", s)
	}
}

// TestPrimarySummary: PrimarySummary is Summary without the subkeys, on
// fresh keys and on keys whose summary is computed already, over a generated
// corpus (revocations, expiries, several user IDs and subkeys).
func TestPrimarySummary(t *testing.T) {
	var buf bytes.Buffer
	if _, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: 200, Seed: 3, RSAPoolSize: 2}); err != nil {
		t.Fatal(err)
	}
	raws := readAllKeys(t, buf.Bytes())
	withSubkeys := 0
	for i, raw := range raws {
		parse := func() *pgpkey.Key {
			k, err := pgpkey.ParseKey(raw)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}
		full := parse().Summary()
		if len(full.Subkeys) > 0 {
			withSubkeys++
		}
		want := full
		want.Subkeys = nil
		if got := parse().PrimarySummary(); !reflect.DeepEqual(got, want) {
			t.Errorf("key %d: PrimarySummary = %+v, want %+v", i, got, want)
		}
		k := parse()
		k.Summary()
		if got := k.PrimarySummary(); !reflect.DeepEqual(got, want) {
			t.Errorf("key %d: PrimarySummary after Summary = %+v, want %+v", i, got, want)
		}
		if got := k.Summary(); !reflect.DeepEqual(got, full) {
			t.Errorf("key %d: Summary after PrimarySummary lost its subkeys", i)
		}
	}
	if withSubkeys < len(raws)/2 {
		t.Fatalf("only %d of %d keys have subkeys", withSubkeys, len(raws))
	}
}
