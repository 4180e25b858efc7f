package hkp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/rs/zerolog"
)

// TestHandleErrorAfterAnswerStarted: a handler that fails after it began
// its answer (a streamed get whose store read fails half way) must not have
// an error page glued to its half answer; the client sees a truncated
// answer instead of a complete-looking one.
func TestHandleErrorAfterAnswerStarted(t *testing.T) {
	s := &Server{log: zerolog.Nop()}
	cfg := DefaultConfig()
	s.setConfig(&cfg)
	h := s.handle(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "first half of the answer\n")
		http.NewResponseController(w).Flush()
		return errors.New("the store went away")
	}, "GET")
	ts := httptest.NewServer(h)
	defer ts.Close()
	resp, err := http.Get(ts.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Errorf("the half answer read as complete: %q", body)
	}
	if strings.Contains(string(body), "Error handling request") {
		t.Errorf("an error page was glued to the half answer: %q", body)
	}

	// Before the answer starts, the error still becomes an error page.
	h = s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return errNotFound("No keys found")
	}, "GET")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "No keys found") {
		t.Errorf("error before the answer: %d %q", rec.Code, rec.Body.String())
	}
}

// TestReadBodyIgnoresCanceledContext: a request whose context is canceled
// (an HTTP/1.0 client that half-closed after sending its body, hkp.md
// §1.2) still has its body read when a slot is free; it used to get 503
// at random.
func TestReadBodyIgnoresCanceledContext(t *testing.T) {
	s := &Server{log: zerolog.Nop()}
	cfg := DefaultConfig()
	s.setConfig(&cfg)
	s.bodies = make(chan struct{}, 1)
	for i := range 64 {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := httptest.NewRequest("POST", "/pks/add", strings.NewReader("keytext=x")).WithContext(ctx)
		body, release, err := s.readBody(httptest.NewRecorder(), r)
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		release()
		if string(body) != "keytext=x" {
			t.Fatalf("read %d: body %q", i, body)
		}
	}
}

// TestReadBodyAllocatesOnce: a body with a Content-Length is read into
// one buffer of about its size (io.ReadAll's doubling allocated and
// copied about three times as much), and an announced length that the
// body does not bring reserves at most bodyPresizeMax.
func TestReadBodyAllocatesOnce(t *testing.T) {
	s := &Server{log: zerolog.Nop()}
	cfg := DefaultConfig()
	s.setConfig(&cfg)
	s.bodies = make(chan struct{}, 1)
	allocated := func(content string, announced int64) uint64 {
		t.Helper()
		const runs = 50
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			r := httptest.NewRequest("POST", "/pks/add", strings.NewReader(content))
			r.ContentLength = announced
			body, release, err := s.readBody(httptest.NewRecorder(), r)
			if err != nil {
				t.Fatal(err)
			}
			release()
			if string(body) != content {
				t.Fatalf("body of %d bytes read as %d", len(content), len(body))
			}
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / runs
	}
	// The request, recorder and reader themselves: what a tiny body costs.
	overhead := allocated("k", 1)

	body := strings.Repeat("keytext=", 20000/8)
	if got := allocated(body, int64(len(body))) - overhead; got > uint64(len(body))*9/8+2*bytes.MinRead { // size classes round up
		t.Errorf("a %d-byte body allocated %d bytes beyond a tiny one's", len(body), got)
	}
	if got := allocated("keytext=x", cfg.MaxPostBytes) - overhead; got > bodyPresizeMax*9/8+2*bytes.MinRead {
		t.Errorf("announcing %d bytes and sending 9 allocated %d bytes", cfg.MaxPostBytes, got)
	}
}

// TestReadAllSized: whatever the announced length, the whole body comes
// back, and a read error is returned.
func TestReadAllSized(t *testing.T) {
	body := strings.Repeat("0123456789", 10000) // 100,000 bytes: beyond bodyPresizeMax
	for _, announced := range []int64{-1, 0, 1, 99, 100000, 100001, 1 << 30} {
		for _, size := range []int{0, 1, 512, 65536, 65537, len(body)} {
			got, err := readAllSized(iotest.OneByteReader(strings.NewReader(body[:size])), announced)
			if err != nil || string(got) != body[:size] {
				t.Fatalf("announced %d, %d bytes: read %d bytes, %v", announced, size, len(got), err)
			}
		}
	}
	broken := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader("keytext="), iotest.ErrReader(broken))
	if got, err := readAllSized(r, 100); !errors.Is(err, broken) || string(got) != "keytext=" {
		t.Fatalf("read error: %q, %v", got, err)
	}
}
