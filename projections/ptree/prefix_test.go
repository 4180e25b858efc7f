package ptree_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

func mustPrefix(tb testing.TB, s string) ptree.Prefix {
	tb.Helper()
	p, err := ptree.ParsePrefix(s)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestPrefixWire checks the bitstring examples of spec recon.md §2.1.
func TestPrefixWire(t *testing.T) {
	for _, tc := range []struct {
		bits  string
		nbits int
		hex   string
	}{
		{"", 0, ""},
		{"000011", 6, "0c"},
		{"0000110111", 10, "0dc0"},
		{"11111111", 8, "ff"},
		{"1", 1, "80"},
	} {
		t.Run(tc.bits, func(t *testing.T) {
			p := mustPrefix(t, tc.bits)
			if got, want := p.Bits(), tc.nbits; got != want {
				t.Errorf("Bits() = %d, want %d", got, want)
			}
			if got, want := hex.EncodeToString(p.Bytes()), tc.hex; got != want {
				t.Errorf("Bytes() = %s, want %s", got, want)
			}
			if got, want := p.String(), tc.bits; got != want {
				t.Errorf("String() = %q, want %q", got, want)
			}
			b, _ := hex.DecodeString(tc.hex)
			back, err := ptree.PrefixFromWire(tc.nbits, b)
			if err != nil || back != p {
				t.Errorf("PrefixFromWire = %q, %v; want %q", back, err, p)
			}
		})
	}
	if (ptree.Prefix{}) != mustPrefix(t, "") {
		t.Errorf("zero Prefix is not the root")
	}
}

func TestPrefixFromWireErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nbits int
		b     []byte
	}{
		{"negative", -1, nil},
		{"too long", ptree.MaxPrefixBits + 1, make([]byte, 18)},
		{"short bytes", 9, []byte{0}},
		{"extra bytes", 8, []byte{0, 0}},
		{"bytes for empty", 0, []byte{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ptree.PrefixFromWire(tc.nbits, tc.b); !errors.Is(err, ptree.ErrBadPrefix) {
				t.Errorf("err = %v, want ErrBadPrefix", err)
			}
		})
	}
	// Padding bits are ignored, as SKS only reads the first nbits bits.
	p, err := ptree.PrefixFromWire(6, []byte{0x0f})
	if err != nil || p != mustPrefix(t, "000011") {
		t.Errorf("PrefixFromWire(6, 0f) = %q, %v; want 000011", p, err)
	}
	if _, err := ptree.ParsePrefix("0102"); !errors.Is(err, ptree.ErrBadPrefix) {
		t.Errorf("ParsePrefix(0102) err = %v", err)
	}
}

// TestPrefixChildIndices checks spec recon.md §5.3: digest 0fa4… goes to
// children 0,0,3,3,2,2,1,0 and its depth-3 node is 000011, which is
// "00000006 00000001 0c" on the wire.
func TestPrefixChildIndices(t *testing.T) {
	var h [16]byte
	hex.Decode(h[:], []byte("0fa4cd2df7ede287ac0b7a608bf30faa"))
	z := ptree.ElementFromKeyHash(h)

	var p ptree.Prefix
	for d, idx := range []int{0, 0, 3, 3, 2, 2, 1, 0} {
		p = p.Child(idx, 2)
		if got := ptree.PrefixOf(z, 2*(d+1)); got != p {
			t.Fatalf("depth %d: PrefixOf = %q, Child chain = %q", d+1, got, p)
		}
		if !p.Matches(z) {
			t.Fatalf("%q does not match its element", p)
		}
	}
	if got, want := p.String(), "0000111110100100"; got != want {
		t.Errorf("depth-8 prefix = %s, want %s", got, want)
	}
	d3 := ptree.PrefixOf(z, 6)
	if got, want := d3.String(), "000011"; got != want {
		t.Errorf("depth-3 prefix = %s, want %s", got, want)
	}
	if d3.Bits() != 6 || !bytes.Equal(d3.Bytes(), []byte{0x0c}) {
		t.Errorf("depth-3 wire = %d %x, want 6 0c", d3.Bits(), d3.Bytes())
	}
	if mustPrefix(t, "000010").Matches(z) || mustPrefix(t, "1").Matches(z) {
		t.Errorf("wrong prefix matches")
	}
	if !(ptree.Prefix{}).Matches(z) {
		t.Errorf("root does not match")
	}
}

func FuzzPrefixFromWire(f *testing.F) {
	f.Add(0, []byte{})
	f.Add(6, []byte{0x0c})
	f.Add(10, []byte{0x0d, 0xc0})
	f.Add(6, []byte{0x0f})
	f.Add(136, bytes.Repeat([]byte{0xff}, 17))
	f.Add(137, bytes.Repeat([]byte{0xff}, 18))
	f.Fuzz(func(t *testing.T, nbits int, b []byte) {
		p, err := ptree.PrefixFromWire(nbits, b)
		if err != nil {
			if !errors.Is(err, ptree.ErrBadPrefix) {
				t.Fatalf("error %v does not wrap ErrBadPrefix", err)
			}
			return
		}
		if p.Bits() != nbits || len(p.Bytes()) != len(b) {
			t.Fatalf("Bits %d Bytes %x from %d %x", p.Bits(), p.Bytes(), nbits, b)
		}
		for i := 0; i < nbits; i++ {
			if want := int(b[i/8]>>(7-i%8)) & 1; p.Bit(i) != want {
				t.Fatalf("bit %d = %d, want %d", i, p.Bit(i), want)
			}
		}
		again, err := ptree.PrefixFromWire(p.Bits(), p.Bytes())
		if err != nil || again != p {
			t.Fatalf("round trip: %q, %v; want %q", again, err, p)
		}
		parsed, err := ptree.ParsePrefix(p.String())
		if err != nil || parsed != p {
			t.Fatalf("ParsePrefix(String()): %q, %v", parsed, err)
		}
	})
}
