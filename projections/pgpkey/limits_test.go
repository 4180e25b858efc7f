package pgpkey_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// fakeCert builds a v4 third-party certification (type 0x10) by issuer,
// created at the given Unix time, with a signature that does not verify:
// what a flooder attaches by the thousand. Nothing on a keyserver can tell
// it from a real one without the issuer's key.
func fakeCert(issuer []byte, created uint32, r *rand.Rand) pgpkey.Packet {
	hashed := []byte{5, 2, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(hashed[2:], created)
	hashed = append(hashed, 22, 33, 4)
	hashed = append(hashed, issuer...)
	b := []byte{4, 0x10, 22, 8}
	b = binary.BigEndian.AppendUint16(b, uint16(len(hashed)))
	b = append(b, hashed...)
	b = append(b, 0, 0)                               // no unhashed subpackets
	b = append(b, byte(r.Uint32()), byte(r.Uint32())) // left 16 bits of the hash
	for range 2 {                                     // EdDSA r and s
		b = append(b, 1, 0)
		for range 32 {
			b = append(b, byte(r.Uint32()))
		}
	}
	return pgpkey.Packet{Tag: pgpkey.TagSignature, Body: b}
}

// floodedKey returns a real ed25519 key (one user ID, one subkey, all
// self-signatures valid) and the same key with n fake third-party
// certifications on its user ID, created one second apart after the key,
// plus one forged signature that claims to be a self-signature.
func floodedKey(tb testing.TB, seed byte, n int) (clean, flooded *pgpkey.Key) {
	tb.Helper()
	e := genEntity(tb, seed, false)
	clean, err := parseOne(tb, publicBytes(tb, e))
	if err != nil {
		tb.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(seed), 1))
	var pkts []pgpkey.Packet
	for i := range n {
		issuer := make([]byte, 20)
		for j := range issuer {
			issuer[j] = byte(r.Uint32())
		}
		pkts = append(pkts, fakeCert(issuer, uint32(testTime.Unix())+uint32(i)+1, r))
	}
	forged := fakeCert(clean.Fingerprint().Bytes(), uint32(testTime.Unix())+uint32(n)+10, r)
	pkts = append(pkts, forged)
	flooded = withSigs(tb, clean, 0, pkts...)
	return clean, flooded
}

// withSigs returns k with extra signatures on user ID group uid.
func withSigs(tb testing.TB, k *pgpkey.Key, uid int, sigs ...pgpkey.Packet) *pgpkey.Key {
	tb.Helper()
	pkts := []pgpkey.Packet{k.Primary}
	pkts = append(pkts, k.DirectSigs...)
	for i, g := range k.UIDs {
		pkts = append(pkts, g.Packet)
		pkts = append(pkts, g.Sigs...)
		if i == uid {
			pkts = append(pkts, sigs...)
		}
	}
	for _, g := range k.Subkeys {
		pkts = append(pkts, g.Packet)
		pkts = append(pkts, g.Sigs...)
	}
	out, err := pgpkey.Canonicalize(pkts)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func countSigs(k *pgpkey.Key) (total, maxGroup int) {
	total = len(k.DirectSigs)
	maxGroup = len(k.DirectSigs)
	for _, gs := range [][]pgpkey.Group{k.UIDs, k.Subkeys} {
		for _, g := range gs {
			total += len(g.Sigs)
			maxGroup = max(maxGroup, len(g.Sigs))
		}
	}
	return total, maxGroup
}

// checkWithin fails unless k respects lim (with defaults resolved by the
// caller).
func checkWithin(t *testing.T, k *pgpkey.Key, lim pgpkey.Limits, selfSigs int) {
	t.Helper()
	total, maxGroup := countSigs(k)
	if total > lim.MaxSigs {
		t.Errorf("key holds %d signatures, limit %d", total, lim.MaxSigs)
	}
	if maxGroup > lim.MaxCertsPerUID+selfSigs {
		t.Errorf("a group holds %d signatures, limit %d third-party + %d self", maxGroup, lim.MaxCertsPerUID, selfSigs)
	}
	if len(k.UIDs) > lim.MaxUIDs || len(k.Subkeys) > lim.MaxSubkeys {
		t.Errorf("key holds %d user IDs and %d subkeys, limits %d and %d", len(k.UIDs), len(k.Subkeys), lim.MaxUIDs, lim.MaxSubkeys)
	}
	if n := int64(k.MarshalSize()); n > lim.MaxKeyBytes {
		t.Errorf("key is %d bytes, limit %d", n, lim.MaxKeyBytes)
	}
}

// isSubset reports whether every packet of a is in b, in the same place
// and as often: the primary key, the direct signatures, and each user ID,
// attribute or subkey with its signatures.
//
// Not b.Contains(a): that asks whether merging a into b would leave b
// unchanged, which is false for every a when b holds a signature twice
// under one user ID — SKS's canonical form keeps such duplicates and any
// merge removes them (keyhash.md §4.3; found by FuzzLimits).
func isSubset(a, b *pgpkey.Key) bool {
	if !a.Primary.Equal(b.Primary) || !subMultiset(a.DirectSigs, b.DirectSigs) {
		return false
	}
	groupsIn := func(ag, bg []pgpkey.Group) bool {
		for _, g := range ag {
			var sigs []pgpkey.Packet
			found := false
			for _, h := range bg {
				if h.Packet.Equal(g.Packet) {
					sigs, found = append(sigs, h.Sigs...), true
				}
			}
			if !found || !subMultiset(g.Sigs, sigs) {
				return false
			}
		}
		return true
	}
	return groupsIn(a.UIDs, b.UIDs) && groupsIn(a.Subkeys, b.Subkeys)
}

// subMultiset reports whether every packet of a is in b at least as often.
func subMultiset(a, b []pgpkey.Packet) bool {
	count := map[string]int{}
	for _, p := range b {
		count[string(rune(p.Tag))+string(p.Body)]++
	}
	for _, p := range a {
		k := string(rune(p.Tag)) + string(p.Body)
		if count[k] == 0 {
			return false
		}
		count[k]--
	}
	return true
}

func TestLimitsFloodedKey(t *testing.T) {
	const n = 5000
	clean, flooded := floodedKey(t, 21, n)
	lim := pgpkey.DefaultLimits()
	out, tr, err := lim.Apply(nil, flooded)
	if err != nil {
		t.Fatal(err)
	}
	// Every self-signature survives: the clean key is inside the result.
	if !out.Contains(clean) {
		t.Fatal("the trimmed key lost a self-signature, user ID or subkey")
	}
	selfOnUID := len(clean.UIDs[0].Sigs)
	if got, want := len(out.UIDs[0].Sigs), selfOnUID+lim.MaxCertsPerUID; got != want {
		t.Errorf("user ID keeps %d signatures, want %d (%d self + %d third-party)", got, want, selfOnUID, lim.MaxCertsPerUID)
	}
	if got, want := tr.Sigs, n+1-lim.MaxCertsPerUID; got != want {
		t.Errorf("Trim.Sigs = %d, want %d (%s)", got, want, tr)
	}
	if !tr.Changed() || out.Hash() == flooded.Hash() {
		t.Error("trimmed key reports no change or keeps the flooded hash")
	}
	checkWithin(t, out, lim, selfOnUID)
	// The newest third-party certifications are the ones kept; the forged
	// self-claim is the newest of all but does not verify, so it is
	// third-party, and kept as such.
	kept := make(map[string]bool)
	for _, s := range out.UIDs[0].Sigs {
		kept[string(s.Body)] = true
	}
	var oldestKept, newestDropped uint32
	for _, s := range flooded.UIDs[0].Sigs {
		if len(s.Body) < 12 || s.Body[1] != 0x10 || s.Body[2] != 22 {
			continue
		}
		created := binary.BigEndian.Uint32(s.Body[8:12])
		if kept[string(s.Body)] {
			if oldestKept == 0 || created < oldestKept {
				oldestKept = created
			}
		} else if created > newestDropped {
			newestDropped = created
		}
	}
	if newestDropped >= oldestKept {
		t.Errorf("dropped a certification from %d but kept one from %d: want the newest kept", newestDropped, oldestKept)
	}
	// The policy's output is stable: applying it again changes nothing.
	again, tr2, err := lim.Apply(nil, out)
	if err != nil || tr2.Changed() || again != out {
		t.Errorf("Apply(Apply(k)) = %v, %v: want the same key back", tr2, err)
	}
	// It round-trips through the log's encoding.
	raw := readAllKeys(t, out.Marshal())
	back, err := pgpkey.ParseKey(raw[0])
	if err != nil || back.Hash() != out.Hash() {
		t.Fatalf("trimmed key does not round-trip: %v", err)
	}
}

// A stored key already at the cap: new third-party certifications are
// refused (first come, first kept), but a new user ID with a valid
// self-signature and the key's own new signatures still get in.
func TestLimitsUpdateOfFullKey(t *testing.T) {
	lim := pgpkey.Limits{MaxCertsPerUID: 50}
	e := genEntity(t, 22, false)
	clean, err := parseOne(t, publicBytes(t, e))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(22, 2))
	var first []pgpkey.Packet
	for i := range 80 {
		first = append(first, fakeCert(bytes.Repeat([]byte{byte(i)}, 20), uint32(testTime.Unix())+uint32(i), r))
	}
	stored, tr, err := lim.Apply(nil, withSigs(t, clean, 0, first...))
	if err != nil || tr.Sigs != 30 {
		t.Fatalf("first upload: %v, %v; want 30 signatures dropped", tr, err)
	}

	// The owner adds a user ID; a flooder adds 20 more certifications.
	if err := e.AddUserId("Second", "", "second@example.org", genConfig(22, false)); err != nil {
		t.Fatal(err)
	}
	updated, err := parseOne(t, publicBytes(t, e))
	if err != nil {
		t.Fatal(err)
	}
	var more []pgpkey.Packet
	for i := range 20 {
		more = append(more, fakeCert(bytes.Repeat([]byte{0xf0 | byte(i)}, 20), uint32(testTime.Unix())+1000+uint32(i), r))
	}
	uid := 0
	for i, g := range updated.UIDs {
		if g.Packet.Equal(clean.UIDs[0].Packet) {
			uid = i
		}
	}
	incoming := withSigs(t, updated, uid, more...)
	out, tr, err := lim.Apply(stored, incoming)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Sigs != 20 || tr.UIDs != 0 {
		t.Errorf("update: %s; want exactly the 20 new certifications dropped", tr)
	}
	if !out.Contains(updated) {
		t.Error("the new user ID or its self-signature was dropped")
	}
	merged := pgpkey.Merge(stored, out)
	checkWithin(t, merged, lim.Resolved(), 1)
	if !merged.Contains(stored) {
		t.Error("merge lost a stored packet")
	}
}

func TestLimitsWithinIsUntouched(t *testing.T) {
	lim := pgpkey.DefaultLimits()
	n := 0
	for _, raw := range readAllKeys(t, fixtureStream(t).data) {
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			continue
		}
		n++
		out, tr, err := lim.Apply(nil, k)
		if err != nil || tr.Changed() || out != k {
			t.Errorf("%s: Apply = %v, %v; want the key unchanged", k.Fingerprint(), tr, err)
		}
		out, tr, err = lim.Apply(k, k)
		if err != nil || tr.Changed() || out != k {
			t.Errorf("%s: Apply over itself = %v, %v; want the key unchanged", k.Fingerprint(), tr, err)
		}
	}
	if n == 0 {
		t.Fatal("no fixture key parsed")
	}
}

func TestLimitsSizesAndCounts(t *testing.T) {
	e := genEntity(t, 23, false)
	for i := range 4 {
		if err := e.AddUserId("Extra", string(rune('a'+i)), "x@example.org", genConfig(23, false)); err != nil {
			t.Fatal(err)
		}
	}
	k, err := parseOne(t, publicBytes(t, e))
	if err != nil {
		t.Fatal(err)
	}
	t.Run("MaxUIDs", func(t *testing.T) {
		// A user ID without any self-signature comes after the signed ones.
		unsigned := pgpkey.Packet{Tag: pgpkey.TagUserID, Body: []byte("A <unsigned@example.org>")}
		withUnsigned, err := pgpkey.Canonicalize(withGroup(k, unsigned))
		if err != nil {
			t.Fatal(err)
		}
		out, tr, err := pgpkey.Limits{MaxUIDs: 5}.Apply(nil, withUnsigned)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.UIDs) != 5 || tr.UIDs != 1 {
			t.Fatalf("kept %d user IDs (%s), want 5", len(out.UIDs), tr)
		}
		for _, g := range out.UIDs {
			if g.Packet.Equal(unsigned) {
				t.Error("kept the unsigned user ID over a signed one")
			}
		}
	})
	t.Run("MaxSigBytes", func(t *testing.T) {
		big := fakeCert(make([]byte, 20), 1, rand.New(rand.NewPCG(1, 1)))
		big.Body = append(big.Body, make([]byte, 2000)...)
		out, tr, err := pgpkey.Limits{MaxSigBytes: 1024}.Apply(nil, withSigs(t, k, 0, big))
		if err != nil || tr.Sigs != 1 || tr.Oversized != 1 || out.Hash() != k.Hash() {
			t.Errorf("oversized signature: %s, %v; want it dropped alone", tr, err)
		}
	})
	t.Run("MaxPacketBytes", func(t *testing.T) {
		_, _, err := pgpkey.Limits{MaxPacketBytes: 16}.Apply(nil, k)
		if !errors.Is(err, pgpkey.ErrTooLarge) {
			t.Errorf("primary over the limit: err = %v, want ErrTooLarge", err)
		}
		huge := pgpkey.Packet{Tag: pgpkey.TagUserAttribute, Body: make([]byte, 5000)}
		withPhoto, err := pgpkey.Canonicalize(withGroup(k, huge))
		if err != nil {
			t.Fatal(err)
		}
		out, tr, err := pgpkey.Limits{MaxPacketBytes: 4096}.Apply(nil, withPhoto)
		if err != nil || tr.UIDs != 1 || tr.Oversized != 1 || out.Hash() != k.Hash() {
			t.Errorf("oversized attribute: %s, %v; want it dropped alone", tr, err)
		}
	})
	t.Run("MaxSigs", func(t *testing.T) {
		total, _ := countSigs(k)
		out, tr, err := pgpkey.Limits{MaxSigs: total - 2}.Apply(nil, k)
		if err != nil || tr.Sigs != 2 {
			t.Fatalf("MaxSigs: %s, %v; want 2 dropped", tr, err)
		}
		if got, _ := countSigs(out); got != total-2 {
			t.Errorf("kept %d signatures, want %d", got, total-2)
		}
	})
	t.Run("MaxKeyBytes", func(t *testing.T) {
		_, flooded := floodedKey(t, 24, 300)
		lim := pgpkey.Limits{MaxKeyBytes: 20_000, MaxCertsPerUID: -1}
		out, tr, err := lim.Apply(nil, flooded)
		if err != nil || !tr.Changed() || out.MarshalSize() > 20_000 {
			t.Errorf("MaxKeyBytes: %d bytes, %s, %v", out.MarshalSize(), tr, err)
		}
	})
}

func flatten(k *pgpkey.Key) []pgpkey.Packet {
	pkts := []pgpkey.Packet{k.Primary}
	pkts = append(pkts, k.DirectSigs...)
	for _, gs := range [][]pgpkey.Group{k.UIDs, k.Subkeys} {
		for _, g := range gs {
			pkts = append(pkts, g.Packet)
			pkts = append(pkts, g.Sigs...)
		}
	}
	return pkts
}

// withGroup returns k's packets with a user ID or attribute packet (and no
// signature) inserted before the first user ID.
func withGroup(k *pgpkey.Key, uid pgpkey.Packet) []pgpkey.Packet {
	pkts := []pgpkey.Packet{k.Primary}
	pkts = append(pkts, k.DirectSigs...)
	pkts = append(pkts, uid)
	return append(pkts, flatten(k)[1+len(k.DirectSigs):]...)
}

// FuzzLimits checks the policy on arbitrary keys with small limits: no
// panic; the result is a subset of the input, within the limits, stable
// under a second Apply, and a superset of nothing stored is never needed.
func FuzzLimits(f *testing.F) {
	addSeeds(f)
	_, flooded := floodedKey(f, 25, 40)
	f.Add(flooded.Marshal())
	lim := pgpkey.Limits{MaxKeyBytes: 4096, MaxPacketBytes: 512, MaxSigBytes: 256, MaxUIDs: 2, MaxSubkeys: 2, MaxSigs: 8, MaxCertsPerUID: 3}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := pgpkey.NewReader(bytes.NewReader(data))
		for range 4 {
			raw, err := r.Next()
			if err != nil {
				return
			}
			k, err := pgpkey.ParseKey(raw)
			if err != nil {
				continue
			}
			out, _, err := lim.Apply(nil, k)
			if err != nil {
				if !errors.Is(err, pgpkey.ErrTooLarge) {
					t.Fatalf("Apply error %v does not wrap ErrTooLarge", err)
				}
				continue
			}
			if !isSubset(out, k) {
				t.Fatal("Apply added packets")
			}
			total, _ := countSigs(out)
			if total > lim.MaxSigs || len(out.UIDs) > lim.MaxUIDs || len(out.Subkeys) > lim.MaxSubkeys {
				t.Fatalf("result over the limits: %d sigs, %d uids, %d subkeys", total, len(out.UIDs), len(out.Subkeys))
			}
			if int64(out.MarshalSize()) > lim.MaxKeyBytes {
				t.Fatalf("result of %d bytes over MaxKeyBytes", out.MarshalSize())
			}
			again, tr, err := lim.Apply(nil, out)
			if err != nil || tr.Changed() || again.Hash() != out.Hash() {
				t.Fatalf("second Apply changed the key: %s, %v", tr, err)
			}
			// Updating a stored key never exceeds the signature budget.
			merged := pgpkey.Merge(out, k)
			upd, _, err := lim.Apply(out, k)
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			if m := pgpkey.Merge(out, upd); !merged.Contains(m) {
				t.Fatal("update added packets")
			} else if total, _ := countSigs(m); total > lim.MaxSigs {
				t.Fatalf("stored+update holds %d signatures, limit %d", total, lim.MaxSigs)
			}
		}
	})
}
