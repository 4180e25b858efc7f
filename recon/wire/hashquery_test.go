package wire_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// The hashes A asked B for after recon-full-3v3 (hashquery-3keys.txt):
// Erin, Dave, Frank, sorted bytewise as SKS sorts them (recoverList.ml).
var hashes3 = []string{
	"474E599CD7284F4BA3146D22D4EB6D0B",
	"62120BCF80F5505E328E9E35445B72D7",
	"A18F7B3E8ACE92DC746A7B244C87A2B4",
}

func keyHash(tb testing.TB, s string) [16]byte {
	tb.Helper()
	var h [16]byte
	if b := mustHex(tb, s); len(b) != 16 {
		tb.Fatalf("%q is not 16 bytes", s)
	} else {
		copy(h[:], b)
	}
	return h
}

// TestHashQueryRequestFixture decodes the request SKS sent and checks that
// EncodeHashQuery reproduces its body byte for byte.
func TestHashQueryRequestFixture(t *testing.T) {
	raw := readShared(t, "fixtures/sks/hashquery-3keys.request.bin")
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if req.Method != "POST" || req.URL.Path != "/pks/hashquery" || req.ContentLength != 64 {
		t.Errorf("request %s %s, content length %d", req.Method, req.URL, req.ContentLength)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.DecodeHashQuery(bytes.NewReader(body), wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var want [][16]byte
	for _, h := range hashes3 {
		want = append(want, keyHash(t, h))
	}
	if !slices.Equal(got, want) {
		t.Errorf("hashes %x, want %x", got, want)
	}
	if enc := wire.EncodeHashQuery(want); !bytes.Equal(enc, body) {
		t.Errorf("EncodeHashQuery:\n got %x\nwant %x", enc, body)
	}
}

// TestHashQueryMatchesRecon ties the two captures together: the hashes A
// fetched are the key hashes of the elements B sent in its ReconRqst_Full,
// sorted bytewise (spec recon.md §11.2).
func TestHashQueryMatchesRecon(t *testing.T) {
	items, err := decodeStream(readShared(t, "fixtures/sks/recon-full-3v3.acceptor.bin"), wire.Limits{})
	if err != io.EOF {
		t.Fatal(err)
	}
	full := items[2].msg.(*wire.ReconRqstFull)
	var got []string
	for _, e := range full.Set {
		h, ok := e.KeyHash()
		if !ok {
			t.Fatalf("element %s is not a key hash", e)
		}
		got = append(got, strings.ToUpper(hex.EncodeToString(h[:])))
	}
	slices.Sort(got)
	if !slices.Equal(got, hashes3) {
		t.Errorf("hashes %q, want %q", got, hashes3)
	}
}

// TestKeyStringsFixture decodes SKS's response (body after the HTTP
// headers, including the trailing "\r\n" SKS counts in Content-length) and
// checks that EncodeKeyStrings reproduces the body byte for byte.
func TestKeyStringsFixture(t *testing.T) {
	raw := readShared(t, "fixtures/sks/hashquery-3keys.response.bin")
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || len(body) != 1732 || resp.Header.Get("X-HKP-Results-Count") != "3" {
		t.Fatalf("status %d, %d body bytes, results count %q", resp.StatusCode, len(body), resp.Header.Get("X-HKP-Results-Count"))
	}
	keys, err := wire.DecodeKeyStrings(bytes.NewReader(body), wire.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// Frank, Dave, Erin: reverse request order.
	for i, want := range []struct {
		n     int
		start string
	}{
		{409, "9833046b033cf116092b06010401da470f01010740b0d9de"},
		{407, "9833046b033cf016092b06010401da470f0101074085a954"},
		{898, "99018d046b033cf0010c00d9da0ae9582c4d35705af8d8c7"},
	} {
		if i >= len(keys) {
			t.Fatalf("decoded %d keys, want 3", len(keys))
		}
		if len(keys[i]) != want.n || !strings.HasPrefix(hex.EncodeToString(keys[i]), want.start) {
			t.Errorf("key %d: %d bytes starting %x, want %d starting %s", i, len(keys[i]), keys[i][:24], want.n, want.start)
		}
	}
	if enc := wire.EncodeKeyStrings(keys); !bytes.Equal(enc, body) {
		t.Errorf("EncodeKeyStrings does not reproduce the body (%d vs %d bytes)", len(enc), len(body))
	}
	// SKS's client reads the body straight off the socket after the
	// headers and ignores Content-Length; so can we.
	br := bufio.NewReader(bytes.NewReader(raw))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	keys2, err := wire.DecodeKeyStrings(br, wire.Limits{})
	if err != nil || len(keys2) != 3 {
		t.Fatalf("decode from the raw stream: %d keys, %v", len(keys2), err)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "\r\n" {
		t.Errorf("left after the keys: %q, want the CRLF trailer", rest)
	}
}

func TestHashQueryErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		lim  wire.Limits
		want error
	}{
		{"empty body", "", wire.Limits{}, io.ErrUnexpectedEOF},
		{"cut in count", "0000", wire.Limits{}, io.ErrUnexpectedEOF},
		{"cut in hash", "00000001 00000010 0011", wire.Limits{}, io.ErrUnexpectedEOF},
		{"missing hash", "00000002 00000010 00112233445566778899aabbccddeeff", wire.Limits{}, io.ErrUnexpectedEOF},
		{"absurd count", "ffffffff", wire.Limits{}, wire.ErrTooLarge},
		{"count over limit", "00000003", wire.Limits{MaxHashQueryCount: 2}, wire.ErrTooLarge},
		{"17-byte string", "00000001 00000011 00112233445566778899aabbccddeeff00", wire.Limits{}, wire.ErrMalformed},
		{"absurd string", "00000001 ffffffff", wire.Limits{}, wire.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := wire.DecodeHashQuery(bytes.NewReader(mustHex(t, tc.hex)), tc.lim)
			if !errors.Is(err, tc.want) || h != nil {
				t.Errorf("DecodeHashQuery = %x, %v; want %v", h, err, tc.want)
			}
		})
	}
	// Zero hashes and trailing bytes are fine.
	h, err := wire.DecodeHashQuery(bytes.NewReader(mustHex(t, "00000000 0d0a")), wire.Limits{})
	if err != nil || len(h) != 0 {
		t.Errorf("empty query = %x, %v", h, err)
	}
}

func TestKeyStringsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		lim  wire.Limits
		want error
	}{
		{"empty body", "", wire.Limits{}, io.ErrUnexpectedEOF},
		{"cut in count", "000000", wire.Limits{}, io.ErrUnexpectedEOF},
		{"cut in length", "00000001 0000", wire.Limits{}, io.ErrUnexpectedEOF},
		{"cut in key", "00000001 00000004 9833", wire.Limits{}, io.ErrUnexpectedEOF},
		{"CRLF instead of a key", "00000002 00000001 98 0d0a", wire.Limits{}, io.ErrUnexpectedEOF},
		{"absurd count", "ffffffff", wire.Limits{}, wire.ErrTooLarge},
		{"absurd key", "00000001 ffffffff", wire.Limits{}, wire.ErrTooLarge},
		{"key over limit", "00000001 00000005 9833333333", wire.Limits{MaxKeyStringBytes: 4}, wire.ErrTooLarge},
		{"total over limit", "00000002 00000003 983333 00000003 983333", wire.Limits{MaxHashQueryBytes: 5}, wire.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := wire.DecodeKeyStrings(bytes.NewReader(mustHex(t, tc.hex)), tc.lim)
			if !errors.Is(err, tc.want) || k != nil {
				t.Errorf("DecodeKeyStrings = %x, %v; want %v", k, err, tc.want)
			}
		})
	}
	for _, tail := range []string{"", "0d0a", "ffffffffffff"} {
		k, err := wire.DecodeKeyStrings(bytes.NewReader(mustHex(t, "00000001 00000002 9833"+tail)), wire.Limits{})
		if err != nil || len(k) != 1 || hex.EncodeToString(k[0]) != "9833" {
			t.Errorf("trailer %q: %x, %v", tail, k, err)
		}
	}
}

// TestHashQueryTruncated cuts the fixture bodies at every byte.
func TestHashQueryTruncated(t *testing.T) {
	var hs [][16]byte
	for _, h := range hashes3 {
		hs = append(hs, keyHash(t, h))
	}
	req := wire.EncodeHashQuery(hs)
	for k := 0; k < len(req); k++ {
		if _, err := wire.DecodeHashQuery(bytes.NewReader(req[:k]), wire.Limits{}); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("request cut at %d: %v", k, err)
		}
	}
	resp := wire.EncodeKeyStrings([][]byte{[]byte("key one"), {}, []byte("3")})
	body := len(resp) - len(wire.KeyStringsTrailer)
	for k := 0; k < len(resp); k++ {
		_, err := wire.DecodeKeyStrings(bytes.NewReader(resp[:k]), wire.Limits{})
		if k < body && !errors.Is(err, io.ErrUnexpectedEOF) || k >= body && err != nil {
			t.Fatalf("response cut at %d: %v", k, err)
		}
	}
}
