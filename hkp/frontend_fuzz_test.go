package hkp

import (
	"bufio"
	"bytes"
	"net/http"
	"testing"
)

// FuzzFrontEndHead feeds arbitrary bytes to the front end's head finding
// and parsing: it must never panic, a head it finds must end with an
// empty line, and a request it keeps for itself must be one it can answer
// as net/http would — over HTTP/1.0 or 1.1, a GET of /pks/lookup without
// a body or a POST of /pks/add with a declared body of at most
// frontBodyMax, neither chunked nor with Expect or Upgrade, which
// net/http's own parser reads alike.
func FuzzFrontEndHead(f *testing.F) {
	for _, s := range []string{
		"GET /pks/lookup?op=get&search=0x1234 HTTP/1.1\r\nHost: keys.test\r\n\r\n",
		"GET /pks/lookup?op=index&search=a HTTP/1.0\n\n",
		"GET /pks/lookup HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"GET /pks/lookup?x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /pks/lookup?x HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
		"POST /pks/add HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /pks/add HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nkeytext=x",
		"POST /pks/add HTTP/1.0\r\nContent-Length: 65536\r\n\r\n",
		"POST /pks/add HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"\r\n\r\nGET /pks/lookup? HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > frontHeadMax {
			b = b[:frontHeadMax]
		}
		end := headEnd(b, 0)
		if end < 0 {
			return // readHead hands such bytes to net/http
		}
		if end > len(b) || !bytes.HasSuffix(b[:end], []byte("\n\n")) && !bytes.HasSuffix(b[:end], []byte("\n\r\n")) {
			t.Fatalf("headEnd %d of %q", end, b)
		}
		fl := &frontListener{maxPost: func() int64 { return 8 << 20 }}
		fl.headParsers.New = func() any { return bufio.NewReaderSize(nil, frontHeadMax) }
		fc := &frontConn{fl: fl, buf: append(make([]byte, 0, frontHeadMax), b...), n: len(b), remoteAddr: "192.0.2.1:1"}
		req, ok := fc.eligible(end)
		if !ok {
			return
		}
		lookup := req.Method == http.MethodGet && req.URL.Path == "/pks/lookup" && req.ContentLength == 0
		upload := req.Method == http.MethodPost && req.URL.Path == "/pks/add" && req.URL.RawQuery == "" &&
			req.ContentLength > 0 && req.ContentLength <= frontBodyMax
		if !lookup && !upload || req.ProtoMajor != 1 || req.ProtoMinor > 1 || len(req.TransferEncoding) != 0 ||
			req.Header.Get("Expect") != "" || req.Header.Get("Upgrade") != "" ||
			req.ProtoMinor == 1 && req.Host == "" || req.RemoteAddr != "192.0.2.1:1" {
			t.Fatalf("kept %q: %+v", b[:end], req)
		}
		again, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:end])))
		if err != nil || again.RequestURI != req.RequestURI || again.Host != req.Host || len(again.Header) != len(req.Header) ||
			again.ContentLength != req.ContentLength || len(again.TransferEncoding) != 0 {
			t.Fatalf("kept %q, which net/http reads as %+v, %v", b[:end], again, err)
		}
	})
}
