package wire_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// TestReadMessageErrors feeds ReadMessage hostile and broken frames.
func TestReadMessageErrors(t *testing.T) {
	small := wire.Limits{MaxFrameBytes: 64, MaxSetFrameBytes: 200, MaxElements: 3, MaxStringBytes: 8, MaxConfigPairs: 2}
	for _, tc := range []struct {
		name string
		hex  string
		lim  wire.Limits
		want error
	}{
		{"empty input", "", wire.Limits{}, io.EOF},
		{"cut in length", "000000", wire.Limits{}, io.ErrUnexpectedEOF},
		{"cut before type", "00000005", wire.Limits{}, io.ErrUnexpectedEOF},
		{"cut in body", "00000005 02 000000", wire.Limits{}, io.ErrUnexpectedEOF},
		{"cut in elements", "00000016 02 00000001 0fa4cd2df7ede287ac0b7a608bf30f", wire.Limits{}, io.ErrUnexpectedEOF},
		{"cut in empty type body", "00000003 05 00", wire.Limits{}, io.ErrUnexpectedEOF},
		{"length 0", "00000000", wire.Limits{}, wire.ErrMalformed},
		{"unknown type 11", "00000001 0b", wire.Limits{}, wire.ErrUnknownType},
		{"unknown type 255", "00000001 ff", wire.Limits{}, wire.ErrUnknownType},
		{"bare verdict read as a frame", "00000006 706173736564", wire.Limits{}, wire.ErrUnknownType},
		{"absurd Elements length", "ffffffff 02", wire.Limits{}, wire.ErrTooLarge},
		{"absurd Config length", "01000001 0a", wire.Limits{}, wire.ErrTooLarge},
		{"absurd Error length", "ffffffff 07", wire.Limits{}, wire.ErrTooLarge},
		{"absurd SyncFail length", "ffffffff 04", wire.Limits{}, wire.ErrTooLarge},
		{"frame over small limit", "00000041 0a", small, wire.ErrTooLarge},
		{"set frame over small limit", "000000c9 02", small, wire.ErrTooLarge},
		{"absurd count", "00000005 02 ffffffff", wire.Limits{}, wire.ErrTooLarge},
		{"count past frame", "00000009 02 00000003 00000000", wire.Limits{}, wire.ErrMalformed},
		{"oversized set", "00000049 02 00000004" + "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000", small, wire.ErrTooLarge},
		{"count of empty body", "00000001 02", wire.Limits{}, wire.ErrMalformed},
		{"absurd string", "00000009 07 ffffff00 6f6f7073", wire.Limits{}, wire.ErrTooLarge},
		{"string over small limit", "0000000e 07 00000009 6f6f70736f6f70736f", small, wire.ErrTooLarge},
		{"string past frame", "00000009 07 0000000a 6f6f7073", wire.Limits{}, wire.ErrMalformed},
		{"absurd pair count", "00000005 0a 00ffffff", wire.Limits{}, wire.ErrTooLarge},
		{"pairs past frame", "00000009 0a 00000002 00000000", wire.Limits{}, wire.ErrMalformed},
		{"pair count over small limit", "00000005 0a 00000003", small, wire.ErrTooLarge},
		{"prefix too long", "0000000d 01 00000089 00000012 00000000", wire.Limits{}, wire.ErrMalformed},
		{"prefix byte count wrong", "0000000f 01 00000003 00000002 e000 00000000", wire.Limits{}, wire.ErrMalformed},
		{"prefix absurd byte count", "0000000e 01 00000003 ffffffff e0 00000000", wire.Limits{}, wire.ErrMalformed},
		{"poly cut in samples", "00000022 00 00000000 00000000 00000001 00000006 0c9fd702e2973c4133141127591d0de500", wire.Limits{}, wire.ErrMalformed},
		{"poly without size", "00000009 00 00000000 00000000", wire.Limits{}, wire.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := readOne(t, mustHex(t, tc.hex), tc.lim)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ReadMessage = %v, %v; want %v", m, err, tc.want)
			}
			if m != nil {
				t.Errorf("ReadMessage returned %#v with error %v", m, err)
			}
			if tc.want != io.EOF {
				var de *wire.DecodeError
				if !errors.As(err, &de) {
					t.Errorf("error %v is not a *DecodeError", err)
				} else if len(err.Error()) < 12 || err.Error()[:11] != "recon/wire:" {
					t.Errorf("error %q lacks the package prefix", err)
				}
			}
		})
	}
}

// TestTrailingBytesIgnored pins SKS's behaviour of decoding from the front
// of a frame and dropping what is left.
func TestTrailingBytesIgnored(t *testing.T) {
	for _, tc := range []struct {
		hex  string
		want wire.Message
	}{
		{"00000003 04 abcd", &wire.SyncFail{}},
		{"00000007 02 00000000 ffff", &wire.Elements{Set: []wire.Element{}}},
		{"00000009 07 00000002 6869 ffff", &wire.ErrorMsg{Text: "hi"}},
		// Junk in a prefix's unused bits is cleared, as SKS ignores it.
		{"0000000e 01 00000002 00000001 7f 00000000", &wire.ReconRqstFull{Prefix: mustPrefix(t, "01"), Set: []wire.Element{}}},
	} {
		in := mustHex(t, tc.hex)
		br := bufio.NewReader(bytes.NewReader(append(in, 0, 0, 0, 1, 5)))
		m, err := wire.ReadMessage(br, wire.Limits{})
		if err != nil || !reflect.DeepEqual(m, tc.want) {
			t.Errorf("%s: ReadMessage = %#v, %v; want %#v", tc.hex, m, err, tc.want)
		}
		// The next frame starts right after the length.
		if m, err := wire.ReadMessage(br, wire.Limits{}); err != nil || m.Type() != wire.MsgDone {
			t.Errorf("%s: next frame = %v, %v; want Done", tc.hex, m, err)
		}
	}
}

func TestReadVerdictErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		want error
	}{
		{"empty", "", io.EOF},
		{"cut in length", "0000", io.ErrUnexpectedEOF},
		{"cut in string", "00000006 7061", io.ErrUnexpectedEOF},
		{"failed without reason", "00000006 6661696c6564", io.ErrUnexpectedEOF},
		{"failed cut in reason", "00000006 6661696c6564 00000018 6d62", io.ErrUnexpectedEOF},
		{"other string", "00000002 6f6b", wire.ErrMalformed},
		{"framed Config instead", "0000007e 0a000000", wire.ErrTooLarge},
		{"absurd length", "ffffffff", wire.ErrTooLarge},
		{"absurd reason", "00000006 6661696c6564 fffffff0", wire.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := wire.ReadVerdict(bufio.NewReader(bytes.NewReader(mustHex(t, tc.hex))), wire.Limits{MaxStringBytes: 100})
			if !errors.Is(err, tc.want) {
				t.Errorf("ReadVerdict = %+v, %v; want %v", v, err, tc.want)
			}
		})
	}
}

// TestTruncatedFixtures cuts every capture at every byte: the decoder must
// return what was complete, then io.EOF at a boundary and
// io.ErrUnexpectedEOF anywhere else, and nothing else.
func TestTruncatedFixtures(t *testing.T) {
	for _, name := range reconFixtures {
		for _, d := range directions {
			t.Run(name+d.suffix, func(t *testing.T) {
				data := readShared(t, "fixtures/sks/"+name+d.suffix)
				full, err := decodeStream(data, wire.Limits{})
				if err != io.EOF {
					t.Fatal(err)
				}
				ends := map[int]int{0: 0} // boundary offset -> items before it
				off := 0
				for i, it := range full {
					off += len(it.raw)
					ends[off] = i + 1
				}
				for k := 0; k < len(data); k++ {
					items, err := decodeStream(data[:k], wire.Limits{})
					if n, boundary := ends[k]; boundary {
						if err != io.EOF || len(items) != n {
							t.Fatalf("cut at %d (boundary): %d items, %v; want %d, io.EOF", k, len(items), err, n)
						}
						continue
					}
					if !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("cut at %d: %v, want io.ErrUnexpectedEOF", k, err)
					}
					for i := range items {
						if !reflect.DeepEqual(items[i], full[i]) {
							t.Fatalf("cut at %d: item %d differs", k, i)
						}
					}
				}
			})
		}
	}
}

// TestBoundedAllocation checks that a length a peer claims costs memory
// only as its bytes arrive.
func TestBoundedAllocation(t *testing.T) {
	const budget = 1 << 20
	for _, tc := range []struct {
		name string
		hex  string
		run  func([]byte) error
	}{
		{"Elements claiming 250 MiB", "0fa00000 02 00e6b280 0102030405", func(b []byte) error {
			_, err := readOne(t, b, wire.Limits{})
			return err
		}},
		{"Error claiming 15 MiB", "00f00000 07 00effff0 6869", func(b []byte) error {
			_, err := readOne(t, b, wire.Limits{MaxStringBytes: 16 << 20})
			return err
		}},
		{"verdict claiming 60 KiB", "0000f000 6869", func(b []byte) error {
			_, err := wire.ReadVerdict(bufio.NewReader(bytes.NewReader(b)), wire.Limits{})
			return err
		}},
		{"key string claiming 60 MiB", "00000001 03c00000 6869", func(b []byte) error {
			_, err := wire.DecodeKeyStrings(bytes.NewReader(b), wire.Limits{})
			return err
		}},
		{"hashquery claiming 262144 hashes", "00040000 00000010 00112233445566778899aabbccddeeff", func(b []byte) error {
			_, err := wire.DecodeHashQuery(bytes.NewReader(b), wire.Limits{})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := mustHex(t, tc.hex)
			var err error
			n := allocated(func() { err = tc.run(in) })
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("err = %v, want io.ErrUnexpectedEOF", err)
			}
			if n > budget {
				t.Errorf("allocated %d bytes for %d bytes of input", n, len(in))
			}
		})
	}
}

func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestReaderSticky checks that a Reader keeps returning its first error.
func TestReaderSticky(t *testing.T) {
	in := mustHex(t, "00000001 05 00000001 0b 00000001 05")
	rd := wire.NewReader(bytes.NewReader(in), wire.Limits{})
	if m, err := rd.ReadMessage(); err != nil || m.Type() != wire.MsgDone {
		t.Fatalf("first frame: %v, %v", m, err)
	}
	_, err := rd.ReadMessage()
	if !errors.Is(err, wire.ErrUnknownType) {
		t.Fatalf("second frame: %v", err)
	}
	if _, err2 := rd.ReadMessage(); err2 != err {
		t.Errorf("after an error ReadMessage returned %v, want the sticky %v", err2, err)
	}
	if _, err2 := rd.ReadVerdict(); err2 != err {
		t.Errorf("after an error ReadVerdict returned %v, want the sticky %v", err2, err)
	}
	if rd.Err() != err {
		t.Errorf("Err() = %v", rd.Err())
	}
	// A clean EOF is sticky too.
	rd = wire.NewReader(bytes.NewReader(nil), wire.Limits{})
	for range 2 {
		if _, err := rd.ReadMessage(); err != io.EOF {
			t.Errorf("ReadMessage on empty input = %v, want io.EOF", err)
		}
	}
}

// TestReadErrorsPassThrough checks that a non-EOF read error (a deadline)
// is wrapped, not mistaken for truncation.
func TestReadErrorsPassThrough(t *testing.T) {
	boom := errors.New("i/o timeout")
	r := io.MultiReader(bytes.NewReader(mustHex(t, "00000016 02")), &errReader{boom})
	_, err := wire.ReadMessage(bufio.NewReader(r), wire.Limits{})
	if !errors.Is(err, boom) || errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("err = %v, want it to wrap %v", err, boom)
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

// TestMutatedFixturesNoPanic decodes seeded random corruptions of the
// captures and of the §14.2 frames: no panic, only documented errors, and
// every message decoded survives a re-encode.
func TestMutatedFixturesNoPanic(t *testing.T) {
	seeds := sharedSeeds(t)
	seeds = append(seeds, vectorFrames(t)...)
	rng := rand.New(rand.NewSource(1))
	deadline := time.Now().Add(5 * time.Second)
	lim := wire.Limits{MaxFrameBytes: 1 << 16, MaxSetFrameBytes: 1 << 16}
	for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
		in := mutate(rng, seeds[rng.Intn(len(seeds))])
		checkStream(t, in, lim)
	}
}

func mutate(rng *rand.Rand, seed []byte) []byte {
	b := bytes.Clone(seed)
	for n := 1 + rng.Intn(4); n > 0 && len(b) > 0; n-- {
		i := rng.Intn(len(b))
		switch rng.Intn(5) {
		case 0:
			b[i] ^= 1 << rng.Intn(8)
		case 1:
			b[i] = 0xff
		case 2:
			b[i] = byte(rng.Intn(12))
		case 3:
			b = b[:i]
		case 4:
			b = append(b[:i:i], append([]byte{byte(rng.Intn(256))}, b[i:]...)...)
		}
	}
	return b
}

// checkStream reads frames until an error and checks every outcome.
func checkStream(tb testing.TB, in []byte, lim wire.Limits) {
	tb.Helper()
	rd := wire.NewReader(bytes.NewReader(in), lim)
	for {
		m, err := rd.ReadMessage()
		if err != nil {
			if !isDecodeFailure(err) {
				tb.Fatalf("undocumented error %T %v for %x", err, err, in)
			}
			return
		}
		roundTrip(tb, m, lim)
		if c, ok := m.(*wire.ConfigMsg); ok {
			_ = wire.DefaultConfig().Check(c)
			_, _ = wire.ParseConfig(c)
		}
	}
}

// roundTrip checks decode(encode(m)) == m and that encoding is stable.
func roundTrip(tb testing.TB, m wire.Message, lim wire.Limits) {
	tb.Helper()
	enc, err := wire.AppendMessage(nil, m)
	if err != nil {
		tb.Fatalf("AppendMessage(%#v): %v", m, err)
	}
	m2, err := readOne(tb, enc, lim)
	if err != nil {
		tb.Fatalf("decode of re-encoded %T failed: %v", m, err)
	}
	if !reflect.DeepEqual(m, m2) {
		tb.Fatalf("round trip:\n got %#v\nwant %#v", m2, m)
	}
	enc2, _ := wire.AppendMessage(nil, m2)
	if !bytes.Equal(enc, enc2) {
		tb.Fatalf("encoding not stable:\n%x\n%x", enc, enc2)
	}
}

// vectorFrames returns the spec §14.2 frames as seeds.
func vectorFrames(tb testing.TB) [][]byte {
	var out [][]byte
	for _, h := range []string{
		"0000007e0a000000050000000a6269747175616e74756d00000004000000020000000766696c746572730000001b796d696e736b792e64656475702c796d696e736b792e6d65726765000000096874747020706f72740000000400002c6b000000046d62617200000004000000050000000776657273696f6e00000005312e312e36",
		"0000001f 01 00000004 00000001 00 00000001 0fa4cd2df7ede287ac0b7a608bf30faa00",
		"00000016 02 00000001 0fa4cd2df7ede287ac0b7a608bf30faa00",
		"00000005 03 00000000",
		"00000001 04 00000001 05 00000001 06",
		"00000009 07 00000004 6f6f7073",
		"00000009 08 00000004 6f6f7073 00000009 09 00000004 6f6f7073",
		"0000007800000000020000000100000000e600000006c5810df6ec013c1b14ac55e6c69019fc0048fa334f528a6618566a8675b12fef8c01dd8fe7fc16133ca286fb7461bce4a44601e77785d4fa7900506558be038edf0c3400bfc4ad1200d2119dacb47be23b31bc2d00b46a9abdf9ffb19c7638a8ed60a1d2e900",
	} {
		out = append(out, mustHex(tb, h))
	}
	return out
}

func mustPrefix(tb testing.TB, bits string) wire.Prefix {
	tb.Helper()
	p, err := wire.ParsePrefix(bits)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
