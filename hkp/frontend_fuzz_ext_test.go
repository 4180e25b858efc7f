package hkp_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/hkp"
)

// FuzzFrontEndMatchesNetHTTP sends the same bytes to a server with the
// front end and to one without, and wants the same bytes back. The
// handler behind both (the Config's Middleware, in place of HKP) is
// deterministic: it reads as much of the body as the request's X-Read
// header says (all without it) and answers with what it read, so that
// every way of framing, cutting short, pipelining or abandoning a body —
// what the front end now does for uploads — is compared with net/http.
func FuzzFrontEndMatchesNetHTTP(f *testing.F) {
	echo := func(c *hkp.Config) {
		c.Middleware = func(http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var body io.Reader = r.Body
				if n, err := strconv.Atoi(r.Header.Get("X-Read")); err == nil && n >= 0 {
					body = io.LimitReader(r.Body, int64(n))
				}
				got, err := io.ReadAll(body)
				fmt.Fprintf(w, "%s %s %d %x %d %v\n", r.Method, r.URL.RequestURI(), r.ContentLength, sha256.Sum256(got), len(got), err)
			})
		}
	}
	front, plain := newFrontPair(f, echo)
	post := func(body, extra string) string {
		return fmt.Sprintf("POST /pks/add HTTP/1.1\r\nHost: keys.test\r\n%sContent-Length: %d\r\n\r\n%s", extra, len(body), body)
	}
	for _, s := range []string{
		post("keytext=abc", ""),
		post("keytext=abc", "X-Read: 3\r\n") + "GET /pks/lookup?op=stats HTTP/1.1\r\nHost: keys.test\r\n\r\n",
		post("keytext=abc", "Connection: close\r\nX-Read: 0\r\n"),
		post("keytext=abc", "")[:60],
		"POST /pks/add HTTP/1.0\r\nContent-Length: 5\r\n\r\nabcdePOST /pks/add HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nxy",
		"POST /pks/add HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
		"POST /pks/add HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\nX-Read: 10\r\n\r\n" + string(bytes.Repeat([]byte("z"), 100)),
		"GET /pks/lookup?op=get&search=a HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		if len(req) > 16<<10 {
			return
		}
		got := dateLine.ReplaceAll(rawExchange(t, front.addr, req, 5*time.Second), []byte("Date: (now)\r"))
		want := dateLine.ReplaceAll(rawExchange(t, plain.addr, req, 5*time.Second), []byte("Date: (now)\r"))
		if !bytes.Equal(got, want) {
			t.Errorf("request %q:\nthe front end answered\n%q\nnet/http answered\n%q", clip(req), clip(got), clip(want))
		}
	})
}
