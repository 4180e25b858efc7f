package wire_test

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"math/big"
	"reflect"
	"slices"
	"testing"

	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// Vectors from spec recon.md §14. They were computed with an independent
// implementation of the spec.

// z is the digest 0fa4cd2df7ede287ac0b7a608bf30faa as an element (§14.1).
var z = wire.ElementFromKeyHash([16]byte{0x0f, 0xa4, 0xcd, 0x2d, 0xf7, 0xed, 0xe2, 0x87, 0xac, 0x0b, 0x7a, 0x60, 0x8b, 0xf3, 0x0f, 0xaa})

// svaluesZ are the svalues of {z} (§14.1), decimal and wire form.
var svaluesZ = []struct{ dec, wire string }{
	{"304461306147182219836891364188539559692", "0c9fd702e2973c4133141127591d0de500"},
	{"304461306147182219836891364188539559691", "0b9fd702e2973c4133141127591d0de500"},
	{"304461306147182219836891364188539559693", "0d9fd702e2973c4133141127591d0de500"},
	{"304461306147182219836891364188539559690", "0a9fd702e2973c4133141127591d0de500"},
	{"304461306147182219836891364188539559694", "0e9fd702e2973c4133141127591d0de500"},
	{"304461306147182219836891364188539559689", "099fd702e2973c4133141127591d0de500"},
}

func elem(tb testing.TB, s string) wire.Element {
	tb.Helper()
	var e wire.Element
	if b := mustHex(tb, s); len(b) != wire.ElementSize {
		tb.Fatalf("%q is %d bytes", s, len(b))
	} else {
		copy(e[:], b)
	}
	return e
}

// leInt and leElement convert between an element's wire form and its
// numeric value (little-endian), for checking the spec's decimals. The
// codec itself gives elements no numeric meaning.
func leInt(e wire.Element) *big.Int {
	be := slices.Clone(e[:])
	slices.Reverse(be)
	return new(big.Int).SetBytes(be)
}

func leElement(tb testing.TB, dec string) wire.Element {
	tb.Helper()
	n, ok := new(big.Int).SetString(dec, 10)
	if !ok || n.BitLen() > 8*wire.ElementSize {
		tb.Fatalf("bad decimal %q", dec)
	}
	var e wire.Element
	n.FillBytes(e[:])
	slices.Reverse(e[:])
	return e
}

// TestElementVector is §3.2/§14.1: a key hash maps to its 16 bytes then 00,
// read little-endian.
func TestElementVector(t *testing.T) {
	if got, want := hex.EncodeToString(z[:]), "0fa4cd2df7ede287ac0b7a608bf30faa00"; got != want {
		t.Errorf("wire form %s, want %s", got, want)
	}
	if got, want := leInt(z).String(), "226051583404420102668236156164039877647"; got != want {
		t.Errorf("value %s, want %s", got, want)
	}
	if got, want := z.String(), "0FA4CD2DF7EDE287AC0B7A608BF30FAA00"; got != want {
		t.Errorf("String %s, want %s", got, want)
	}
	h, ok := z.KeyHash()
	if !ok || wire.ElementFromKeyHash(h) != z {
		t.Errorf("KeyHash round trip: %x %v", h, ok)
	}
	for i, sv := range svaluesZ {
		if got := leElement(t, sv.dec); got != elem(t, sv.wire) {
			t.Errorf("svalue %d: %s encodes as %x, want %s", i, sv.dec, got[:], sv.wire)
		}
	}
	// An svalue is a field element, not a key hash.
	if _, ok := elem(t, "0100000000000000000000000000000001").KeyHash(); ok {
		t.Error("element with high byte 01 reported as a key hash")
	}
}

// TestFrameVectors is §14.2: complete frames, both directions.
func TestFrameVectors(t *testing.T) {
	var samples []wire.Element
	for _, sv := range svaluesZ {
		samples = append(samples, elem(t, sv.wire))
	}
	polyHex := "00000077 00 00000000 00000000 00000001 00000006"
	for _, sv := range svaluesZ {
		polyHex += sv.wire
	}
	p0000, err := wire.ParsePrefix("0000")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := wire.DefaultConfig().Message()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		msg  wire.Message
		hex  string
	}{
		{"Config", cfg, "0000007e0a000000050000000a6269747175616e74756d00000004000000020000000766696c746572730000001b796d696e736b792e64656475702c796d696e736b792e6d65726765000000096874747020706f72740000000400002c6b000000046d62617200000004000000050000000776657273696f6e00000005312e312e36"},
		{"ReconRqstPoly", &wire.ReconRqstPoly{Size: 1, Samples: samples}, polyHex},
		{"ReconRqstFull", &wire.ReconRqstFull{Prefix: p0000, Set: []wire.Element{z}}, "0000001f 01 00000004 00000001 00 00000001 0fa4cd2df7ede287ac0b7a608bf30faa00"},
		{"Elements", &wire.Elements{Set: []wire.Element{z}}, "00000016 02 00000001 0fa4cd2df7ede287ac0b7a608bf30faa00"},
		{"FullElements", &wire.FullElements{Set: []wire.Element{}}, "00000005 03 00000000"},
		{"SyncFail", &wire.SyncFail{}, "00000001 04"},
		{"Done", &wire.Done{}, "00000001 05"},
		{"Flush", &wire.Flush{}, "00000001 06"},
		{"Error", &wire.ErrorMsg{Text: "oops"}, "00000009 07 00000004 6f6f7073"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := mustHex(t, tc.hex)
			got, err := wire.AppendMessage(nil, tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("AppendMessage:\n got %x\nwant %x", got, want)
			}
			var buf bytes.Buffer
			bw := bufio.NewWriter(&buf)
			if err := wire.WriteMessage(bw, tc.msg); err != nil {
				t.Fatal(err)
			}
			bw.Flush()
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("WriteMessage:\n got %x\nwant %x", buf.Bytes(), want)
			}
			m, err := readOne(t, want, wire.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, tc.msg) {
				t.Errorf("decoded %#v, want %#v", m, tc.msg)
			}
		})
	}
}

// TestVerdictVectors is the bare-string part of §14.2.
func TestVerdictVectors(t *testing.T) {
	for _, tc := range []struct {
		v   wire.Verdict
		hex string
	}{
		{wire.Verdict{Passed: true}, "00000006 706173736564"},
		{wire.Verdict{Reason: "mbar values do not match"}, "00000006 6661696c6564 00000018 6d6261722076616c75657320646f206e6f74206d61746368"},
	} {
		want := mustHex(t, tc.hex)
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		if err := wire.WriteVerdict(bw, tc.v); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("WriteVerdict(%+v):\n got %x\nwant %x", tc.v, buf.Bytes(), want)
		}
		got, err := wire.ReadVerdict(bufio.NewReader(bytes.NewReader(want)), wire.Limits{})
		if err != nil || got != tc.v {
			t.Errorf("ReadVerdict = %+v, %v; want %+v", got, err, tc.v)
		}
		if err := got.Err(); (err == nil) != tc.v.Passed {
			t.Errorf("Verdict.Err() = %v", err)
		}
	}
}

// TestBitstringVectors is §2.1's bitstring table and §5.3's example: the
// depth-3 prefix of z is 000011, and z's child indices at depths 0..7 are
// 0 0 3 3 2 2 1 0.
func TestBitstringVectors(t *testing.T) {
	for _, tc := range []struct{ bits, hex string }{
		{"", "00000000 00000000"},
		{"01", "00000002 00000001 40"},
		{"000011", "00000006 00000001 0c"},
		{"0000110111", "0000000a 00000002 0dc0"},
	} {
		p, err := wire.ParsePrefix(tc.bits)
		if err != nil {
			t.Fatal(err)
		}
		frame, err := wire.AppendMessage(nil, &wire.ReconRqstFull{Prefix: p})
		if err != nil {
			t.Fatal(err)
		}
		want := mustHex(t, tc.hex)
		if got := frame[5 : 5+len(want)]; !bytes.Equal(got, want) {
			t.Errorf("prefix %q encodes as %x, want %x", tc.bits, got, want)
		}
		if p.String() != tc.bits {
			t.Errorf("String() = %q, want %q", p.String(), tc.bits)
		}
	}
	if got := wire.PrefixOf(z, 6).String(); got != "000011" {
		t.Errorf("PrefixOf(z, 6) = %q", got)
	}
	var idx []int
	for d := 0; d < 8; d++ {
		p := wire.PrefixOf(z, 2*d+2)
		idx = append(idx, 2*p.Bit(2*d)+p.Bit(2*d+1))
	}
	if want := []int{0, 0, 3, 3, 2, 2, 1, 0}; !slices.Equal(idx, want) {
		t.Errorf("child indices %v, want %v", idx, want)
	}
}

// TestDecodeExampleMessages carries §14.3's sets over the wire: the
// requester's ReconRqst_Poly with the remote svalues, and the responder's
// reply Elements{alice}. The decode itself belongs to projections/ptree;
// here the numbers must survive the codec exactly.
func TestDecodeExampleMessages(t *testing.T) {
	names := map[string]string{
		"alice": "6384e2b2184bcbf58eccf10ca7a6563c",
		"bob":   "9f9d51bc70ef21ca5c14f307980a29d8",
		"carol": "a9a0198010a6073db96434f6cc5f22a8",
		"dave":  "1610838743cc90e3e4fdda748282d9b8",
	}
	for name, want := range names {
		if got := md5.Sum([]byte(name)); hex.EncodeToString(got[:]) != want {
			t.Errorf("md5(%s) = %x, spec says %s", name, got, want)
		}
	}
	remote := []string{
		"10220964554853745784352641260506489758",
		"76439942223919541709116733068124241576",
		"22495740991614629544742712744990356777",
		"221152673998812017319034988167843612225",
		"113264271534202192990286947521575842639",
		"444359159879531172614107406559664601699",
	}
	rq := &wire.ReconRqstPoly{Size: 3}
	for _, d := range remote {
		rq.Samples = append(rq.Samples, leElement(t, d))
	}
	frame, err := wire.AppendMessage(nil, rq)
	if err != nil {
		t.Fatal(err)
	}
	if len(frame) != 4+0x77 {
		t.Errorf("ReconRqst_Poly frame is %d bytes, want %d", len(frame), 4+0x77)
	}
	m, err := readOne(t, frame, wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	got := m.(*wire.ReconRqstPoly)
	if got.Size != 3 || got.Prefix.Len() != 0 || len(got.Samples) != 6 {
		t.Fatalf("decoded %+v", got)
	}
	for i, s := range got.Samples {
		if leInt(s).String() != remote[i] {
			t.Errorf("sample %d = %s, want %s", i, leInt(s), remote[i])
		}
	}

	alice := wire.ElementFromKeyHash(md5.Sum([]byte("alice")))
	reply, err := wire.AppendMessage(nil, &wire.Elements{Set: []wire.Element{alice}})
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, "00000016 02 00000001 6384e2b2184bcbf58eccf10ca7a6563c00"); !bytes.Equal(reply, want) {
		t.Errorf("Elements{alice} = %x, want %x", reply, want)
	}
}
