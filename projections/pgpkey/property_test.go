package pgpkey_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// keyGen makes random keys in the shape the grammar allows. Bodies come
// from small alphabets so that duplicates, shared prefixes and bodies of
// different lengths (record order versus hash order) are common.
type keyGen struct {
	rng *rand.Rand
}

func newKeyGen(seed uint64) *keyGen {
	return &keyGen{rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
}

func (g *keyGen) body(first byte, maxLen int) []byte {
	n := 1 + g.rng.IntN(maxLen)
	b := make([]byte, n)
	b[0] = first
	for i := 1; i < n; i++ {
		b[i] = []byte{0x00, 0x01, 0x7f, 0xff}[g.rng.IntN(4)]
	}
	return b
}

func (g *keyGen) sigs(max int) []pgpkey.Packet {
	n := g.rng.IntN(max + 1)
	out := make([]pgpkey.Packet, n)
	for i := range out {
		out[i] = pgpkey.Packet{Tag: pgpkey.TagSignature, Body: g.body(4, 3)}
	}
	return out
}

// group is one (packet, sigs) pair of an input key.
type group struct {
	p    pgpkey.Packet
	sigs []pgpkey.Packet
}

// rawKey is an input key before canonicalisation.
type rawKey struct {
	primary pgpkey.Packet
	direct  []pgpkey.Packet
	uids    []group
	subkeys []group
}

func (g *keyGen) key() rawKey {
	k := rawKey{
		primary: pgpkey.Packet{Tag: pgpkey.TagPublicKey, Body: mustHexConst(vectorP)},
		direct:  g.sigs(3),
	}
	for range g.rng.IntN(5) {
		p := pgpkey.Packet{Tag: pgpkey.TagUserID, Body: []byte{"abc"[g.rng.IntN(3)]}}
		if g.rng.IntN(4) == 0 {
			p = pgpkey.Packet{Tag: pgpkey.TagUserAttribute, Body: g.body(1, 2)}
		} else if g.rng.IntN(2) == 0 {
			p.Body = append(p.Body, 'x')
		}
		k.uids = append(k.uids, group{p, g.sigs(3)})
	}
	for range g.rng.IntN(4) {
		p := pgpkey.Packet{Tag: pgpkey.TagPublicSubkey, Body: g.body(4, 2)}
		k.subkeys = append(k.subkeys, group{p, g.sigs(2)})
	}
	return k
}

func (k rawKey) packets() []pgpkey.Packet {
	out := []pgpkey.Packet{k.primary}
	out = append(out, k.direct...)
	for _, gs := range [][]group{k.uids, k.subkeys} {
		for _, g := range gs {
			out = append(out, g.p)
			out = append(out, g.sigs...)
		}
	}
	return out
}

// shuffled returns k with its direct sigs and its groups in random order.
func (k rawKey) shuffled(rng *rand.Rand) rawKey {
	s := rawKey{
		primary: k.primary,
		direct:  slices.Clone(k.direct),
		uids:    slices.Clone(k.uids),
		subkeys: slices.Clone(k.subkeys),
	}
	rng.Shuffle(len(s.direct), func(i, j int) { s.direct[i], s.direct[j] = s.direct[j], s.direct[i] })
	rng.Shuffle(len(s.uids), func(i, j int) { s.uids[i], s.uids[j] = s.uids[j], s.uids[i] })
	rng.Shuffle(len(s.subkeys), func(i, j int) { s.subkeys[i], s.subkeys[j] = s.subkeys[j], s.subkeys[i] })
	return s
}

func mustHexConst(s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		b[i] = unhex(s[2*i])<<4 | unhex(s[2*i+1])
	}
	return b
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// hasDuplicateSigs reports whether a group of k lists a signature twice,
// the case where SKS's merge is not idempotent (keyhash.md §4.5).
func hasDuplicateSigs(k *pgpkey.Key) bool {
	for _, gs := range [][]pgpkey.Group{k.UIDs, k.Subkeys} {
		for _, g := range gs {
			for i := range g.Sigs {
				for j := i + 1; j < len(g.Sigs); j++ {
					if g.Sigs[i].Equal(g.Sigs[j]) {
						return true
					}
				}
			}
		}
	}
	return false
}

const propertyRounds = 3000

func TestPropertyGroupOrderIndependent(t *testing.T) {
	g := newKeyGen(1)
	for i := range propertyRounds {
		in := g.key()
		k := mustCanonicalize(t, in.packets())
		s := mustCanonicalize(t, in.shuffled(g.rng).packets())
		// Reordering groups and direct sigs changes nothing at all: groups
		// and direct sigs are sorted, unions are sorted, and a
		// single-occurrence group keeps its own list.
		if !s.Equal(k) {
			t.Fatalf("round %d: input %s\nshuffled gives %s\nwant %s", i, format(in.packets()), format(s.Packets()), format(k.Packets()))
		}
		if s.Hash() != k.Hash() {
			t.Fatalf("round %d: hash depends on group order", i)
		}
		if got := pgpkey.RawHash(k.Packets()); got != k.Hash() {
			t.Fatalf("round %d: RawHash(Packets()) = %s, Hash() = %s", i, got, k.Hash())
		}
		// Canonical form is a fixed point.
		if again := mustCanonicalize(t, k.Packets()); !again.Equal(k) {
			t.Fatalf("round %d: Canonicalize is not idempotent on %s", i, format(k.Packets()))
		}
	}
}

func TestPropertySigOrderWithinGroup(t *testing.T) {
	// Reordering the signatures of a group changes the stored order of a
	// single-occurrence group but never the hash.
	g := newKeyGen(2)
	for i := range propertyRounds {
		in := g.key()
		k := mustCanonicalize(t, in.packets())
		for _, gs := range [][]group{in.uids, in.subkeys} {
			for j := range gs {
				s := slices.Clone(gs[j].sigs)
				g.rng.Shuffle(len(s), func(a, b int) { s[a], s[b] = s[b], s[a] })
				gs[j].sigs = s
			}
		}
		if got := mustCanonicalize(t, in.packets()).Hash(); got != k.Hash() {
			t.Fatalf("round %d: hash depends on signature order", i)
		}
	}
}

func TestPropertyMerge(t *testing.T) {
	g := newKeyGen(3)
	for i := range propertyRounds {
		a := mustCanonicalize(t, g.key().packets())
		b := mustCanonicalize(t, g.key().packets())
		ab, ba := pgpkey.Merge(a, b), pgpkey.Merge(b, a)
		if !ab.Equal(ba) {
			t.Fatalf("round %d: Merge(A,B) = %s\nMerge(B,A) = %s", i, format(ab.Packets()), format(ba.Packets()))
		}
		if ab.Hash() != ba.Hash() {
			t.Fatalf("round %d: Merge(A,B) and Merge(B,A) hash differently", i)
		}

		// Merge(K, K) == K exactly when no group lists a signature twice.
		if got, idem := pgpkey.Merge(a, a).Hash() == a.Hash(), !hasDuplicateSigs(a); got != idem {
			t.Fatalf("round %d: Merge(K,K) hash equal = %v, want %v for %s", i, got, idem, format(a.Packets()))
		}
		if !a.Contains(a) {
			t.Fatalf("round %d: K.Contains(K) = false", i)
		}

		// A merged key contains each input without duplicate signatures.
		for _, in := range []*pgpkey.Key{a, b} {
			if !hasDuplicateSigs(in) && !ab.Contains(in) {
				t.Fatalf("round %d: Merge(A,B) does not contain %s", i, format(in.Packets()))
			}
		}
		// A key with one more signature is not contained.
		extra := pgpkey.Packet{Tag: pgpkey.TagSignature, Body: []byte{4, 0xee, byte(i), byte(i >> 8)}}
		bigger := pgpkey.Merge(a, &pgpkey.Key{Primary: a.Primary, DirectSigs: []pgpkey.Packet{extra}})
		if a.Contains(bigger) {
			t.Fatalf("round %d: K.Contains(K + sig) = true", i)
		}
		if !hasDuplicateSigs(a) && !bigger.Contains(a) {
			t.Fatalf("round %d: (K + sig).Contains(K) = false", i)
		}

		// Merge result survives Marshal → Reader → Canonicalize.
		raws := readAllKeys(t, ab.Marshal())
		if len(raws) != 1 {
			t.Fatalf("round %d: Marshal gave %d keys", i, len(raws))
		}
		back := mustCanonicalize(t, raws[0].Packets)
		if back.Hash() != ab.Hash() {
			t.Fatalf("round %d: round trip changed the hash", i)
		}
	}
}

func TestMergeDifferentPrimaryPanics(t *testing.T) {
	a := mustCanonicalize(t, vec(t, `(6,P) (13,"u")`))
	b := mustCanonicalize(t, vec(t, `(6,045f00000017) (13,"u")`))
	if a.SamePrimary(b) {
		t.Fatal("SamePrimary = true for different primaries")
	}
	if a.Contains(b) {
		t.Error("Contains = true for a different primary")
	}
	defer func() {
		if recover() == nil {
			t.Error("Merge of different primaries did not panic")
		}
	}()
	pgpkey.Merge(a, b)
}

// TestContainsWithDuplicateSignature pins what Contains means for a key
// that holds one signature twice under its only user ID, as SKS's
// canonical form keeps it (keyhash.md §4.3): the same key again changes
// nothing, but any other upload of it — even one with a packet fewer —
// merges into a key without the duplicate, a new hash, so it is novel and
// SKS would store the merge too. (FuzzLimits once took Contains for a
// subset test and failed on such a key.)
func TestContainsWithDuplicateSignature(t *testing.T) {
	primary := pgpkey.Packet{Tag: pgpkey.TagPublicKey, Body: []byte{4, 0}}
	uid := pgpkey.Packet{Tag: pgpkey.TagUserID, Body: []byte("u")}
	a, b := pgpkey.Packet{Tag: pgpkey.TagSignature, Body: []byte{4, 1}}, pgpkey.Packet{Tag: pgpkey.TagSignature, Body: []byte{4, 2}}
	dup, err := pgpkey.Canonicalize([]pgpkey.Packet{primary, uid, a, b, b})
	if err != nil {
		t.Fatal(err)
	}
	if len(dup.UIDs) != 1 || len(dup.UIDs[0].Sigs) != 3 {
		t.Fatalf("canonical form lost the duplicate: %d user IDs, %d sigs", len(dup.UIDs), len(dup.UIDs[0].Sigs))
	}
	fewer, err := pgpkey.Canonicalize([]pgpkey.Packet{primary, uid, a, b})
	if err != nil {
		t.Fatal(err)
	}
	if !dup.Contains(dup) {
		t.Error("a key with a duplicate signature does not contain itself")
	}
	if dup.Contains(fewer) {
		t.Error("merging the key without the duplicate changes nothing, yet the merge drops it")
	}
	if m := pgpkey.Merge(dup, fewer); m.Hash() != fewer.Hash() {
		t.Errorf("merge hash %s, want the key without the duplicate (%s)", m.Hash(), fewer.Hash())
	}
	if !fewer.Contains(dup) {
		t.Error("the key without the duplicate does not contain the one with it")
	}
}
