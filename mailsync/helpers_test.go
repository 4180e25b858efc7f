package mailsync_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/mailsync"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// testKeys returns the raw keys of the shared SKS test fixtures
// (keys-a.pgp: 3 keys, keys-b.pgp).
func testKeys(t testing.TB) []*pgpkey.RawKey {
	t.Helper()
	var out []*pgpkey.RawKey
	for _, name := range []string{"keys-a.pgp", "keys-b.pgp"} {
		data, err := os.ReadFile(testenv.SharedFile(t, "fixtures/sks/test-keys/"+name))
		if err != nil {
			t.Fatal(err)
		}
		raws, err := pgpkey.Decode(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, raws...)
	}
	if len(out) < 4 {
		t.Fatalf("got %d fixture keys, want at least 4", len(out))
	}
	return out
}

// node is a log plus projections kept current, in a temp dir.
type node struct {
	dir   string
	log   *eventlog.Log
	store *projections.Store
}

func newNode(t *testing.T) *node {
	t.Helper()
	dir := t.TempDir()
	lg, err := eventlog.Open(filepath.Join(dir, "log"), eventlog.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	scfg := projections.DefaultConfig()
	scfg.Log = lg
	st, err := projections.Open(filepath.Join(dir, "db"), scfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); st.Follow(ctx, lg) }()
	t.Cleanup(func() {
		cancel()
		<-done
		st.Close()
		lg.Close()
	})
	return &node{dir: dir, log: lg, store: st}
}

func (n *node) append(t *testing.T, o eventlog.Origin, raw *pgpkey.RawKey) eventlog.Index {
	t.Helper()
	idx, err := n.log.Append(context.Background(), &eventlog.Event{
		Kind: eventlog.KindKeySubmitted, Origin: o, Key: bytes.Clone(raw.Raw),
	})
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// recorder is a Transport that keeps every message, optionally failing.
type recorder struct {
	mu   sync.Mutex
	msgs [][]byte
	fail int // fail this many sends first
	sent chan struct{}
}

func newRecorder() *recorder { return &recorder{sent: make(chan struct{}, 100)} }

func (r *recorder) Send(ctx context.Context, msg []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return context.DeadlineExceeded
	}
	r.msgs = append(r.msgs, msg)
	r.sent <- struct{}{}
	return nil
}

func (r *recorder) messages() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.msgs...)
}

func testConfig(t *testing.T, n *node, tr mailsync.Transport) mailsync.Config {
	cfg := mailsync.DefaultConfig()
	cfg.From = "pgp-public-keys@a.test"
	cfg.Recipients = func() []string { return []string{"pgp-public-keys@b.test"} }
	cfg.Transport = tr
	cfg.CursorPath = filepath.Join(n.dir, "mailsync-cursor")
	cfg.RetryMin = 5e6 // 5 ms
	cfg.RetryMax = 2e7
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t))
	return cfg
}
