package corpus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestUploadBodies: one body per key, each the key itself armored behind
// keytext=.
func TestUploadBodies(t *testing.T) {
	var buf bytes.Buffer
	if _, err := Generate(context.Background(), &buf, Options{N: 3, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	raws, err := pgpkey.Decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	bodies, err := UploadBodies(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 3 || len(raws) != 3 {
		t.Fatalf("%d bodies for %d keys, want 3", len(bodies), len(raws))
	}
	for i, b := range bodies {
		text, ok := strings.CutPrefix(string(b), "keytext=")
		if !ok {
			t.Fatalf("body %d does not start with keytext=", i)
		}
		armored, err := url.QueryUnescape(text)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgpkey.Decode([]byte(armored))
		if err != nil || len(got) != 1 || !bytes.Equal(got[0].Raw, raws[i].Raw) {
			t.Errorf("body %d does not carry key %d (%v)", i, i, err)
		}
	}
}

// TestUpload: every body is posted once, urlencoded, and answers that are
// not 2xx count as errors; a cancelled context posts nothing more.
// TestUploadResultTimeline: answers are counted in the interval they
// arrived in, empty intervals included.
func TestUploadResultTimeline(t *testing.T) {
	ms := time.Millisecond
	r := UploadResult{Answered: []time.Duration{1 * ms, 150 * ms, 199 * ms, 200 * ms, 650 * ms}}
	if got, want := r.Timeline(200*ms), []int{3, 1, 0, 1}; !slices.Equal(got, want) {
		t.Errorf("Timeline(200ms) = %v, want %v", got, want)
	}
	if got := (UploadResult{}).Timeline(ms); len(got) != 0 {
		t.Errorf("no answers: %v", got)
	}
}

func TestUpload(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/pks/add" || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[string(b)]++
		mu.Unlock()
		if string(b) == "keytext=bad" {
			http.Error(w, "refused", http.StatusUnprocessableEntity)
		}
	}))
	defer srv.Close()
	bodies := [][]byte{[]byte("keytext=a"), []byte("keytext=b"), []byte("keytext=bad"), []byte("keytext=c")}
	res := Upload(context.Background(), srv.URL, bodies, 3)
	if res.Keys != 4 || res.Errors != 1 {
		t.Errorf("Upload: %d keys, %d errors; want 4 and 1", res.Keys, res.Errors)
	}
	for _, b := range bodies {
		if got[string(b)] != 1 {
			t.Errorf("%s posted %d times, want once", b, got[string(b)])
		}
	}
	if res.Max <= 0 || res.Wall < res.Max {
		t.Errorf("Wall %v, Max %v: want 0 < Max <= Wall", res.Wall, res.Max)
	}
	if len(res.Answered) != 4 || !slices.IsSorted(res.Answered) || res.Answered[3] > res.Wall {
		t.Errorf("Answered %v (Wall %v): want 4 times in order, within Wall", res.Answered, res.Wall)
	}
	if tl := res.Timeline(res.Wall + 1); !slices.Equal(tl, []int{4}) {
		t.Errorf("Timeline over the whole upload: %v, want [4]", tl)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res := Upload(ctx, srv.URL, bodies, 2); res.Keys != 0 {
		t.Errorf("cancelled Upload posted %d bodies, want 0", res.Keys)
	}
}

// TestUploadServerCloses: a server that closes the connection after each
// answer (as an HTTP/1.0 server does) still gets every body exactly once,
// on a new connection each time.
func TestUploadServerCloses(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	conns := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[string(b)]++
		conns[r.RemoteAddr] = true
		mu.Unlock()
		w.Header().Set("Connection", "close")
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	var bodies [][]byte
	for i := range 20 {
		bodies = append(bodies, []byte(fmt.Sprintf("keytext=%d", i)))
	}
	res := Upload(context.Background(), srv.URL, bodies, 2)
	if res.Keys != 20 || res.Errors != 0 {
		t.Errorf("Upload: %d keys, %d errors; want 20 and 0", res.Keys, res.Errors)
	}
	for _, b := range bodies {
		if got[string(b)] != 1 {
			t.Errorf("%s posted %d times, want once", b, got[string(b)])
		}
	}
	if len(conns) != 20 {
		t.Errorf("%d connections for 20 answers that each closed theirs", len(conns))
	}
}

// TestUploadRetriesIdleClose: a keep-alive connection the server closed
// while it was idle is redialled, and the body on it is posted once.
func TestUploadRetriesIdleClose(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[string(b)]++
		mu.Unlock()
	}))
	srv.Start()
	defer srv.Close()
	c := &uploadConn{base: srv.URL}
	defer c.close()
	if !c.post([]byte("keytext=first")) {
		t.Fatal("first post failed")
	}
	srv.CloseClientConnections() // the server drops the idle connection
	if !c.post([]byte("keytext=second")) {
		t.Fatal("post after the server closed the idle connection failed")
	}
	if got["keytext=first"] != 1 || got["keytext=second"] != 1 {
		t.Errorf("posted %v, want each once", got)
	}
}
