package corpus

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// UploadBodies splits a binary corpus (Generate's output) into one
// `/pks/add` request body per key: keytext= and the key ASCII-armored, as
// gpg sends it. The benchmarks upload these.
func UploadBodies(data []byte) ([][]byte, error) {
	r := pgpkey.NewReader(bytes.NewReader(data))
	var out [][]byte
	for {
		raw, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		w, err := armor.Encode(&b, "PGP PUBLIC KEY BLOCK", nil)
		if err != nil {
			return nil, err
		}
		w.Write(raw.Raw)
		w.Close()
		out = append(out, []byte("keytext="+url.QueryEscape(b.String())))
	}
}

// UploadResult is what Upload measured.
type UploadResult struct {
	Keys, Errors int           // bodies posted, and those not answered 2xx
	Wall, Max    time.Duration // the whole upload, its longest request
	// Answered holds when each answer arrived, from the start, in the
	// order they arrived: the burst's progress over time.
	Answered []time.Duration
}

// Timeline returns how many answers arrived in each interval of the
// upload, from its start.
func (r UploadResult) Timeline(interval time.Duration) []int {
	var counts []int
	for _, d := range r.Answered {
		i := int(d / interval)
		for len(counts) <= i {
			counts = append(counts, 0)
		}
		counts[i]++
	}
	return counts
}

// Upload posts each body (UploadBodies) to base+"/pks/add" from clients
// concurrent keep-alive connections, as gpg would, and stops handing out
// bodies when ctx ends (requests under way finish; only the bodies posted
// count).
//
// The client is deliberately lean (a prepared request written in one
// writev, the answer read with http.ReadResponse), like wrk rather than
// net/http's Transport: the load generator shares the machine's cores with
// the server it measures, and the Transport's per-request goroutine
// hand-offs cost about 130 µs of CPU per upload here — a quarter of what
// the server itself spends. Every server is measured with the same client.
func Upload(ctx context.Context, base string, bodies [][]byte, clients int) UploadResult {
	next := make(chan []byte)
	go func() {
		defer close(next)
		for _, b := range bodies {
			if ctx.Err() != nil { // select alone picks at random when both are ready
				return
			}
			select {
			case next <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	var mu sync.Mutex
	var res UploadResult
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &uploadConn{base: base}
			defer c.close()
			for body := range next {
				t0 := time.Now()
				ok := c.post(body)
				d := time.Since(t0)
				mu.Lock()
				res.Answered = append(res.Answered, time.Since(start))
				res.Keys++
				if !ok {
					res.Errors++
				}
				res.Max = max(res.Max, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Wall = time.Since(start)
	return res
}

// uploadTimeout bounds one request, connection included.
const uploadTimeout = 120 * time.Second

// uploadConn is one client's keep-alive connection to base, redialled when
// the server closes it.
type uploadConn struct {
	base   string
	host   string // host:port to dial
	conn   net.Conn
	br     *bufio.Reader
	reused bool // the connection has carried a request before
}

func (c *uploadConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// post sends one urlencoded body and reports whether it was answered 2xx.
// A request that fails on a reused connection before any answer arrived
// (the server closed it while idle) is sent once more on a new one, as
// net/http does.
func (c *uploadConn) post(body []byte) bool {
	ok, retry := c.try(body)
	if retry {
		ok, _ = c.try(body)
	}
	return ok
}

func (c *uploadConn) try(body []byte) (ok, retry bool) {
	if c.conn == nil {
		u, err := url.Parse(c.base)
		if err != nil {
			return false, false
		}
		c.host = u.Host
		conn, err := net.DialTimeout("tcp", c.host, uploadTimeout)
		if err != nil {
			return false, false
		}
		c.conn, c.br, c.reused = conn, bufio.NewReader(conn), false
	}
	reused := c.reused
	c.reused = true
	c.conn.SetDeadline(time.Now().Add(uploadTimeout))
	head := fmt.Sprintf("POST /pks/add HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n", c.host, len(body))
	bufs := net.Buffers{[]byte(head), body}
	if _, err := bufs.WriteTo(c.conn); err != nil {
		c.close()
		return false, reused
	}
	if _, err := c.br.Peek(1); err != nil {
		// Not one byte of an answer: on a reused connection the server
		// had closed it while idle, before this request reached it.
		c.close()
		return false, reused
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return false, false
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.Close {
		c.close()
	}
	return resp.StatusCode/100 == 2, false
}
