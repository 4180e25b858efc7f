package hkp_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
)

// BenchmarkUploadOverHTTP posts an upload of a stored key (answered 200
// "unchanged": decoded, parsed and checked, nothing appended, so no fsync
// in the figure) from one keep-alive connection on loopback, through the
// front end and through net/http alone. One client in the same process:
// ns/op is the round trip, cpu-µs/op the process's CPU (client and server)
// per upload; the two variants differ only in the server's HTTP layer.
func BenchmarkUploadOverHTTP(b *testing.B) {
	for _, c := range []struct {
		name     string
		disabled bool
	}{{"frontend", false}, {"nethttp", true}} {
		b.Run(c.name, func(b *testing.B) {
			cfg := hkp.DefaultConfig()
			cfg.DisableFrontEnd = c.disabled
			ts := newBenchServer(b, cfg, projections.DefaultConfig())
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- ts.hkp.Serve(ctx, ln) }()
			defer func() { cancel(); <-served }()

			body := "keytext=" + url.QueryEscape(armored(b, fixtureBytes(b, "grace.pgp")))
			req := []byte(fmt.Sprintf("POST /pks/add HTTP/1.1\r\nHost: keys.test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			post := func() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("upload: %s", resp.Status)
				}
			}
			post()
			before := hkp.FrontServed(ts.hkp)
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				post()
			}
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
			if served := hkp.FrontServed(ts.hkp) - before; c.disabled && served != 0 || !c.disabled && served != uint64(b.N) {
				b.Fatalf("the front end answered %d of %d uploads", served, b.N)
			}
		})
	}
}
