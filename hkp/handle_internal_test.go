package hkp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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
