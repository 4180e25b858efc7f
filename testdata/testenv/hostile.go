package testenv

import (
	"io"
	"math/rand"
	"net"
	"sync"
	"testing"
	"time"
)

// randomBytePrefixes put some of the random bytes behind a plausible start
// of a request, so that they reach the HTTP parser's later stages and the
// handlers, not only the request-line check.
var randomBytePrefixes = []string{
	"", "GET /pks/lookup?", "POST /pks/add HTTP/1.1\r\nContent-Length: ",
	"POST /pks/hashquery HTTP/1.0\r\ncontent-length: 24\r\n\r\n",
	"GET /pks/lookup?op=get&search=", "GET /pks/lookup?op=index&search=",
	"POST /pks/add HTTP/1.0\r\nContent-Type: multipart/form-data; boundary=",
	"GET / HTTP/1.1\r\nHost: ",
	"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", // a TLS ClientHello
}

// RandomByteConnections opens n connections to addr from 8 workers, each
// sending up to 4 KiB of random bytes seeded by seed and its number,
// half-closing and reading the answer. It returns how many answers started
// with "HTTP/". What the server must do with them (answer or close, store
// nothing, not grow) is for the caller to check.
func RandomByteConnections(tb testing.TB, addr string, n int, seed int64) int {
	tb.Helper()
	jobs := make(chan int64)
	var mu sync.Mutex
	answered := 0
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range jobs {
				rng := rand.New(rand.NewSource(s))
				msg := []byte(randomBytePrefixes[rng.Intn(len(randomBytePrefixes))])
				junk := make([]byte, rng.Intn(4096))
				rng.Read(junk)
				if rng.Intn(4) == 0 { // printable junk parses further
					for i := range junk {
						junk[i] = " \r\n:=&%0aZ"[int(junk[i])%10]
					}
				}
				msg = append(msg, junk...)
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					tb.Errorf("dial: %v", err)
					return
				}
				conn.SetDeadline(time.Now().Add(15 * time.Second))
				conn.Write(msg)
				conn.(*net.TCPConn).CloseWrite()
				head := make([]byte, 5)
				k, _ := io.ReadFull(conn, head)
				io.Copy(io.Discard, io.LimitReader(conn, 1<<20))
				conn.Close()
				if k == 5 && string(head) == "HTTP/" {
					mu.Lock()
					answered++
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- seed*1_000_000 + int64(i)
	}
	close(jobs)
	wg.Wait()
	return answered
}
