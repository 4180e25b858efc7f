// Command getfloor is the server side of getfloor.sh: the floor under
// grapevine's cached op=get at 64 connections (issue 4, docs/benchmarks.md
// "HKP: the floor of a cached get"). It answers every request with the
// same body and the headers a grapevine get answer carries, either through
// net/http (-mode nethttp: an empty handler, what any net/http server
// costs) or through a minimal HTTP/1.1 loop on each connection's goroutine
// (-mode loop: read a head, write the answer; no parsing beyond finding
// the head's end — a lower bound, not a server).
//
//	go run ./testdata/getfloor -mode nethttp -addr 127.0.0.1:18080 -size 1600
package main

import (
	"bufio"
	"bytes"
	"flag"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"
)

func main() {
	mode := flag.String("mode", "nethttp", "nethttp or loop")
	addr := flag.String("addr", "127.0.0.1:18080", "listen address")
	size := flag.Int("size", 1600, "body bytes (a median armored key is about 1,600)")
	flag.Parse()
	body := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01\n"), *size/64+1)[:*size]
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	switch *mode {
	case "nethttp":
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hd := w.Header()
			hd["Server"] = []string{"getfloor"}
			hd["Cache-Control"] = []string{"no-cache"}
			hd["Pragma"] = []string{"no-cache"}
			hd["Expires"] = []string{"0"}
			hd["Access-Control-Allow-Origin"] = []string{"*"}
			hd["Content-Type"] = []string{"application/pgp-keys; charset=UTF-8"}
			hd["Content-Length"] = []string{strconv.Itoa(len(body))}
			w.Write(body)
		})
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
			WriteTimeout: 120 * time.Second, IdleTimeout: 120 * time.Second}
		log.Fatal(srv.Serve(ln))
	case "loop":
		for {
			c, err := ln.Accept()
			if err != nil {
				log.Fatal(err)
			}
			go serveLoop(c, body)
		}
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
}

// serveLoop answers every request head on c with body.
func serveLoop(c net.Conn, body []byte) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4096)
	out := make([]byte, 0, len(body)+512)
	for {
		c.SetReadDeadline(time.Now().Add(120 * time.Second))
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
		}
		out = append(out[:0], "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nCache-Control: no-cache\r\nContent-Length: "...)
		out = strconv.AppendInt(out, int64(len(body)), 10)
		out = append(out, "\r\nContent-Type: application/pgp-keys; charset=UTF-8\r\nExpires: 0\r\nPragma: no-cache\r\nServer: getfloor\r\nDate: "...)
		out = time.Now().UTC().AppendFormat(out, http.TimeFormat)
		out = append(append(out, "\r\n\r\n"...), body...)
		c.SetWriteDeadline(time.Now().Add(120 * time.Second))
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}
