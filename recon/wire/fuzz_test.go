package wire_test

import (
	"bufio"
	"bytes"
	"reflect"
	"testing"

	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// fuzzLimits keep the fuzzer's memory small; the defaults are exercised by
// the other tests.
var fuzzLimits = wire.Limits{
	MaxFrameBytes:     1 << 16,
	MaxSetFrameBytes:  1 << 18,
	MaxStringBytes:    1 << 12,
	MaxHashQueryCount: 1 << 10,
	MaxKeyStringBytes: 1 << 16,
	MaxHashQueryBytes: 1 << 18,
}

// FuzzReadMessage reads frames from arbitrary bytes until an error. Every
// error must be a documented one, nothing may panic, and every decoded
// message must satisfy decode(encode(m)) == m. Seeds: both directions of
// every SKS capture (Config, bare verdicts, frames) and the §14.2 frames.
func FuzzReadMessage(f *testing.F) {
	for _, s := range sharedSeeds(f) {
		f.Add(s)
		// Also the frames after the verdict, which a reader out of the
		// handshake sees.
		if items, _ := decodeStream(s, wire.Limits{}); len(items) > 2 {
			off := len(items[0].raw) + len(items[1].raw)
			f.Add(s[off:])
		}
	}
	for _, s := range vectorFrames(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkStream(t, in, fuzzLimits)
		// The same bytes read as a handshake verdict.
		v, err := wire.ReadVerdict(bufio.NewReader(bytes.NewReader(in)), fuzzLimits)
		if err != nil {
			if !isDecodeFailure(err) {
				t.Fatalf("ReadVerdict: undocumented error %v", err)
			}
			return
		}
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		if err := wire.WriteVerdict(bw, v); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		v2, err := wire.ReadVerdict(bufio.NewReader(&buf), fuzzLimits)
		if err != nil || v2 != v {
			t.Fatalf("verdict round trip: %+v, %v; want %+v", v2, err, v)
		}
	})
}

// FuzzDecodeKeyStrings decodes arbitrary hashquery response bodies: no
// panic, documented errors only, decode(encode(x)) == x. Seeds: SKS's
// response body from hashquery-3keys.
func FuzzDecodeKeyStrings(f *testing.F) {
	f.Add([]byte{})
	f.Add(wire.EncodeKeyStrings(nil))
	f.Add(wire.EncodeKeyStrings([][]byte{[]byte("a"), {}, []byte("key")}))
	if raw := sharedFile(f, "fixtures/sks/hashquery-3keys.response.bin"); raw != nil {
		if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
			f.Add(raw[i+4:])
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		keys, err := wire.DecodeKeyStrings(bytes.NewReader(in), fuzzLimits)
		if err != nil {
			if !isDecodeFailure(err) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		enc := wire.EncodeKeyStrings(keys)
		keys2, err := wire.DecodeKeyStrings(bytes.NewReader(enc), fuzzLimits)
		if err != nil || !reflect.DeepEqual(keys, keys2) {
			t.Fatalf("round trip: %q, %v; want %q", keys2, err, keys)
		}
		if !bytes.HasPrefix(in, enc[:len(enc)-len(wire.KeyStringsTrailer)]) {
			t.Fatalf("re-encoding is not a prefix of the input")
		}
	})
}

// FuzzDecodeHashQuery does the same for request bodies.
func FuzzDecodeHashQuery(f *testing.F) {
	f.Add([]byte{})
	f.Add(wire.EncodeHashQuery([][16]byte{{1}, {2}}))
	if raw := sharedFile(f, "fixtures/sks/hashquery-3keys.request.bin"); raw != nil {
		if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
			f.Add(raw[i+4:])
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		hs, err := wire.DecodeHashQuery(bytes.NewReader(in), fuzzLimits)
		if err != nil {
			if !isDecodeFailure(err) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		enc := wire.EncodeHashQuery(hs)
		if !bytes.HasPrefix(in, enc) {
			t.Fatalf("re-encoding %x is not a prefix of the input %x", enc, in)
		}
	})
}
