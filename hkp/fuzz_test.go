package hkp

// Fuzz targets for everything hkp decodes from the network: the lookup query
// string, the search classification, the hashquery body and the /pks/add
// body. `go test` runs the seeds; `go test -fuzz=FuzzParseQuery ./hkp` (or
// `make fuzz`) runs them longer. The properties are the house ones: no panic,
// and output bounded by the input.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// fixtureRequests reads the HTTP requests real clients sent to SKS
// (shared/fixtures/sks/*.request.http).
func fixtureRequests(tb testing.TB) []*http.Request {
	tb.Helper()
	dir := filepath.Dir(testenv.SharedFile(tb, "fixtures/sks/hkp-gpg-send-keys.request.http"))
	files, _ := filepath.Glob(filepath.Join(dir, "*.request.http"))
	if len(files) == 0 {
		tb.Fatalf("no *.request.http fixtures in %s", dir)
	}
	var reqs []*http.Request
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		reqs = append(reqs, r)
	}
	return reqs
}

var querySeeds = []string{
	"",
	"op=get&options=mr&search=0x2D7A2724A58C72489F0AEE7FE0CF3AC7AC2DB901",
	"op=index&options=mr&fingerprint=on&search=alice@example.org",
	"op=vindex&search=alice+example&fingerprint=on&hash=on&exact=on",
	"op=hget&search=00000000000000000000000000000000",
	"op=x-hget&search=AbCdEf&x-hash=on&x-clean=off",
	"op=stats&options=json",
	"op=get&search=x&limit=abc",
	"op=get&search=x&limit=-1",
	"op=get&search=x&limit=99999999999999999999999",
	"search=%zz%4%%41%00%ff&op=GET&op=frob",
	"search=%00%00%00&&&&==&op",
	"=&=&=&search=&options=,,,mr,,json",
	"search=0x" + strings.Repeat("A", 64),
	"search=" + strings.Repeat("%41", 3000),
	strings.Repeat("a", maxQueryBytes+1),
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range querySeeds {
		f.Add(s)
	}
	for _, r := range fixtureRequests(f) {
		f.Add(r.URL.RawQuery)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if u := unescape(raw); len(u) > len(raw) {
			t.Fatalf("unescape grew %d bytes to %d", len(raw), len(u))
		}
		q, err := parseQuery(raw)
		if len(raw) > maxQueryBytes {
			if err == nil {
				t.Fatalf("query of %d bytes accepted (limit %d)", len(raw), maxQueryBytes)
			}
			return
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "400 ") {
				t.Fatalf("parse error %q is not a 400", err)
			}
			return
		}
		switch q.op {
		case "get", "index", "vindex", "hget", "stats":
		default:
			t.Fatalf("op %q escaped the known set", q.op)
		}
		if len(q.search) > len(raw) {
			t.Fatalf("search of %d bytes from a query of %d", len(q.search), len(raw))
		}
		if q.limit < -1 {
			t.Fatalf("limit %d", q.limit)
		}
	})
}

func FuzzClassifySearch(f *testing.F) {
	for _, s := range []string{
		"", " ", "0x", "0X", "0xDEADBEEF", "0xDEADBEEFDEADBEEF", "0x123", "0xZZZZ",
		"2D7A2724A58C72489F0AEE7FE0CF3AC7AC2DB901",
		"0x2D7A2724A58C72489F0AEE7FE0CF3AC7AC2DB901",
		"2D7A 2724 A58C 7248 9F0A  EE7F E0CF 3AC7 AC2D B901",
		"0x2D7A 2724 A58C 7248 9F0A  EE7F E0CF 3AC7 AC2D B901",
		strings.Repeat("ab", 32), "0x" + strings.Repeat("0", 32),
		"alice@example.org", "Alice Ed <alice@example.org>",
		"0x\x00\x00\x00\x00\x00\x00\x00\x00", "ＤＥＡＤＢＥＥＦ", "0xdeadbeef\xff",
		strings.Repeat("A", 40) + "\u00a0", "\t0xdeadbeef\n",
	} {
		f.Add(s)
	}
	for _, r := range fixtureRequests(f) {
		f.Add(r.URL.Query().Get("search"))
	}
	f.Fuzz(func(t *testing.T, search string) {
		id, err := classifySearch(search)
		if err != nil {
			if id != nil {
				t.Fatal("both an ID and an error")
			}
			if !strings.HasPrefix(err.Error(), "400 ") {
				t.Fatalf("error %q is not a 400", err)
			}
			return
		}
		if id == nil {
			return // a word search
		}
		switch id.hexDigits {
		case 8, 16, 32, 40, 64:
		default:
			t.Fatalf("ID search of %d hex digits from %q", id.hexDigits, search)
		}
		if len(id.raw)*2 != id.hexDigits {
			t.Fatalf("%d bytes for %d hex digits", len(id.raw), id.hexDigits)
		}
		// The digits are decoded by hand (no allocation): they must be
		// what hex.DecodeString makes of the search without its "0x" and
		// white space.
		digits := strings.TrimSpace(search)
		if len(digits) >= 2 && (digits[:2] == "0x" || digits[:2] == "0X") {
			digits = digits[2:]
		}
		want, err := hex.DecodeString(strings.Join(strings.Fields(digits), ""))
		if err != nil || !bytes.Equal(id.raw, want) {
			t.Fatalf("%q decoded to %X, want %X (%v)", search, id.raw, want, err)
		}
		if s := id.String(); len(s) != 2+id.hexDigits {
			t.Fatalf("String() = %q", s)
		}
	})
}

func hashQueryBody(n uint32, lens ...uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, n)
	for i, l := range lens {
		b = binary.BigEndian.AppendUint32(b, l)
		b = append(b, bytes.Repeat([]byte{byte(i)}, int(l))...)
	}
	return b
}

func FuzzDecodeHashQuery(f *testing.F) {
	if req, err := os.ReadFile(testenv.SharedFile(f, "fixtures/sks/hashquery-3keys.request.bin")); err == nil {
		if _, body, ok := bytes.Cut(req, []byte("\r\n\r\n")); ok {
			f.Add(body, uint16(100))
			f.Add(body, uint16(2))
		}
	}
	f.Add([]byte{}, uint16(100))
	f.Add([]byte{0, 0, 0}, uint16(100))
	f.Add(hashQueryBody(0), uint16(100))
	f.Add(hashQueryBody(1, 16), uint16(100))
	f.Add(hashQueryBody(2, 16, 15), uint16(100))
	f.Add(hashQueryBody(1, 17), uint16(100))
	f.Add(hashQueryBody(0xffffffff, 16), uint16(10000))
	f.Add(hashQueryBody(3, 16, 16), uint16(100))
	f.Add(append(hashQueryBody(1, 16), 0xde, 0xad), uint16(1))
	f.Fuzz(func(t *testing.T, body []byte, max uint16) {
		limit := int(max) + 1
		hs, err := decodeHashQuery(body, limit)
		if err != nil {
			return
		}
		if len(hs) > limit || cap(hs) > limit {
			t.Fatalf("%d hashes (cap %d) decoded with a limit of %d", len(hs), cap(hs), limit)
		}
		if need := 4 + 20*len(hs); need > len(body) {
			t.Fatalf("%d hashes from a %d-byte body", len(hs), len(body))
		}
		// decode(encode(x)) == x: the hashes re-encode to the body's prefix.
		enc := binary.BigEndian.AppendUint32(nil, uint32(len(hs)))
		for _, h := range hs {
			enc = binary.BigEndian.AppendUint32(enc, 16)
			enc = append(enc, h[:]...)
		}
		if !bytes.Equal(enc, body[:len(enc)]) {
			t.Fatalf("re-encoded hashes differ from the body")
		}
	})
}

func FuzzKeytext(f *testing.F) {
	const form = "application/x-www-form-urlencoded"
	for _, r := range fixtureRequests(f) {
		if r.Method != http.MethodPost {
			continue
		}
		var body bytes.Buffer
		body.ReadFrom(r.Body)
		f.Add(body.Bytes(), r.Header.Get("Content-Type"), r.Header.Get("Accept"))
		f.Add(body.Bytes(), "", "application/json")
	}
	arm := "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("options", "mr")
	mw.WriteField("keytext", arm)
	mw.Close()
	var mpFile bytes.Buffer
	mw2 := multipart.NewWriter(&mpFile)
	fw, _ := mw2.CreateFormFile("keytext", "key.asc")
	fw.Write([]byte(arm))
	mw2.Close()
	for _, c := range []struct {
		body, ctype, accept string
	}{
		{"keytext=" + url.QueryEscape(arm), form, ""},
		{"options=mr&keytext=" + url.QueryEscape(arm), form + "; charset=UTF-8", ""},
		{"keytext=" + strings.ReplaceAll(arm, "\n", "%0A"), "", ""},
		{"keytext=%zz%4&keytext=%%%&options=%", form, "application/json"},
		{arm, "application/pgp-keys", ""},
		{"\x99\x00\x03\x04\x00\x00", "application/octet-stream", ""},
		{mp.String(), mw.FormDataContentType(), ""},
		{mpFile.String(), mw2.FormDataContentType(), ""},
		{"--x\r\nContent-Disposition: form-data; name=\"keytext\"\r\n\r\nabc", "multipart/form-data; boundary=x", ""},
		{"--x--", "multipart/form-data", ""},
		{"foo=bar", "text/plain; charset=\x00", ""},
		{"", "", ""},
	} {
		f.Add([]byte(c.body), c.ctype, c.accept)
	}
	f.Fuzz(func(t *testing.T, body []byte, ctype, accept string) {
		r := httptest.NewRequest(http.MethodPost, "/pks/add", bytes.NewReader(body))
		r.Header.Set("Content-Type", ctype)
		r.Header.Set("Accept", accept)
		keytext, _, err := keytextOf(r, body)
		if r.MultipartForm != nil {
			r.MultipartForm.RemoveAll()
		}
		if err != nil {
			return
		}
		if len(keytext) > len(body) {
			t.Fatalf("keytext of %d bytes from a body of %d", len(keytext), len(body))
		}
	})
}
