package hkp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime/trace"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Appender appends events durably to the log; *eventlog.Log implements it.
type Appender interface {
	Append(ctx context.Context, events ...*eventlog.Event) (eventlog.Index, error)
}

// StatsSource supplies what the stats page shows besides key counts: the
// peers from membership and mailsync as written there. It may be nil.
type StatsSource interface {
	GossipPeers() []string
	MailsyncPeers() []string
}

// MailsyncStatuser is an optional interface of a StatsSource: a one-line
// status of outgoing mail sync for the stats page (sent, failed, queued,
// last error).
type MailsyncStatuser interface {
	MailsyncStatus() string
}

// Config configures a Server. Zero durations mean the DefaultConfig value.
type Config struct {
	Logger zerolog.Logger
	// ServerHeader is the Server response header. It must not be "sks_www":
	// pool spiders treat that token as an unproxied SKS (hkp.md §1.5).
	ServerHeader string
	// Version is the version shown on the stats page; spiders parse it with
	// ^\d+\.\d+\.\d+\+?$ (hkp.md §1.5).
	Version string
	// Software names the product in the JSON stats.
	Software string
	// Hostname, Nodename, Contact, HTTPPort, ReconPort and DebugLevel are
	// shown on the stats page (sksconf hostname, nodename, server_contact).
	Hostname, Nodename, Contact string
	HTTPPort, ReconPort         int
	DebugLevel                  int
	// MaxPostBytes caps request bodies of /pks/add and /pks/hashquery;
	// larger bodies get 413. Default 8 MiB (nginx's common
	// client_max_body_size; SKS had 5 MiB).
	MaxPostBytes int64
	// KeyLimits are the abuse limits every uploaded key passes before it
	// is appended (the flooded-key policy, pgpkey.Limits); the zero value
	// means pgpkey's defaults.
	KeyLimits pgpkey.Limits
	// RateLimit is the requests a second one client address may make,
	// sustained, and RateBurst how many at once; 0 turns limiting off.
	// Loopback clients are exempt. Behind a proxy listed in
	// TrustedProxies, the client is the address the proxy forwards in
	// X-Forwarded-For. Defaults 10 and 100: far above what gpg, sq or a
	// browser send, far below a scraper or a flood.
	RateLimit      float64
	RateBurst      int
	TrustedProxies []netip.Prefix
	// SummaryCacheKeys bounds the key summaries (verified self-signature
	// data for index pages) kept in memory, a few hundred bytes each.
	// Default 100000.
	SummaryCacheKeys int
	// ArmorCacheBytes bounds the armored op=get answers kept in memory,
	// by key version (armorCache); 0 turns the cache off. Default 32 MiB,
	// about 10,000 typical keys.
	ArmorCacheBytes int
	// MaxBodies bounds the request bodies (/pks/add, /pks/hashquery) read
	// and parsed at once, so memory stays below about MaxBodies × 2 ×
	// MaxPostBytes whatever the number of clients. A request waits up to
	// BodyWait for a slot, then gets 503 with Retry-After. Defaults 16 and
	// 5 s.
	MaxBodies int
	BodyWait  time.Duration
	// MaxMatches and MaxInternalMatches bound word searches (sksconf
	// max_matches 500, max_internal_matches 20000; hkp.md §4.2).
	MaxMatches, MaxInternalMatches int
	// MaxHashqueryHashes bounds one /pks/hashquery request. Default 10000
	// (SKS asks for 100 at a time).
	MaxHashqueryHashes int
	// HashqueryDataset says which datasets /pks/hashquery answers from:
	// "" both (an SKS hash with the SKS key, a Hockeypuck hash with the
	// Hockeypuck dataset's key), "sks" or "hockeypuck" only (hashquery.go).
	HashqueryDataset string
	// ApplyWait bounds how long a lookup waits for the projections to
	// apply uploads answered before it (uploads are answered once durable
	// in the log, not applied), so an uploaded key is served at once.
	// Default 5 s.
	ApplyWait time.Duration
	// AccessLog logs one line per request with the client address and
	// query. Off by default: HKP queries reveal who looks for whom.
	AccessLog bool
	// Timeouts of the http.Server (see net/http). Defaults: read header 10 s,
	// read 60 s, write 120 s, idle 120 s.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Middleware, when not nil, wraps the handler Serve runs (metrics);
	// it sees every request, on the front end's path and net/http's.
	Middleware func(http.Handler) http.Handler
	// IndexV6 includes v5 and v6 keys in every /pks/lookup answer. Off by
	// default: GnuPG 2.2 and Sequoia 0.27 fail a whole import on a v6 key,
	// so v1 serves one only when asked for by its fingerprint or long key
	// ID (legacyRecords; hkp.md §6.1).
	IndexV6 bool
	// DisableFrontEnd leaves every request to net/http. By default Serve
	// answers lookups and small uploads with a lighter HTTP/1.x front end
	// of its own and hands net/http everything else (frontend.go).
	DisableFrontEnd bool
}

// DefaultConfig returns the configuration `grapevine serve` starts from.
func DefaultConfig() Config {
	return Config{
		Logger:             zerolog.Nop(),
		ServerHeader:       "grapevine",
		Version:            "1.1.6",
		Software:           "grapevine",
		MaxPostBytes:       8 << 20,
		MaxMatches:         500,
		MaxInternalMatches: 20000,
		MaxHashqueryHashes: 10000,
		MaxBodies:          16,
		RateLimit:          10,
		RateBurst:          100,
		SummaryCacheKeys:   100000,
		ArmorCacheBytes:    32 << 20,
		BodyWait:           5 * time.Second,
		ApplyWait:          5 * time.Second,
		ReadHeaderTimeout:  10 * time.Second,
		ReadTimeout:        60 * time.Second,
		WriteTimeout:       120 * time.Second,
		IdleTimeout:        120 * time.Second,
	}
}

// Validate reports the first unusable field.
func (c Config) Validate() error {
	switch {
	case c.ServerHeader == "" || strings.HasPrefix(strings.ToLower(c.ServerHeader), "sks_www"):
		return fmt.Errorf("hkp: ServerHeader %q: must be set and not sks_www", c.ServerHeader)
	case c.MaxPostBytes < 1024:
		return fmt.Errorf("hkp: MaxPostBytes %d: must be at least 1024", c.MaxPostBytes)
	case c.MaxMatches < 1 || c.MaxInternalMatches < 1:
		return fmt.Errorf("hkp: MaxMatches %d / MaxInternalMatches %d: must be positive", c.MaxMatches, c.MaxInternalMatches)
	case c.SummaryCacheKeys < 1:
		return fmt.Errorf("hkp: SummaryCacheKeys %d: must be positive", c.SummaryCacheKeys)
	case c.ArmorCacheBytes < 0:
		return fmt.Errorf("hkp: ArmorCacheBytes %d: must not be negative", c.ArmorCacheBytes)
	case c.MaxBodies < 1 || c.BodyWait <= 0:
		return fmt.Errorf("hkp: MaxBodies %d / BodyWait %v: must be positive", c.MaxBodies, c.BodyWait)
	case c.MaxHashqueryHashes < 1:
		return fmt.Errorf("hkp: MaxHashqueryHashes %d: must be positive", c.MaxHashqueryHashes)
	case c.ApplyWait < 0 || c.ReadHeaderTimeout <= 0 || c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0:
		return fmt.Errorf("hkp: timeouts must be positive")
	}
	return nil
}

// Server answers HKP requests from the projections and appends uploads to
// the log. It is an http.Handler; Serve runs it on a listener.
type Server struct {
	// config is replaced whole by Reload; read it through conf().
	config atomic.Pointer[Config]
	// hdrs holds header values derived from config (setConfig).
	hdrs  atomic.Pointer[respHeaders]
	log   zerolog.Logger
	store *projections.Store
	app   Appender
	stats StatsSource
	mux   *http.ServeMux
	// bodies holds one token per request body being read (MaxBodies).
	bodies chan struct{}
	// summaries caches what index pages show about each key.
	summaries *summaryCache
	// armors caches armored op=get answers by key version (nil: off).
	armors *armorCache
	// limiter holds nil when rate limiting is off.
	limiter atomic.Pointer[rateLimiter]
	// unapplied is the log index of the newest upload answered before the
	// projections applied it, or 0; pending holds their keys (pending.go).
	unapplied atomic.Uint64
	pending   pendingUploads
	// prefixLogs caches /pks/v2/prefixlog answers of finished days.
	prefixLogs prefixLogCache
	// frontServed counts the requests the front end answered itself.
	frontServed atomic.Uint64
}

// conf returns the current configuration.
func (s *Server) conf() *Config { return s.config.Load() }

// respHeaders holds response header values derived from the configuration,
// made once per configuration rather than once per request.
type respHeaders struct {
	server       []string
	armorComment []byte // the armor's Comment line naming the host, or nil
}

// headerValues returns the header values of the current configuration.
func (s *Server) headerValues() *respHeaders { return s.hdrs.Load() }

// setConfig makes cfg the configuration in force.
func (s *Server) setConfig(cfg *Config) {
	s.hdrs.Store(&respHeaders{server: headerValue(cfg.ServerHeader), armorComment: armorComment(cfg.Hostname)})
	s.config.Store(cfg)
}

// headerValue returns a header value to store in a response's header map
// directly, without Header.Set allocating a slice for it on every request:
// the map of one response is its own, but the value slices may be shared
// because net/http only reads them, and Header.Add, the only way to extend
// one, reallocates a slice with no spare capacity.
func headerValue(v string) []string { return []string{v}[:1:1] }

// Header values every answer, or every answer of a kind, carries.
var (
	noCache          = headerValue("no-cache")
	expiresZero      = headerValue("0")
	anyOrigin        = headerValue("*")
	one              = headerValue("1")
	pgpKeysType      = headerValue("application/pgp-keys; charset=UTF-8")
	gpgkeyAttachment = headerValue("attachment; filename=gpgkey.asc")
	textPlain        = headerValue("text/plain; charset=UTF-8")
)

// Reload applies a new configuration to a running Server: search limits,
// body size, access logging, rate limits and the stats page's settings
// take effect at once. MaxBodies, BodyWait, SummaryCacheKeys and ArmorCacheBytes keep their
// values until restart, as do the timeouts of listeners already serving.
// Rate-limit buckets start afresh when the rate changes.
func (s *Server) Reload(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	old := s.conf()
	cfg.MaxBodies, cfg.BodyWait, cfg.SummaryCacheKeys, cfg.ArmorCacheBytes = old.MaxBodies, old.BodyWait, old.SummaryCacheKeys, old.ArmorCacheBytes
	if cfg.RateLimit != old.RateLimit || cfg.RateBurst != old.RateBurst || !slices.Equal(cfg.TrustedProxies, old.TrustedProxies) {
		s.limiter.Store(newRateLimiter(cfg.RateLimit, cfg.RateBurst, cfg.TrustedProxies))
	}
	s.setConfig(&cfg)
	return nil
}

// New returns a Server. stats may be nil.
func New(cfg Config, store *projections.Store, app Appender, stats StatsSource) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		log:       cfg.Logger.With().Str("component", "hkp").Logger(),
		store:     store,
		app:       app,
		stats:     stats,
		mux:       http.NewServeMux(),
		bodies:    make(chan struct{}, cfg.MaxBodies),
		summaries: newSummaryCache(cfg.SummaryCacheKeys),
		armors:    newArmorCache(cfg.ArmorCacheBytes),
	}
	s.setConfig(&cfg)
	s.limiter.Store(newRateLimiter(cfg.RateLimit, cfg.RateBurst, cfg.TrustedProxies))
	s.mux.Handle("/pks/lookup", s.handle(s.lookup, "GET", "HEAD"))
	s.mux.Handle("/pks/add", s.handle(s.add, "POST"))
	s.mux.Handle("/pks/hashquery", s.handle(s.hashquery, "POST"))
	s.mux.Handle("/pks/stats", s.handle(s.statsPage, "GET", "HEAD"))
	s.mux.Handle("/pks/health", s.handle(s.health, "GET", "HEAD"))
	s.registerAPIs() // /pks/v2/ and /vks/v1/ (v2.go, vks.go)
	s.mux.Handle("/", s.handle(s.web, "GET", "HEAD"))
	return s, nil
}

// traceRegion names the region of an HKP request in an execution trace.
const traceRegion = "hkp request"

// ServeHTTP sets the headers every answer carries (hkp.md §1.3, §1.4) and
// dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A region per request in an execution trace (a no-op unless one is
	// being taken: GRAPEVINE_PPROF's /debug/pprof/trace), so that `go tool
	// trace` can say where the slowest requests spent their time —
	// running, waiting for a CPU, in syscalls, blocked, or stopped by the
	// GC (docs/benchmarks.md, the stall work of issue 4).
	defer trace.StartRegion(r.Context(), traceRegion).End()
	h := w.Header()
	h["Server"] = s.headerValues().server
	h["Cache-Control"] = noCache
	h["Pragma"] = noCache
	h["Expires"] = expiresZero
	h["Access-Control-Allow-Origin"] = anyOrigin
	if !s.limiter.Load().admit(s, w, r) {
		return
	}
	if s.conf().AccessLog {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		s.mux.ServeHTTP(rec, r)
		s.log.Info().Str("remote_addr", r.RemoteAddr).Str("method", r.Method).Str("uri", r.RequestURI).
			Int("status", rec.status).Int64("bytes", rec.bytes).Dur("took", time.Since(start)).Msg("request")
		return
	}
	s.mux.ServeHTTP(w, r)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// httpError is an error with the status and SKS-style page it maps to.
type httpError struct {
	code    int
	title   string // SKS error page title, e.g. "No results found"
	message string // shown to the client; never internal details
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s: %s", e.code, e.title, e.message) }

func errNotFound(msg string) error { return &httpError{http.StatusNotFound, "No results found", msg} }
func errBadRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, "Bad request", fmt.Sprintf(format, args...)}
}

// handle adapts a handler returning an error: the one place errors become
// HTTP answers. OPTIONS is answered for CORS preflights on every path.
func (s *Server) handle(fn func(http.ResponseWriter, *http.Request) error, methods ...string) http.Handler {
	allow := strings.Join(append(methods, "OPTIONS"), ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			h := w.Header()
			h.Set("Allow", allow)
			h.Set("Access-Control-Allow-Methods", allow)
			h.Set("Access-Control-Allow-Headers", "Content-Type")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		ok := false
		for _, m := range methods {
			if r.Method == m {
				ok = true
			}
		}
		if !ok {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, &httpError{http.StatusMethodNotAllowed, "Method not allowed", r.Method + " is not supported here; use " + allow})
			return
		}
		sw := &startWriter{ResponseWriter: w}
		if err := fn(sw, r); err != nil {
			if sw.started {
				// The status line is gone and part of the body may be too:
				// an error page now would be glued to a half answer. Cut the
				// connection so the client sees a truncated answer, not a
				// complete-looking one (a client that hung up sees nothing).
				s.log.Debug().Err(err).Str("path", r.URL.Path).Msg("answer failed after it started")
				panic(http.ErrAbortHandler)
			}
			s.writeError(w, r, err)
		}
	})
}

// startWriter remembers whether a handler began its answer, so an error it
// returns afterwards is not written as a second status line.
type startWriter struct {
	http.ResponseWriter
	started bool
}

func (w *startWriter) WriteHeader(code int) {
	w.started = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *startWriter) Write(b []byte) (int, error) {
	w.started = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w *startWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
	case errors.As(err, &mbe):
		he = &httpError{http.StatusRequestEntityTooLarge, "Request Entity Too Large",
			fmt.Sprintf("request body larger than %d bytes", mbe.Limit)}
		w.Header().Set("Connection", "close")
	case errors.Is(err, projections.ErrTooManyResponses), errors.Is(err, projections.ErrInsufficientlySpecific):
		// SKS answers 500 with these texts; clients match on them (hkp.md §11).
		he = &httpError{http.StatusInternalServerError, "Error handling request", err.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		he = &httpError{http.StatusServiceUnavailable, "Service unavailable", "the request could not be completed in time; try again"}
	default:
		s.log.Error().Err(err).Str("path", r.URL.Path).Msg("request failed")
		he = &httpError{http.StatusInternalServerError, "Error handling request", "internal error"}
	}
	if he.code == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		// A failed append (a full disk): the log recovers by itself.
		w.Header().Set("Retry-After", "30")
	}
	page := ErrorPageHTML(he.title, he.message)
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.Header().Set("Content-Length", fmt.Sprint(len(page)))
	w.WriteHeader(he.code)
	if r.Method != http.MethodHead {
		w.Write([]byte(page))
	}
}

// Serve serves HKP on ln until ctx is done, then shuts down gracefully,
// letting in-flight requests finish for up to 10 s. Lookups and small
// uploads are answered by the front end (frontend.go) unless
// DisableFrontEnd is set; net/http's Server serves the rest.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var h http.Handler = s
	if s.conf().Middleware != nil {
		h = s.conf().Middleware(h)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.conf().ReadHeaderTimeout,
		ReadTimeout:       s.conf().ReadTimeout,
		WriteTimeout:      s.conf().WriteTimeout,
		IdleTimeout:       s.conf().IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          nil,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	var front *frontListener
	if !s.conf().DisableFrontEnd {
		front = s.newFrontListener(ln, h)
		ln = front
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx) // closes front too
		if front != nil {
			front.wait(sctx)
		}
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	if front != nil {
		front.Close()
		wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		front.wait(wctx)
		cancel()
	}
	return err
}

// readAllSized is io.ReadAll into one buffer sized from the announced
// length: io.ReadAll grows from 512 bytes, allocating and copying about
// three times a key's size. At most bodyPresizeMax is reserved before the
// bytes arrive: a client that announces 8 MiB and sends nothing holds 64
// KiB, not 8 MiB.
func readAllSized(r io.Reader, announced int64) ([]byte, error) {
	size := 512
	if announced > 0 {
		size = int(min(announced, bodyPresizeMax)) + 1 // + 1: room to read the EOF
	}
	b := make([]byte, 0, size)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grow as io.ReadAll does
		}
	}
}

// bodyPresizeMax is the most of an announced Content-Length that
// readAllSized allocates before the body arrives: the size of nearly every
// key.
const bodyPresizeMax = 64 << 10

// readBody reads a request body of at most MaxPostBytes, holding one of
// MaxBodies slots while the caller parses it: call the returned release
// when done. A request that finds no free slot within BodyWait gets 503
// with Retry-After. The wait does not end with the request's context: an
// HTTP/1.0 client that half-closes after sending cancels it, yet waits for
// its answer (hkp.md §1.2); with the context in the select, such an upload
// got 503 at random even with a slot free.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, func(), error) {
	if limit := s.conf().MaxPostBytes; r.ContentLength > limit {
		// Refused before reading a byte: a client that waits for
		// "100 Continue" (curl does above 1 MiB) gets the 413 instead of
		// sending its body, and one already sending is not cut off
		// halfway by our close, which the kernel turns into a reset that
		// can reach it before the answer.
		return nil, nil, &http.MaxBytesError{Limit: limit}
	}
	t := time.NewTimer(s.conf().BodyWait)
	defer t.Stop()
	select {
	case s.bodies <- struct{}{}:
	case <-t.C:
		w.Header().Set("Retry-After", "2")
		return nil, nil, &httpError{http.StatusServiceUnavailable, "Service unavailable", "too many uploads at once; try again shortly"}
	}
	release := func() { <-s.bodies }
	body, err := readAllSized(http.MaxBytesReader(w, r.Body, s.conf().MaxPostBytes), r.ContentLength)
	if err != nil {
		release()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, nil, err
		}
		return nil, nil, errBadRequest("reading request body: %v", err)
	}
	return body, release, nil
}
