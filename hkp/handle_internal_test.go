package hkp

import (
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
