package hkp

// The HTTP/1.x front end for lookups.
//
// net/http spends about 28 µs of CPU on an empty request on this kind of
// machine, against about 15 µs for a loop that reads a request and writes
// its answer on the connection's own goroutine: per request it starts a
// goroutine for a background read, clones the header map, and passes every
// byte through two layers of buffered writers. On 2 cores shared with the
// load generator, the p99 of a cached op=get grows with the CPU each
// request costs (docs/benchmarks.md, "what sets the p99 of a cached get").
//
// So every connection starts here. The front end reads request heads
// itself, and answers a GET of /pks/lookup — what clients send nearly
// always — and a POST of /pks/add with a small body of declared length —
// an upload as gpg, sq and curl send it — through the same handler chain
// net/http would call (ServeHTTP
// behind the Config's Middleware: the rate limiter, metrics and the access
// log see it alike), with net/http's own parser (http.ReadRequest) and
// net/http's rules for the answer's framing (writeHead). Anything else —
// another path or method, a body on a lookup, an upload's body chunked or
// over frontBodyMax or MaxPostBytes, Expect, Upgrade, a head over 4 KiB, a
// Host header this file does not vouch for, a head ReadRequest rejects, a
// TLS connection — hands the connection over, with the bytes already
// read, to net/http's Server, which serves it from then on. So net/http
// alone decides what to do with every unusual request: the hostile_*
// tests' promises hold on both paths, and an answer on the fast path is
// the one net/http would send (TestFrontEndMatchesNetHTTP).
//
// What differs, knowingly: a request's context on the fast path is
// context.Background() — never cancelled when the client goes away, and
// without net/http's ServerContextKey and LocalAddrContextKey values (no
// lookup handler uses either; the waits of a lookup and of an upload have
// their own bounds, and an upload's append ignores cancellation anyway).
// And a client whose head is handed over part-read gets net/http's
// ReadHeaderTimeout afresh from the hand-over, so at most twice the
// limit in all — still bounded, as the slowloris tests check.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

const (
	// frontHeadMax is the largest request head the front end reads; a
	// larger one (long cookies, a big query) goes to net/http, which
	// allows up to MaxHeaderBytes.
	frontHeadMax = 4 << 10
	// frontBodyMax is the largest upload body the front end reads: a
	// key or two, as clients upload them (the benchmark's average is
	// 6 KiB). Larger bodies go to net/http, so that the front end never
	// reads more than net/http would discard after an answer (256 KiB).
	frontBodyMax = 64 << 10
	// frontStreamAt is how much of an answer of known length is gathered
	// before it is written: smaller answers go out in one write with
	// their head; larger ones are written as the handler writes them.
	frontStreamAt = 64 << 10
)

// frontListener is the listener net/http's Server accepts from: it hands
// net/http only the connections the front end gave up on. Its own accept
// loop takes every connection from the real listener.
type frontListener struct {
	ln      net.Listener
	handler http.Handler // what net/http's Server runs too
	log     zerolog.Logger
	served  *atomic.Uint64 // requests answered by the front end
	// timeouts, as net/http applies them
	readHeader, read, idle, write time.Duration
	// maxPost is the body limit of uploads now (Config.MaxPostBytes,
	// which a reload may change).
	maxPost func() int64
	// cut is set once wait gives up on the connections still busy: a
	// body read ended by Close is then not resumed.
	cut atomic.Bool

	handoff   chan net.Conn // connections for net/http
	acceptErr chan error    // the real listener's last error
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error

	// headParsers holds the buffered readers http.ReadRequest parses
	// heads from, shared by the connections: the request it returns
	// holds copies, not the buffer, so an idle connection keeps only its
	// own 4 KiB.
	headParsers sync.Pool
	// bodies holds the buffers answers are gathered in (*[]byte), so
	// that an idle connection holds none.
	bodies sync.Pool

	mu    sync.Mutex
	conns map[net.Conn]struct{} // connections the front end is serving
	wg    sync.WaitGroup
}

func (s *Server) newFrontListener(ln net.Listener, h http.Handler) *frontListener {
	c := s.conf()
	fl := &frontListener{
		ln:         ln,
		handler:    h,
		log:        s.log,
		served:     &s.frontServed,
		readHeader: c.ReadHeaderTimeout,
		read:       c.ReadTimeout,
		maxPost:    func() int64 { return s.conf().MaxPostBytes },
		idle:       c.IdleTimeout,
		write:      c.WriteTimeout,
		handoff:    make(chan net.Conn),
		acceptErr:  make(chan error, 1),
		closed:     make(chan struct{}),
		conns:      make(map[net.Conn]struct{}),
	}
	fl.headParsers.New = func() any { return bufio.NewReaderSize(nil, frontHeadMax) }
	fl.bodies.New = func() any { b := make([]byte, 0, 8<<10); return &b }
	go fl.acceptLoop()
	return fl
}

// acceptLoop accepts connections and serves each on its own goroutine.
// Temporary errors (out of file descriptors) are retried with a growing
// pause, as net/http does; any other ends the loop and is passed to
// net/http's Serve through Accept.
func (fl *frontListener) acceptLoop() {
	var pause time.Duration
	for {
		c, err := fl.ln.Accept()
		if err != nil {
			select {
			case <-fl.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // net/http's own test for accept errors
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				fl.log.Warn().Err(err).Dur("retry_in", pause).Msg("accept failed")
				time.Sleep(pause)
				continue
			}
			fl.acceptErr <- err
			return
		}
		pause = 0
		if _, isTLS := c.(*tls.Conn); isTLS {
			go fl.handOver(c, nil)
			continue
		}
		if !fl.track(c) {
			c.Close()
			continue
		}
		go fl.serveConn(c)
	}
}

// Accept returns the next connection handed over to net/http.
func (fl *frontListener) Accept() (net.Conn, error) {
	select {
	case c := <-fl.handoff:
		return c, nil
	case err := <-fl.acceptErr:
		return nil, err
	case <-fl.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and lets the front end's idle connections go:
// their pending reads end at once (net/http's Shutdown closes its idle
// connections alike); answers being written are finished first.
func (fl *frontListener) Close() error {
	fl.closeOnce.Do(func() {
		close(fl.closed)
		fl.closeErr = fl.ln.Close()
		fl.mu.Lock()
		for c := range fl.conns {
			c.SetReadDeadline(aLongTimeAgo)
		}
		fl.mu.Unlock()
	})
	return fl.closeErr
}

func (fl *frontListener) Addr() net.Addr { return fl.ln.Addr() }

// aLongTimeAgo is a deadline that has passed: it ends a pending read.
var aLongTimeAgo = time.Unix(1, 0)

// wait waits for the front end's connections to finish, or, once ctx is
// done, cuts those still writing (a client that stopped reading).
func (fl *frontListener) wait(ctx context.Context) {
	done := make(chan struct{})
	go func() { fl.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	fl.cut.Store(true)
	// Cut again until all are gone: a connection may set a new deadline
	// for its next write just after a cut.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		fl.mu.Lock()
		for c := range fl.conns {
			c.SetDeadline(aLongTimeAgo)
		}
		fl.mu.Unlock()
		select {
		case <-done:
			return
		case <-tick.C:
		}
	}
}

func (fl *frontListener) shuttingDown() bool {
	select {
	case <-fl.closed:
		return true
	default:
		return false
	}
}

// track records c as served by the front end, unless it is closing.
func (fl *frontListener) track(c net.Conn) bool {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if fl.shuttingDown() {
		return false
	}
	fl.conns[c] = struct{}{}
	fl.wg.Add(1)
	return true
}

func (fl *frontListener) untrack(c net.Conn) {
	fl.mu.Lock()
	delete(fl.conns, c)
	fl.mu.Unlock()
	fl.wg.Done()
}

// handOver gives c to net/http, which reads the bytes in buffered first.
// c is closed instead if the listener closes before net/http takes it.
func (fl *frontListener) handOver(c net.Conn, buffered []byte) {
	if len(buffered) > 0 {
		c = &handedConn{Conn: c, buffered: buffered}
	}
	select {
	case fl.handoff <- c:
	case <-fl.closed:
		c.Close()
	}
}

// handedConn is a connection handed to net/http with the bytes the front
// end had read from it but not answered.
type handedConn struct {
	net.Conn
	buffered []byte
}

func (c *handedConn) Read(p []byte) (int, error) {
	if len(c.buffered) > 0 {
		n := copy(p, c.buffered)
		c.buffered = c.buffered[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http half-close the connection, as it does on a TCP
// connection of its own before closing after an oversized body.
func (c *handedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// frontConn is one connection the front end serves.
type frontConn struct {
	fl         *frontListener
	c          net.Conn
	remoteAddr string
	buf        []byte // request bytes read: buf[:n]
	n          int
	headReader bytes.Reader // the head being parsed
	started    time.Time    // when the request being read began
	head       []byte       // the answer's head being written, reused
	dead       bool         // a write failed: close after this answer
}

// serveConn serves requests on c until it closes, idles out, or sends
// something the front end leaves to net/http; then it hands c over.
func (fl *frontListener) serveConn(c net.Conn) {
	fc := &frontConn{fl: fl, c: c, buf: make([]byte, frontHeadMax)}
	if ra := c.RemoteAddr(); ra != nil {
		fc.remoteAddr = ra.String()
	}
	handOver := fc.serveRequests()
	fl.untrack(c) // from here on Close no longer ends its reads
	if !handOver {
		c.Close()
		return
	}
	// net/http reads the unanswered bytes first, and sets its own
	// deadlines as it reads.
	c.SetReadDeadline(time.Time{})
	fl.handOver(c, fc.buf[:fc.n])
}

// serveRequests answers requests until the connection is to be closed
// (false) or handed over to net/http (true).
func (fc *frontConn) serveRequests() (handOver bool) {
	afterPost := false
	for first := true; ; first = false {
		end, ok := fc.readHead(first, afterPost)
		if !ok {
			return false
		}
		if end == 0 {
			return true // no whole head: cut short or over frontHeadMax
		}
		req, ok := fc.eligible(end)
		if !ok {
			return true
		}
		afterPost = req.Method == http.MethodPost
		var body *frontBody
		if req.ContentLength > 0 {
			body = &frontBody{fc: fc, off: end, left: req.ContentLength, deadline: fc.started.Add(fc.fl.read)}
			req.Body = body
			fc.c.SetReadDeadline(body.deadline)
		}
		keep := fc.serve(req)
		if body != nil {
			if !keep || body.left > 0 {
				body.lingerClose()
				return false
			}
			// The answer's head went out after the rest of the body was
			// read (writeHead): the next request starts where it ends.
			end = body.off
		}
		copy(fc.buf, fc.buf[end:fc.n])
		fc.n -= end
		if !keep || fc.fl.shuttingDown() {
			return false
		}
	}
}

// readHead reads until buf holds a whole request head and returns its
// length. It reports false when the connection is to be closed: the
// client went away or was silent too long, or the listener is closing.
// It returns 0 and true when there will be no whole head for the front
// end — one longer than buf, or cut short by the client — which net/http
// is then to read and answer as it would.
func (fc *frontConn) readHead(first, afterPost bool) (int, bool) {
	// As net/http: the first request's head must arrive within
	// ReadHeaderTimeout; later ones may wait IdleTimeout to start, then
	// have ReadHeaderTimeout from their first byte.
	var started time.Time
	defer func() { fc.started = started }()
	if fc.n > 0 || first {
		started = time.Now()
		fc.c.SetReadDeadline(started.Add(fc.fl.readHeader))
	} else {
		fc.c.SetReadDeadline(time.Now().Add(fc.fl.idle))
	}
	// Checked after every deadline set: Close may have ended the reads
	// just before, with a deadline this one replaced.
	if fc.fl.shuttingDown() {
		return 0, false
	}
	// As net/http, too: a later request is read only once 4 of its bytes
	// have arrived (its Peek(4) between requests), and a connection that
	// ends before that is closed without an answer; after a POST, CRs and
	// LFs among those 4 are dropped (old clients end a body with CRLF).
	const laterStart = 4
	waiting := !first
	scanned := 0
	for {
		if waiting && fc.n >= laterStart {
			waiting = false
			if afterPost {
				k := 0
				for k < laterStart && (fc.buf[k] == '\r' || fc.buf[k] == '\n') {
					k++
				}
				copy(fc.buf, fc.buf[k:fc.n])
				fc.n -= k
			}
		}
		if !waiting {
			if end := headEnd(fc.buf[:fc.n], scanned); end > 0 {
				return end, true
			}
			scanned = max(0, fc.n-2)
		}
		if fc.n == len(fc.buf) {
			return 0, true // too long for the front end
		}
		m, err := fc.c.Read(fc.buf[fc.n:])
		fc.n += m
		if m > 0 && started.IsZero() {
			started = time.Now()
			fc.c.SetReadDeadline(started.Add(fc.fl.readHeader))
			if fc.fl.shuttingDown() {
				return 0, false
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && fc.n > 0 && !waiting && !fc.fl.shuttingDown() {
				return 0, true // a head cut short: net/http answers it
			}
			return 0, false
		}
	}
}

// headEnd returns the length of the request head at the start of b —
// through the empty line (CRLF or bare LF, which net/http accepts too)
// that ends it — or -1 if b holds no empty line yet. The search starts at
// from, where the previous one gave up.
func headEnd(b []byte, from int) int {
	for i := from; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// eligible parses the whole head buf[:end] with net/http's parser and returns
// the request if the front end answers it: over HTTP/1.0 or 1.1, a GET of
// /pks/lookup without a body, or a POST of /pks/add with a body of
// declared length up to frontBodyMax and MaxPostBytes; neither with
// anything net/http would answer specially. The checks are net/http
// server's own or stricter.
func (fc *frontConn) eligible(end int) (*http.Request, bool) {
	head := fc.buf[:end]
	if end < 16 {
		return nil, false
	}
	// The cheap test first: most requests pass it.
	upload := string(head[:16]) == "POST /pks/add HT"
	if !upload && string(head[:16]) != "GET /pks/lookup?" && string(head[:16]) != "GET /pks/lookup " {
		return nil, false
	}
	fc.headReader.Reset(head)
	br := fc.fl.headParsers.Get().(*bufio.Reader)
	br.Reset(&fc.headReader)
	req, err := http.ReadRequest(br)
	rest := br.Buffered()
	br.Reset(nil)
	fc.fl.headParsers.Put(br)
	if err != nil || rest > 0 {
		return nil, false
	}
	if req.ProtoMajor != 1 || req.ProtoMinor > 1 || req.URL.Host != "" || len(req.TransferEncoding) != 0 ||
		req.Header["Expect"] != nil || req.Header["Upgrade"] != nil || req.Header["Transfer-Encoding"] != nil {
		return nil, false
	}
	switch {
	case upload:
		// A body of unknown length (none declared) or a large one is
		// net/http's to read; so is one over the limit, which it answers
		// 413 without reading.
		if req.Method != http.MethodPost || req.URL.Path != "/pks/add" || req.URL.RawQuery != "" ||
			req.ContentLength <= 0 || req.ContentLength > min(frontBodyMax, fc.fl.maxPost()) {
			return nil, false
		}
	case req.Method != http.MethodGet || req.URL.Path != "/pks/lookup" || req.ContentLength != 0:
		return nil, false
	}
	// ReadRequest has moved the Host header to req.Host, and failed on two.
	if req.Host == "" && req.ProtoMinor == 1 || !plainHost(req.Host) {
		return nil, false // net/http answers 400 or decides
	}
	for k, vv := range req.Header {
		if !plainFieldName(k) {
			return nil, false
		}
		for _, v := range vv {
			if !plainFieldValue(v) {
				return nil, false
			}
		}
	}
	req.RemoteAddr = fc.remoteAddr
	return req, true
}

// plainHost reports whether h is a host or host:port of the characters
// names and IP addresses use (a subset of what net/http accepts).
func plainHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._:[]", c) >= 0) {
			return false
		}
	}
	return true
}

// plainFieldName reports whether k is a token (RFC 9110 §5.6.2).
func plainFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// plainFieldValue reports whether v has no control characters but tab.
func plainFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// serve answers req and reports whether the connection stays open.
func (fc *frontConn) serve(req *http.Request) (keep bool) {
	fc.fl.served.Add(1)
	fc.c.SetWriteDeadline(time.Now().Add(fc.fl.write))
	buf := fc.fl.bodies.Get().(*[]byte)
	w := &frontResponse{fc: fc, req: req, header: make(http.Header, 16), declared: -1, body: (*buf)[:0],
		// Read before the handler runs, as net/http does: it may change
		// req.Header.
		wants10KeepAlive: req.ProtoMinor == 0 && hasToken(req.Header.Get("Connection"), "keep-alive"),
		wantsClose:       req.Close || hasToken(req.Header.Get("Connection"), "close"),
	}
	w.reqBody, _ = req.Body.(*frontBody)
	defer func() {
		if p := recover(); p != nil {
			// As net/http: the connection is cut, and a panic other than
			// ErrAbortHandler is logged with its stack.
			if p != http.ErrAbortHandler {
				stack := make([]byte, 16<<10)
				stack = stack[:runtime.Stack(stack, false)]
				fc.fl.log.Error().Str("panic", fmt.Sprint(p)).Bytes("stack", stack).Str("remote_addr", fc.remoteAddr).Msg("http: panic serving request")
			}
			keep = false
		}
		// The answer's buffer goes back to the listener's pool, so an
		// idle connection holds none (one that grew past two streaming
		// thresholds is dropped).
		if cap(w.body) <= 2*frontStreamAt {
			*buf = w.body[:0]
			fc.fl.bodies.Put(buf)
		}
	}()
	fc.fl.handler.ServeHTTP(w, req)
	return w.finish()
}

// frontBody is the body of an upload the front end serves: the bytes
// already read past the head (fc.buf[off:fc.n]) first, then the
// connection, up to the declared length — never past it, so the next
// request's bytes stay where the front end reads heads. Reads end at the
// request's deadline (started + ReadTimeout, as net/http's), with
// io.ErrUnexpectedEOF if the client closes early.
type frontBody struct {
	fc       *frontConn
	off      int   // the next body byte in fc.buf, while off < fc.n
	left     int64 // body bytes not read yet
	deadline time.Time
	err      error // the connection's read error, once there was one
	// sawEOF: the client closed before the end of the body. As with
	// net/http's body, the read that found it says io.ErrUnexpectedEOF,
	// later ones io.EOF, and the answer does not say Connection: close
	// (the next read of a head ends the connection).
	sawEOF bool
}

func (b *frontBody) Read(p []byte) (int, error) {
	if b.left == 0 || b.sawEOF {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	if b.off < b.fc.n {
		n := copy(p, b.fc.buf[b.off:b.fc.n])
		b.off += n
		b.left -= int64(n)
		return n, nil
	}
	for {
		n, err := b.fc.c.Read(p)
		b.left -= int64(n)
		if err == nil || n > 0 && b.left == 0 {
			return n, nil
		}
		if b.resumable(err) {
			if n > 0 {
				return n, nil
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			b.sawEOF = true
			return n, io.ErrUnexpectedEOF
		}
		b.err = err
		return n, err
	}
}

// resumable reports whether a read was ended by the listener's Close, not
// by the request's own deadline, and if so sets that deadline again: Close
// ends the reads of idle connections but, as net/http's Shutdown, lets a
// request being read finish — unless the wait for it has given up.
func (b *frontBody) resumable(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) || b.fc.fl.cut.Load() || !b.fc.fl.shuttingDown() || !time.Now().Before(b.deadline) {
		return false
	}
	b.fc.c.SetReadDeadline(b.deadline)
	return true
}

// Close does nothing: what the handler leaves unread is dropped before the
// answer's head goes out (writeHead), as net/http does.
func (b *frontBody) Close() error { return nil }

// lingerClose is for a connection closed after its answer with part of the
// body unread: closed at once, the kernel would answer the unread bytes
// with a reset that can destroy the answer on its way to the client. As
// net/http (closeWriteAndWait), it half-closes, gives the client up to
// half a second to send the rest, reading it, and leaves the close to the
// caller.
func (b *frontBody) lingerClose() {
	if b.left == 0 || b.err != nil || b.sawEOF {
		return
	}
	if cw, ok := b.fc.c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if d := time.Now().Add(500 * time.Millisecond); d.Before(b.deadline) {
		b.deadline = d
		b.fc.c.SetReadDeadline(d)
	}
	b.discard()
}

// discard reads and drops what the handler left of the body, and reports
// whether the connection can carry another request.
func (b *frontBody) discard() bool {
	if b.left == 0 || b.sawEOF {
		return true
	}
	if b.err != nil {
		return false
	}
	if k := min(int64(b.fc.n-b.off), b.left); k > 0 {
		b.off += int(k)
		b.left -= k
		if b.left == 0 {
			return true
		}
	}
	// Nothing unread is left in fc.buf (off == n): read into it as
	// scratch.
	b.fc.n, b.off = 0, 0
	for b.left > 0 {
		if _, err := b.Read(b.fc.buf[:min(int64(len(b.fc.buf)), b.left)]); err != nil {
			// Even the client's early close: net/http's discard, too,
			// fails on it when the handler had not met it already.
			return false
		}
	}
	return true
}

// frontChunkAt is how much of an answer of undeclared length is gathered
// before it goes out chunked: net/http's bufferBeforeChunkingSize.
const frontChunkAt = 2048

// frontResponse is the http.ResponseWriter of a request the front end
// answers. The answer goes out as net/http would frame it (writeHead).
type frontResponse struct {
	fc          *frontConn
	req         *http.Request
	header      http.Header
	body        []byte // gathered, not written yet
	status      int
	wroteHeader bool
	headSent    bool
	chunked     bool
	declared    int64 // the Content-Length the handler set, or -1
	written     int64 // body bytes the handler wrote
	closeAfter  bool
	sniff       []byte     // the write that sends the head, after body
	reqBody     *frontBody // an upload's body, whatever the handler did with req.Body
	// what the request asked for (net/http's wants10KeepAlive, wantsClose)
	wants10KeepAlive, wantsClose bool
}

func (w *frontResponse) Header() http.Header { return w.header }

func (w *frontResponse) WriteHeader(code int) {
	if w.wroteHeader {
		return // net/http logs "superfluous WriteHeader" and ignores it
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code)) // as net/http
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// An informational answer (none of our handlers send one) goes
		// out at once, before the final one.
		w.fc.head = appendStatusLine(w.fc.head[:0], w.req.ProtoMinor == 1, code)
		w.header.WriteSubset((*appendWriter)(&w.fc.head), map[string]bool{"Content-Length": true, "Transfer-Encoding": true})
		w.fc.head = append(w.fc.head, "\r\n"...)
		w.fc.write(w.fc.head)
		return
	}
	w.wroteHeader = true
	w.status = code
	if cl := w.header.Get("Content-Length"); cl != "" {
		// An invalid length is ignored but, as in net/http (which drops
		// it from the handler's header after cloning that), still
		// written unless the answer is chunked.
		if v, err := strconv.ParseInt(cl, 10, 64); err == nil && v >= 0 {
			w.declared = v
		}
	}
}

func (w *frontResponse) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	// Counted even when refused, as net/http does: a handler that writes
	// past its length has the connection closed after the answer.
	w.written += int64(len(p))
	if w.declared >= 0 && w.written > w.declared {
		return 0, http.ErrContentLength
	}
	if w.headSent {
		if err := w.send(false, p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	// An answer of known length is gathered up to frontStreamAt and goes
	// out with its head in one write; one of unknown length up to
	// frontChunkAt, as net/http, then chunked.
	limit := frontStreamAt
	if w.declared < 0 {
		limit = frontChunkAt
	}
	if len(w.body)+len(p) <= limit {
		w.body = append(w.body, p...)
		return len(p), nil
	}
	w.sniff = p // the head's Content-Type may be sniffed from it
	if err := w.send(false, w.body, p); err != nil {
		return 0, err
	}
	w.body = w.body[:0]
	return len(p), nil
}

// finish writes what the handler left unwritten and reports whether the
// connection stays open.
func (w *frontResponse) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headSent || w.chunked {
		w.send(true, w.body)
	}
	if w.declared >= 0 && bodyAllowed(w.status) && w.written != w.declared {
		w.closeAfter = true // a short answer: the client must not wait for more
	}
	return !w.closeAfter && !w.fc.dead
}

// send writes the head if it has not gone out yet, then data — as one
// chunk if the answer is chunked, followed by the last chunk when the
// handler is done — in one write.
func (w *frontResponse) send(handlerDone bool, data ...[]byte) error {
	var pieces [6][]byte
	n := 0
	if !w.headSent {
		w.writeHead(handlerDone)
		pieces[n] = w.fc.head
		n++
	}
	size := 0
	for _, d := range data {
		size += len(d)
	}
	var chunkHead [20]byte
	if w.chunked && size > 0 {
		pieces[n] = append(strconv.AppendInt(chunkHead[:0], int64(size), 16), "\r\n"...)
		n++
	}
	for _, d := range data {
		pieces[n] = d
		n++
	}
	if w.chunked && size > 0 {
		pieces[n] = crlf
		n++
	}
	if w.chunked && handlerDone {
		pieces[n] = lastChunk
		n++
	}
	_, err := w.fc.write(pieces[:n]...)
	return err
}

var crlf, lastChunk = []byte("\r\n"), []byte("0\r\n\r\n")

// writeHead builds the answer's status line and header in fc.head with
// net/http's rules (chunkWriter.writeHeader in net/http/server.go, Go
// 1.26): the handler's header sorted, then Date, the Content-Length it
// works out when the handler is done, a sniffed Content-Type, Connection
// and Transfer-Encoding; HTTP/1.0 clients get keep-alive only when they
// ask for it and the length is known. One difference, about handlers
// lookups do not have: net/http ignores header changes made after
// WriteHeader, which this reads when it writes the head.
func (w *frontResponse) writeHead(handlerDone bool) {
	w.headSent = true
	fc, req, h := w.fc, w.req, w.header
	keepAlives := !fc.fl.shuttingDown()
	var exclude map[string]bool
	var contentType, connection, transferEncoding string
	te := h.Get("Transfer-Encoding")
	setLength := false
	if _, set := h["Content-Length"]; !set && handlerDone && te == "" && bodyAllowed(w.status) {
		w.declared = int64(len(w.body))
		setLength = true
	}
	hasCL := w.declared >= 0
	if w.wants10KeepAlive && (hasCL || !bodyAllowed(w.status)) {
		if _, set := h["Connection"]; !set {
			connection = "keep-alive"
		}
	} else if req.ProtoMinor == 0 || w.wantsClose {
		w.closeAfter = true
	}
	if h.Get("Connection") == "close" || !keepAlives {
		w.closeAfter = true
	}
	// As net/http: a connection that stays open has the rest of the
	// request's body read before the answer goes out (some clients send
	// all before they read), and is closed if that fails.
	if w.reqBody != nil && !w.closeAfter && !w.reqBody.discard() {
		w.closeAfter = true
	}
	switch {
	case bodyAllowed(w.status):
		if _, set := h["Content-Type"]; !set && h.Get("Content-Encoding") == "" && te == "" && len(w.body)+len(w.sniff) > 0 {
			// From the answer's first bytes, as net/http sniffs the
			// first data it writes.
			first := w.body
			if len(first) < 512 && len(w.sniff) > 0 {
				first = append(first[:len(first):len(first)], w.sniff[:min(len(w.sniff), 512-len(first))]...)
			}
			contentType = http.DetectContentType(first)
		}
	case w.status == http.StatusNotModified:
		exclude = addExclude(exclude, "Content-Type", "Content-Length", "Transfer-Encoding")
	default:
		exclude = addExclude(exclude, "Content-Length", "Transfer-Encoding")
	}
	if hasCL && te != "" && te != "identity" {
		exclude = addExclude(exclude, "Content-Length")
		hasCL = false
	}
	switch {
	case !bodyAllowed(w.status) || hasCL:
		exclude = addExclude(exclude, "Transfer-Encoding")
	case req.ProtoMinor == 1 && te == "identity":
		w.closeAfter = true
		exclude = addExclude(exclude, "Transfer-Encoding")
	case req.ProtoMinor == 1:
		w.chunked = true
		transferEncoding = "chunked"
		exclude = addExclude(exclude, "Transfer-Encoding", "Content-Length")
	default: // HTTP/1.0: the answer ends when the connection does
		w.closeAfter = true
		exclude = addExclude(exclude, "Transfer-Encoding")
	}
	if w.closeAfter && (!keepAlives || !hasToken(h.Get("Connection"), "close")) {
		exclude = addExclude(exclude, "Connection")
		if req.ProtoMinor == 1 {
			connection = "close"
		}
	}
	b := appendStatusLine(fc.head[:0], req.ProtoMinor == 1, w.status)
	h.WriteSubset((*appendWriter)(&b), exclude)
	if _, set := h["Date"]; !set {
		b = append(time.Now().UTC().AppendFormat(append(b, "Date: "...), http.TimeFormat), "\r\n"...)
	}
	if setLength {
		b = append(strconv.AppendInt(append(b, "Content-Length: "...), w.declared, 10), "\r\n"...)
	}
	for _, kv := range [...][2]string{{"Content-Type", contentType}, {"Connection", connection}, {"Transfer-Encoding", transferEncoding}} {
		if kv[1] != "" {
			b = append(append(append(append(b, kv[0]...), ": "...), kv[1]...), "\r\n"...)
		}
	}
	fc.head = append(b, "\r\n"...)
}

func addExclude(m map[string]bool, keys ...string) map[string]bool {
	if m == nil {
		m = make(map[string]bool)
	}
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// write writes the pieces in one system call; after a failure it writes
// nothing more and the connection closes after this answer.
func (fc *frontConn) write(pieces ...[]byte) (int, error) {
	if fc.dead {
		return 0, net.ErrClosed
	}
	bufs := net.Buffers(pieces)
	n, err := bufs.WriteTo(fc.c)
	if err != nil {
		fc.dead = true
	}
	return int(n), err
}

// appendStatusLine appends net/http's status line for code.
func appendStatusLine(b []byte, http11 bool, code int) []byte {
	if http11 {
		b = append(b, "HTTP/1.1 "...)
	} else {
		b = append(b, "HTTP/1.0 "...)
	}
	b = strconv.AppendInt(b, int64(code), 10)
	if text := http.StatusText(code); text != "" {
		b = append(append(b, ' '), text...)
	} else {
		b = append(append(b, " status code "...), strconv.Itoa(code)...)
	}
	return append(b, "\r\n"...)
}

// bodyAllowed reports whether an answer with this status may have a body
// (RFC 9110 §6.4.1).
func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

// hasToken reports whether token is in the header value v,
// case-insensitively, bounded by its ends, spaces, commas or tabs: how
// net/http reads Connection (its hasToken), which the front end must
// match to keep or close a connection as net/http would.
func hasToken(v, token string) bool {
	for i := 0; i+len(token) <= len(v); i++ {
		if i > 0 && !isTokenBoundary(v[i-1]) || i+len(token) < len(v) && !isTokenBoundary(v[i+len(token)]) {
			continue
		}
		if asciiEqualFold(v[i:i+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

// asciiEqualFold is strings.EqualFold for ASCII letters only, as net/http
// compares tokens (no Unicode folding: "\u212aeep-alive" is not keep-alive).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// appendWriter lets http.Header.WriteSubset append to a byte slice.
type appendWriter []byte

func (w *appendWriter) Write(p []byte) (int, error) {
	*w = append(*w, p...)
	return len(p), nil
}

func (w *appendWriter) WriteString(s string) (int, error) {
	*w = append(*w, s...)
	return len(s), nil
}
