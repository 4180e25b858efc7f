package hkp_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// BenchmarkLookup answers lookups through the handler (no network) on the
// fixture keys, after one warm-up request: op=get by fingerprint (with the
// armor and fingerprint caches, which the warm-up fills, and without: what
// a get of a key not asked for lately costs) and the machine-readable index
// by a word every fixture key carries.
func BenchmarkLookup(b *testing.B) {
	const get = "/pks/lookup?op=get&options=mr&search=0x3B03A965A519A6CAE8B09425CED1786732CA2E5C"
	for _, c := range []struct {
		name, path string
		uncached   bool
	}{
		{"get", get, false},
		{"get-uncached", get, true},
		{"index-mr", "/pks/lookup?op=index&options=mr&search=example", false},
	} {
		b.Run(c.name, func(b *testing.B) {
			cfg, scfg := hkp.DefaultConfig(), projections.DefaultConfig()
			if c.uncached {
				cfg.ArmorCacheBytes, scfg.FingerprintCacheEntries = 0, 0
			}
			ts := newBenchServer(b, cfg, scfg)
			req := httptest.NewRequest(http.MethodGet, c.path, nil)
			req.RemoteAddr = "127.0.0.1:1234"
			w := httptest.NewRecorder()
			ts.hkp.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatalf("%s: %d %s", c.path, w.Code, w.Body)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w := httptest.NewRecorder()
				ts.hkp.ServeHTTP(w, req)
			}
		})
	}
}

// newBenchServer is newTestServer for benchmarks: the fixture keys
// uploaded and applied.
func newBenchServer(b testing.TB, cfg hkp.Config, scfg projections.Config) *testServer {
	dir := b.TempDir()
	lcfg := eventlog.DefaultConfig()
	lcfg.Logger = zerolog.Nop()
	log, err := eventlog.Open(filepath.Join(dir, "log"), lcfg)
	if err != nil {
		b.Fatal(err)
	}
	scfg.Log = log
	store, err := projections.Open(filepath.Join(dir, "db"), scfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close(); log.Close() })
	srv, err := hkp.New(cfg, store, log, nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []string{"keys-a.pgp", "keys-b.pgp", "grace.pgp"} {
		data, err := os.ReadFile(testenv.SharedFile(b, "fixtures/sks/test-keys/"+n))
		if err != nil {
			b.Fatal(err)
		}
		var arm bytes.Buffer
		aw, _ := armor.Encode(&arm, "PGP PUBLIC KEY BLOCK", nil)
		aw.Write(data)
		aw.Close()
		req := httptest.NewRequest(http.MethodPost, "/pks/add", bytes.NewBufferString(url.Values{"keytext": {arm.String()}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = "127.0.0.1:1234"
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("upload %s: %d %s", n, w.Code, w.Body)
		}
	}
	if _, err := store.CatchUp(context.Background(), log, nil); err != nil {
		b.Fatal(err)
	}
	return &testServer{log: log, store: store, hkp: srv}
}

// TestCachedGetAllocations bounds what a repeated op=get by fingerprint
// allocates in grapevine's code: with a writer whose header map is reused,
// what is left is the startWriter, the classified search and the
// Content-Length value (net/http adds its own per request: the request,
// its header map, the response's header map and its snapshot). The query
// is parsed without splitting it, a fingerprint decoded into the search
// itself, a loopback client without X-Forwarded-For costs the rate
// limiter nothing, and a one-key answer needs no slices of stand-ins:
// before, 12 allocations. Allocation sets the GC's pace, and each cycle's
// marking takes CPU from the requests queued behind it
// (docs/benchmarks.md, get6).
func TestCachedGetAllocations(t *testing.T) {
	ts := newBenchServer(t, hkp.DefaultConfig(), projections.DefaultConfig())
	req := httptest.NewRequest(http.MethodGet, "/pks/lookup?op=get&options=mr&search=0x3B03A965A519A6CAE8B09425CED1786732CA2E5C", nil)
	req.RemoteAddr = "127.0.0.1:1234"
	w := &reusedWriter{h: make(http.Header, 16)}
	ts.hkp.ServeHTTP(w, req) // fills the caches
	if w.code != http.StatusOK || w.n < 500 {
		t.Fatalf("get: status %d, %d bytes", w.code, w.n)
	}
	allocs := testing.AllocsPerRun(200, func() {
		clear(w.h)
		w.code, w.n = 0, 0
		ts.hkp.ServeHTTP(w, req)
	})
	if w.code != http.StatusOK {
		t.Fatalf("get: status %d", w.code)
	}
	if allocs > 4 {
		t.Errorf("a cached op=get allocates %.1f times, want at most 4", allocs)
	} else {
		t.Logf("%.1f allocations", allocs)
	}
}

// reusedWriter is an http.ResponseWriter that discards the body and whose
// header map the caller clears and reuses, so that only the handler's own
// allocations are counted.
type reusedWriter struct {
	h    http.Header
	code int
	n    int
}

func (w *reusedWriter) Header() http.Header { return w.h }
func (w *reusedWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *reusedWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	w.n += len(b)
	return len(b), nil
}
