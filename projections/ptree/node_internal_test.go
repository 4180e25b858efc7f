package ptree

import (
	"bytes"
	"testing"
)

// FuzzDecodeNode feeds arbitrary stored values to the node decoder: it must
// not panic, and whatever it accepts must encode back to the same bytes.
func FuzzDecodeNode(f *testing.F) {
	cfg := DefaultConfig()
	leaf := newEmptyLeaf(PrefixOf(ZpFromUint64(0), 2), cfg.NumSamples())
	for _, h := range [][16]byte{{0x01}, {0x02, 0xff}, {0x3f, 0x80}} {
		leaf.elems = append(leaf.elems, h)
		leaf.count++
		x := ElementFromKeyHash(h)
		for i, k := range SamplePoints(cfg.NumSamples()) {
			leaf.svalues[i] = leaf.svalues[i].Mul(k.Sub(x))
		}
	}
	internal := newEmptyLeaf(Prefix{}, cfg.NumSamples())
	internal.leaf = false
	internal.count = 300
	f.Add(uint8(2), appendNodeValue(nil, leaf))
	f.Add(uint8(0), appendNodeValue(nil, internal))
	f.Add(uint8(0), []byte{formatV1, kindLeaf, 0, 6})
	f.Add(uint8(0), append([]byte{formatV1, kindInternal, 0x80, 0x00}, appendNodeValue(nil, internal)[4:]...)) // non-minimal count
	f.Fuzz(func(t *testing.T, bits uint8, v []byte) {
		p := Prefix{}
		if bits%2 == 0 && int(bits) <= 16 {
			p = PrefixOf(ZpFromUint64(0), int(bits))
		}
		n, err := decodeNode(&cfg, p, v)
		if err != nil {
			return
		}
		if got := appendNodeValue(nil, n); !bytes.Equal(got, v) {
			t.Fatalf("decode/encode changed %x into %x", v, got)
		}
		if n.leaf && n.count != len(n.elems) {
			t.Fatalf("leaf count %d with %d elements", n.count, len(n.elems))
		}
	})
}
