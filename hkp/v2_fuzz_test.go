package hkp_test

// FuzzAPIPaths sends arbitrary paths, methods and bodies to the v2 and VKS
// endpoints of a server holding real keys. Properties: no panic, never a
// 500 (every bad input is a 4xx or 501 with a message), and the common
// headers on every answer. `go test -fuzz=FuzzAPIPaths ./hkp` runs it
// longer.

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

func FuzzAPIPaths(f *testing.F) {
	for _, s := range []string{
		"/pks/v2/certs/by-vfingerprint/043B03A965A519A6CAE8B09425CED1786732CA2E5C",
		"/pks/v2/certs/by-vfingerprint/4/3b03a965a519a6cae8b09425ced1786732ca2e5c",
		"/pks/v2/certs/by-vfingerprint/ff/",
		"/pks/v2/certs/by-keyid/CED1786732CA2E5C",
		"/pks/v2/certs/by-identity/alice@example.org",
		"/pks/v2/certs/by-identity/%3Calice@example.org%3E",
		"/pks/v2/certs/by-identity/%zz",
		"/pks/v2/index/Alice%20Ed%20%3Calice@example.org%3E",
		"/pks/v2/prefixlog/2025-01-01",
		"/pks/v2/prefixlog/9999-99-99",
		"/pks/v2/certs",
		"/pks/v2//certs//",
		"/vks/v1/by-fingerprint/3B03A965A519A6CAE8B09425CED1786732CA2E5C",
		"/vks/v1/by-keyid/CED1786732CA2E5C",
		"/vks/v1/by-email/alice%40example.org",
		"/vks/v1/upload",
		"/vks/v1/request-verify",
	} {
		f.Add("GET", s, "", []byte(nil))
	}
	f.Add("POST", "/pks/v2/certs", "application/pgp", []byte{0x99, 0x00, 0x01})
	f.Add("POST", "/vks/v1/upload", "application/json", []byte(`{"keytext":"mQ=="}`))
	f.Add("POST", "/vks/v1/request-verify", "application/json", []byte(`{"token":"AAAA","addresses":["a@b"]}`))
	f.Add("POST", "/pks/v2/certs", "multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"keytext\"\r\n\r\n\x99\r\n--x--\r\n"))

	srv := fuzzServer(f)
	f.Fuzz(func(t *testing.T, method, path, contentType string, body []byte) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n?#") || len(path) > 4096 {
			return
		}
		path = "/" + strings.TrimLeft(path, "/")
		switch method {
		case "GET", "HEAD", "POST", "PUT", "OPTIONS", "DELETE":
		default:
			return
		}
		req, err := http.NewRequest(method, "http://keys.test"+path, bytes.NewReader(body))
		if err != nil {
			return
		}
		req.RemoteAddr = "127.0.0.1:1"
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != 501 && rec.Code != 503 {
			t.Fatalf("%s %s (%q, %d bytes): %d %s", method, path, contentType, len(body), rec.Code, rec.Body.Bytes())
		}
		if rec.Header().Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s %s: no CORS header", method, path)
		}
	})
}

// fuzzServer is a server holding the SKS test keys, for fuzzing.
func fuzzServer(f *testing.F) *hkp.Server {
	dir := f.TempDir()
	log, err := eventlog.Open(filepath.Join(dir, "log"), eventlog.DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	scfg := projections.DefaultConfig()
	scfg.Log = log
	store, err := projections.Open(filepath.Join(dir, "db"), scfg)
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); store.Follow(ctx, log) }()
	f.Cleanup(func() { cancel(); <-done; store.Close(); log.Close() })
	cfg := hkp.DefaultConfig()
	cfg.ApplyWait = 5 * time.Second
	srv, err := hkp.New(cfg, store, log, nil)
	if err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(testenv.SharedFile(f, "fixtures/sks/test-keys/keys-a.pgp"))
	if err != nil {
		f.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/pks/v2/certs", bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/pgp")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	if rec.Code != 200 {
		f.Fatalf("loading keys: %d %s", rec.Code, rec.Body.Bytes())
	}
	return srv
}
