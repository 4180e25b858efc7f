package wire_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

func TestNewPrefix(t *testing.T) {
	for _, tc := range []struct {
		nbits int
		b     []byte
		want  string // String(), or "" with ok false
		ok    bool
	}{
		{0, nil, "", true},
		{0, []byte{}, "", true},
		{2, []byte{0x40}, "01", true},
		{8, []byte{0xa5}, "10100101", true},
		{10, []byte{0x0d, 0xc0}, "0000110111", true},
		{136, make([]byte, 17), "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000", true},
		{-1, nil, "", false},
		{137, make([]byte, 18), "", false},
		{2, nil, "", false},
		{2, []byte{0x40, 0}, "", false},
		{2, []byte{0x60}, "", false}, // junk in an unused bit
		{0, []byte{0}, "", false},
	} {
		p, err := wire.NewPrefix(tc.nbits, tc.b)
		if ok := err == nil; ok != tc.ok {
			t.Errorf("NewPrefix(%d, %x) error = %v, want ok %v", tc.nbits, tc.b, err, tc.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, wire.ErrMalformed) {
				t.Errorf("NewPrefix(%d, %x) error %v does not wrap ErrMalformed", tc.nbits, tc.b, err)
			}
			continue
		}
		if p.String() != tc.want || p.Len() != tc.nbits || !bytes.Equal(p.Bytes(), tc.b) && len(tc.b) > 0 {
			t.Errorf("NewPrefix(%d, %x) = %q (%d bits, %x)", tc.nbits, tc.b, p, p.Len(), p.Bytes())
		}
		q, err := wire.ParsePrefix(tc.want)
		if err != nil || q != p {
			t.Errorf("ParsePrefix(%q) = %v, %v; want it equal to NewPrefix's", tc.want, q, err)
		}
	}
	for _, bad := range []string{"2", "01x", string(make([]byte, 137))} {
		if _, err := wire.ParsePrefix(bad); !errors.Is(err, wire.ErrMalformed) {
			t.Errorf("ParsePrefix(%q) error = %v", bad, err)
		}
	}
}

func TestPrefixAppendAndContains(t *testing.T) {
	root := wire.Prefix{}
	seen := map[wire.Prefix]bool{}
	for child := range 4 {
		p := root.AppendBits(uint64(child), 2)
		seen[p] = true
		if want := []string{"00", "01", "10", "11"}[child]; p.String() != want {
			t.Errorf("child %d of the root is %q, want %q", child, p, want)
		}
	}
	if len(seen) != 4 {
		t.Errorf("children are not distinct map keys: %v", seen)
	}
	p := wire.Prefix{}
	for d := range 8 {
		p = p.AppendBits(uint64([]int{0, 0, 3, 3, 2, 2, 1, 0}[d]), 2)
		if !p.Contains(z) {
			t.Errorf("depth %d prefix %q does not contain z", d+1, p)
		}
		if p != wire.PrefixOf(z, 2*(d+1)) {
			t.Errorf("depth %d: AppendBits gives %q, PrefixOf %q", d+1, p, wire.PrefixOf(z, 2*(d+1)))
		}
	}
	if wire.PrefixOf(z, 3).AppendBits(1, 1).Contains(z) {
		t.Error("0001 contains z, whose 4th bit is 0")
	}
	if !wire.PrefixOf(z, wire.MaxPrefixBits).Contains(z) || !root.Contains(z) {
		t.Error("full-length prefix or root does not contain z")
	}
	mustPanic(t, "AppendBits past MaxPrefixBits", func() { wire.PrefixOf(z, 130).AppendBits(0, 7) })
	mustPanic(t, "Bit out of range", func() { root.Bit(0) })
	mustPanic(t, "PrefixOf too long", func() { wire.PrefixOf(z, 137) })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func TestMsgTypeString(t *testing.T) {
	for typ, want := range map[wire.MsgType]string{
		wire.MsgReconRqstPoly: "ReconRqst_Poly",
		wire.MsgConfig:        "Config",
		wire.MsgError:         "Error",
		11:                    "MsgType(11)",
	} {
		if typ.String() != want {
			t.Errorf("%d.String() = %q, want %q", uint8(typ), typ, want)
		}
	}
}

// TestWriteErrors checks the encoder's refusals: nothing is written.
func TestWriteErrors(t *testing.T) {
	if _, err := wire.AppendMessage(nil, nil); !errors.Is(err, wire.ErrInvalidMessage) {
		t.Errorf("AppendMessage(nil) = %v", err)
	}
}
