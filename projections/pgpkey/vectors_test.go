package pgpkey_test

import (
	"crypto/md5"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// The synthetic vectors of keyhash.md §10.2. They isolate SKS's ordering and
// dedup rules: record order for storage, (tag, bytes) order for the hash,
// the single-occurrence quirk, and merge.

func TestVectorK1(t *testing.T) {
	in := vec(t, `(6,P) (2,04ff) (2,040000) (13,"bob") (2,0401) (13,"al") (2,0402) (14,0411) (2,0403)`)
	k := mustCanonicalize(t, in)

	t.Run("CanonicalOrder", func(t *testing.T) {
		// Direct sigs and UIDs in record order: shorter bodies first.
		want := vec(t, `(6,P) (2,04ff) (2,040000) (13,"al") (2,0402) (13,"bob") (2,0401) (14,0411) (2,0403)`)
		if got := k.Packets(); !packetsEqual(got, want) {
			t.Errorf("got %s, want %s", format(got), format(want))
		}
	})
	t.Run("HashInput", func(t *testing.T) {
		// The spec lists the MD5 input; check it against the spec's hash
		// first, so that the spec itself is consistent.
		input := strings.Join([]string{
			"00000002", "00000003", "040000",
			"00000002", "00000002", "0401",
			"00000002", "00000002", "0402",
			"00000002", "00000002", "0403",
			"00000002", "00000002", "04ff",
			"00000006", "00000006", "045f00000016",
			"0000000d", "00000002", "616c",
			"0000000d", "00000003", "626f62",
			"0000000e", "00000002", "0411",
		}, "")
		sum := md5.Sum(mustHex(t, input))
		if got, want := hex.EncodeToString(sum[:]), "025d345dac5f4cee6b3f2c535922d30f"; got != want {
			t.Fatalf("spec hash input MD5 = %s, want %s", got, want)
		}
	})
	t.Run("Hash", func(t *testing.T) {
		if got, want := k.Hash(), mustHash(t, "025d345dac5f4cee6b3f2c535922d30f"); got != want {
			t.Errorf("Hash() = %s, want %s", got, want)
		}
	})
	t.Run("MarshalRoundTrip", func(t *testing.T) {
		raws := readAllKeys(t, k.Marshal())
		if len(raws) != 1 {
			t.Fatalf("got %d keys, want 1", len(raws))
		}
		if got := raws[0].Packets; !packetsEqual(got, k.Packets()) {
			t.Errorf("re-read %s, want %s", format(got), format(k.Packets()))
		}
	})
}

func TestVectorK2(t *testing.T) {
	in := vec(t, `(6,P) (2,04aa) (2,04aa) (13,"u") (2,0401) (2,0401) (13,"v") (2,0402) (13,"v") (2,0402) (2,0403) (14,0411) (2,0404) (14,0411) (2,0404)`)

	t.Run("RawHash", func(t *testing.T) {
		if got, want := pgpkey.RawHash(in), mustHash(t, "fb546fd1b2164ba9d4bdc10f018b1467"); got != want {
			t.Errorf("RawHash = %s, want %s", got, want)
		}
	})
	k := mustCanonicalize(t, in)
	t.Run("Canonical", func(t *testing.T) {
		// Duplicate direct sig removed; "u" occurs once so its duplicate
		// 0401 is kept; "v" and the subkey occur twice so their sigs
		// become the union.
		want := vec(t, `(6,P) (2,04aa) (13,"u") (2,0401) (2,0401) (13,"v") (2,0402) (2,0403) (14,0411) (2,0404)`)
		if got := k.Packets(); !packetsEqual(got, want) {
			t.Errorf("got %s, want %s", format(got), format(want))
		}
		if got, want := k.Len(), 10; got != want {
			t.Errorf("Len() = %d, want %d", got, want)
		}
	})
	t.Run("Hash", func(t *testing.T) {
		if got, want := k.Hash(), mustHash(t, "9ac453fe13abb69608bccf7be89ba252"); got != want {
			t.Errorf("Hash() = %s, want %s", got, want)
		}
	})
	t.Run("Idempotent", func(t *testing.T) {
		k2 := mustCanonicalize(t, k.Packets())
		if !k2.Equal(k) {
			t.Errorf("Canonicalize(canonical) = %s, want %s", format(k2.Packets()), format(k.Packets()))
		}
	})
	t.Run("SelfMergeCollapsesQuirk", func(t *testing.T) {
		// Merging K2 with itself unions "u"'s list, dropping the duplicate
		// that canonicalisation kept (keyhash.md §4.5, §6). SKS never does
		// this merge because the hash is already stored, and Contains
		// follows it.
		m := pgpkey.Merge(k, k)
		if m.Hash() == k.Hash() {
			t.Errorf("Merge(K2, K2) kept the duplicate signature under \"u\"")
		}
		if !k.Contains(k) {
			t.Errorf("K2.Contains(K2) = false, want true")
		}
	})
}

func TestVectorK3(t *testing.T) {
	a := mustCanonicalize(t, vec(t, `(6,P) (13,"u") (2,0401)`))
	b := mustCanonicalize(t, vec(t, `(6,P) (13,"u") (2,0402) (13,"w") (2,0405) (2,0405)`))
	if got, want := a.Hash(), mustHash(t, "ef662c0192bd96582ad0f8e5069e2ff6"); got != want {
		t.Errorf("K3a hash = %s, want %s", got, want)
	}
	if got, want := b.Hash(), mustHash(t, "174f5452b4dd1896b47cc264d8849688"); got != want {
		t.Errorf("K3b hash = %s, want %s", got, want)
	}
	want := vec(t, `(6,P) (13,"u") (2,0401) (2,0402) (13,"w") (2,0405) (2,0405)`)
	wantHash := mustHash(t, "afe9550da3634bcb613503c24be1a067")
	aBefore, bBefore := a.Packets(), b.Packets()
	for _, tc := range []struct {
		name string
		x, y *pgpkey.Key
	}{{"AB", a, b}, {"BA", b, a}} {
		t.Run(tc.name, func(t *testing.T) {
			m := pgpkey.Merge(tc.x, tc.y)
			if got := m.Packets(); !packetsEqual(got, want) {
				t.Errorf("merged %s, want %s", format(got), format(want))
			}
			if got := m.Hash(); got != wantHash {
				t.Errorf("merged hash = %s, want %s", got, wantHash)
			}
			if !m.Contains(a) {
				t.Errorf("merged.Contains(K3a) = false, want true")
			}
			// Resubmitting K3b does change the merged key: "w" is then in
			// both keys, so its list becomes a set and the duplicate 0405
			// goes (keyhash.md §6). SKS would store that new version.
			if m.Contains(b) {
				t.Errorf("merged.Contains(K3b) = true, want false (the duplicate under \"w\" collapses)")
			}
			if a.Contains(m) {
				t.Errorf("K3a.Contains(merged) = true, want false")
			}
		})
	}
	if !packetsEqual(a.Packets(), aBefore) || !packetsEqual(b.Packets(), bBefore) {
		t.Errorf("Merge modified its inputs")
	}
}

func TestCanonicalizeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		packet   int
		reason   string
	}{
		{"Empty", ``, 0, "empty key"},
		{"StandaloneKeyRevocation", `(2,0420) (6,P)`, 1, "standalone revocation certificate"},
		{"StandaloneSubkeyRevocationV3", `(2,030528) (6,P)`, 1, "standalone revocation certificate"},
		{"StandaloneCertRevocation", `(2,0430)`, 1, "standalone revocation certificate"},
		{"LeadingSignature", `(2,0413) (6,P) (13,"u")`, 1, "key does not start with a public key packet (found signature)"},
		{"LeadingSignatureBadVersion", `(2,0520) (6,P)`, 1, "key starts with an unparseable signature packet"},
		{"LeadingUID", `(13,"u") (6,P)`, 1, "key does not start with a public key packet (found user ID)"},
		{"EmptyPrimary", `(6,) (13,"u")`, 1, "empty public key packet"},
		{"Version7", `(6,07) (13,"u")`, 1, "unsupported public key version 7"},
		{"Version1", `(6,01) (13,"u")`, 1, "unsupported public key version 1"},
		{"Trust", `(6,P) (13,"u") (12,00)`, 3, "unexpected trust packet in key"},
		{"Marker", `(6,P) (10,504750) (13,"u")`, 2, "unexpected marker packet in key"},
		{"SecretSubkey", `(6,P) (13,"u") (7,04)`, 3, "unexpected secret subkey packet in key"},
		{"SecondPrimary", `(6,P) (13,"u") (6,P)`, 3, "unexpected public key packet in key"},
		{"UIDAfterSubkey", `(6,P) (14,0411) (13,"u")`, 3, "user ID after a subkey"},
		{"UATAfterSubkey", `(6,P) (13,"u") (14,0411) (2,04) (17,01)`, 5, "user attribute after a subkey"},
		{"SubkeyInV3", `(6,03) (13,"u") (14,0411)`, 3, "subkey in a version 3 key"},
		{"SubkeyInV2", `(6,02) (14,0411)`, 2, "subkey in a version 2 key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in []pgpkey.Packet
			if tc.in != "" {
				in = vec(t, strings.ReplaceAll(tc.in, "(6,)", "(6,00)"))
				if strings.Contains(tc.in, "(6,)") {
					in[0].Body = nil
				}
			}
			_, err := pgpkey.Canonicalize(in)
			if err == nil {
				t.Fatalf("Canonicalize(%s) succeeded", tc.in)
			}
			pe := asParseError(t, err)
			if pe.Packet != tc.packet || pe.Reason != tc.reason || pe.Offset != -1 {
				t.Errorf("got {Packet %d, Offset %d, %q}, want {Packet %d, Offset -1, %q}",
					pe.Packet, pe.Offset, pe.Reason, tc.packet, tc.reason)
			}
		})
	}
}

func TestCanonicalizeAccepts(t *testing.T) {
	// What SKS's grammar allows beyond the obvious (keyhash.md §4.2).
	for _, tc := range []struct{ name, in string }{
		{"NoUIDs", `(6,P)`},
		{"UIDWithoutSigs", `(6,P) (13,"u") (13,"v")`},
		{"SubkeyWithoutSigs", `(6,P) (13,"u") (14,0411)`},
		{"V3WithUAT", `(6,03) (17,01) (2,03)`},
		{"V4WithV5Subkey", `(6,P) (13,"u") (14,05)`},
		{"V5", `(6,05) (13,"u") (14,05)`},
		{"V6", `(6,06) (13,"u") (14,06)`},
		{"SigBodiesUnparsed", `(6,P) (2,) (13,"u") (2,ff)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := vec(t, strings.ReplaceAll(tc.in, "(2,)", "(2,00)"))
			if _, err := pgpkey.Canonicalize(in); err != nil {
				t.Errorf("Canonicalize(%s): %v", tc.in, err)
			}
		})
	}
}

func TestCanonicalizeDoesNotModifyInput(t *testing.T) {
	in := vec(t, `(6,P) (2,04ff) (2,0400) (13,"v") (2,0402) (2,0401) (13,"v") (2,0401) (13,"u")`)
	before := format(in)
	mustCanonicalize(t, in)
	if after := format(in); after != before {
		t.Errorf("input changed from %s to %s", before, after)
	}
}

func TestUIDAttributeOrder(t *testing.T) {
	// Every UID (tag 13) before every UAT (tag 17), whatever the lengths
	// (record order compares the tag first).
	k := mustCanonicalize(t, vec(t, `(6,P) (17,01) (13,"a-much-longer-user-id") (17,0102) (13,"b")`))
	var got []string
	for _, g := range k.UIDs {
		got = append(got, format([]pgpkey.Packet{g.Packet}))
	}
	want := []string{`(13,"b")`, `(13,"a-much-longer-user-id")`, `(17,01)`, `(17,0102)`}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("groups %v, want %v", got, want)
	}
	if got := k.UserIDs(); len(got) != 2 || got[0] != "b" || got[1] != "a-much-longer-user-id" {
		t.Errorf("UserIDs() = %q", got)
	}
}
