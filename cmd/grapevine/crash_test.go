package main

// Crash safety of the daemon: `grapevine serve` runs as a child process
// (this test binary re-executed with GRAPEVINE_TEST_MAIN=1, see TestMain),
// eight clients upload distinct keys without pause, and the server is
// SIGKILLed at random moments and restarted. Afterwards every upload that
// was answered 200 must be served, and nothing may be duplicated. The
// promises and measured figures are in docs/reliability.md.

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// soak reports whether the long variants run: not -short and GRAPEVINE_SOAK=1.
func soak() bool { return !testing.Short() && os.Getenv("GRAPEVINE_SOAK") == "1" }

// childDaemon is `grapevine serve` in a child process on a fixed basedir
// and fixed loopback ports, so it can be killed and started again.
type childDaemon struct {
	t      *testing.T
	dir    string
	url    string
	cmd    *exec.Cmd
	done   chan error
	stderr *syncBuffer
	starts int
}

func newChildDaemon(t *testing.T, extraConf ...string) *childDaemon {
	t.Helper()
	dir := t.TempDir()
	port := testenv.FreePort(t)
	conf := fmt.Sprintf("hkp_address: 127.0.0.1\nhkp_port: %d\nrecon_address: 127.0.0.1\nrecon_port: %d\nhostname: 127.0.0.254\n%s\n",
		port, testenv.FreePort(t), strings.Join(extraConf, "\n"))
	if err := os.WriteFile(filepath.Join(dir, "sksconf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := &childDaemon{t: t, dir: dir, url: fmt.Sprintf("http://127.0.0.1:%d", port)}
	t.Cleanup(func() {
		if d.cmd != nil {
			d.cmd.Process.Signal(syscall.SIGKILL)
			<-d.done
		}
	})
	return d
}

// start starts the child; it does not wait for it to serve.
func (d *childDaemon) start() {
	d.t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "--basedir", d.dir)
	cmd.Env = append(os.Environ(), "GRAPEVINE_TEST_MAIN=1")
	d.stderr = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, d.stderr
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.cmd, d.done, d.starts = cmd, make(chan error, 1), d.starts+1
	go func() { d.done <- cmd.Wait() }()
}

// waitServing waits until /pks/health answers and returns how long it took.
func (d *childDaemon) waitServing() time.Duration {
	d.t.Helper()
	start := time.Now()
	c := &http.Client{Timeout: time.Second}
	for {
		resp, err := c.Get(d.url + "/pks/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return time.Since(start)
			}
		}
		select {
		case err := <-d.done:
			d.cmd = nil
			d.t.Fatalf("serve (start %d) exited: %v\n%s", d.starts, err, d.stderr.String())
		default:
		}
		if time.Since(start) > 30*time.Second {
			d.t.Fatalf("serve (start %d) did not answer in 30 s: %v\n%s", d.starts, err, d.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *childDaemon) kill() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	d.cmd = nil
}

// stop ends the child with SIGTERM and expects a clean exit.
func (d *childDaemon) stop() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("serve after SIGTERM: %v\n%s", err, d.stderr.String())
		}
	case <-time.After(30 * time.Second):
		// SIGQUIT makes the Go runtime print every goroutine: why it hangs.
		d.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			d.cmd.Process.Signal(syscall.SIGKILL)
			<-d.done
		}
		d.t.Errorf("serve did not stop within 30 s of SIGTERM\n%s", d.stderr.String())
	}
	d.cmd = nil
}

// newUploadKey makes a small, valid, distinct ed25519 key (with a cv25519
// subkey) and returns its binary transferable public key and fingerprint.
func newUploadKey(t *testing.T, n int) ([]byte, string) {
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	e, err := openpgp.NewEntity(fmt.Sprintf("Crash Test %d", n), "", fmt.Sprintf("crash%d@example.org", n), cfg)
	if err != nil {
		t.Error(err)
		return nil, ""
	}
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Error(err)
		return nil, ""
	}
	return buf.Bytes(), strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
}

// TestServeSurvivesSIGKILL: uploads acknowledged with 200 survive any
// number of SIGKILLs of the daemon, and none is stored twice.
func TestServeSurvivesSIGKILL(t *testing.T) {
	kills, clients := 20, 8
	if soak() {
		kills = 100
	}
	d := newChildDaemon(t)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))

	var (
		mu        sync.Mutex
		acked     = map[string]bool{} // answered 200
		uncertain = map[string]bool{} // sent, never answered 200
		stop      atomic.Bool
		seq       atomic.Int64
		failures  atomic.Int64
		wg        sync.WaitGroup
	)
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	upload := func(key []byte) (int, string, error) {
		resp, err := client.Post(d.url+"/pks/add", "application/pgp-keys", bytes.NewReader(key))
		if err != nil {
			return 0, "", err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b), nil
	}

	d.start()
	d.waitServing()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var key []byte
			var fpr string
			for !stop.Load() {
				if key == nil {
					key, fpr = newUploadKey(t, int(seq.Add(1)))
					if key == nil {
						return
					}
				}
				status, body, err := upload(key)
				if err == nil && status == 200 {
					mu.Lock()
					acked[fpr] = true
					delete(uncertain, fpr)
					mu.Unlock()
					key = nil
					continue
				}
				if err == nil {
					t.Errorf("upload %s: status %d %q", fpr, status, body)
				}
				// The server died under us (or is starting): the key may or
				// may not be in the log. Retry it; a retry of a stored key
				// is answered 200 without a new event.
				failures.Add(1)
				mu.Lock()
				uncertain[fpr] = true
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	var startups []time.Duration
	early := 0
	testStart := time.Now()
	for k := 0; k < kills; k++ {
		if k%4 == 3 {
			// Kill during start-up: while it opens the log and Pebble
			// and catches the projections up, before it serves.
			time.Sleep(time.Duration(rng.Intn(60)) * time.Millisecond)
			early++
		} else {
			time.Sleep(time.Duration(50+rng.Intn(200)) * time.Millisecond)
		}
		d.kill()
		tr.CloseIdleConnections()
		d.start()
		if k%4 != 2 { // the next round is an early kill
			startups = append(startups, d.waitServing())
		}
	}
	startups = append(startups, d.waitServing())
	// Let the clients upload to the last incarnation for a moment, then stop.
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	loadTime := time.Since(testStart)

	// Every acknowledged key is served, by fingerprint.
	present := func(fpr string) bool {
		resp, err := client.Get(d.url + "/pks/lookup?op=get&options=mr&search=0x" + fpr)
		if err != nil {
			t.Errorf("get %s: %v", fpr, err)
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 404 {
			return false
		}
		raws, err := pgpkey.Decode(body)
		if resp.StatusCode != 200 || err != nil || len(raws) != 1 {
			t.Errorf("get %s: status %d, %d keys, %v", fpr, resp.StatusCode, len(raws), err)
			return false
		}
		k, err := pgpkey.ParseKey(raws[0])
		if err != nil || k.Fingerprint().String() != fpr {
			t.Errorf("get %s: served another key: %v", fpr, err)
			return false
		}
		return true
	}
	var lost []string
	for fpr := range acked {
		if !present(fpr) {
			lost = append(lost, fpr)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged uploads are not served after %d kills, e.g. %s", len(lost), len(acked), kills, lost[0])
	}
	madeIt := 0
	for fpr := range uncertain {
		if present(fpr) {
			madeIt++
		}
	}

	// The key count is the acknowledged keys plus the unacknowledged ones
	// that made it, and the log holds one event per key: no retry, replay
	// or restart duplicated work.
	check := func(when string) {
		st := statsOf(t, d.dir)
		want := strconv.Itoa(len(acked) + madeIt)
		if st["keys"] != want {
			t.Errorf("%s: stats keys = %s, want %s (%d acknowledged + %d unacknowledged that made it)", when, st["keys"], want, len(acked), madeIt)
		}
		if st["log_offset"] != want {
			t.Errorf("%s: log holds %s events for %s keys", when, st["log_offset"], want)
		}
		if st["applied_keys"] != st["log_offset"] {
			t.Errorf("%s: applied_keys %s, log_offset %s", when, st["applied_keys"], st["log_offset"])
		}
	}
	check("through the running daemon")
	d.stop()
	check("offline after SIGTERM")
	if out, _, err := grapevine(t, "check", "--basedir", d.dir); err != nil {
		t.Errorf("check after %d kills: %v\n%s", kills, err, out)
	}

	var maxStartup time.Duration
	for _, s := range startups {
		maxStartup = max(maxStartup, s)
	}
	t.Logf("%d SIGKILLs (%d during start-up) in %v; %d uploads acknowledged, %d unacknowledged (%d of them stored), %d failed attempts retried; slowest restart to serving %v",
		kills, early, loadTime.Round(time.Millisecond), len(acked), len(uncertain), madeIt, failures.Load(), maxStartup.Round(time.Millisecond))
	if len(acked) < 5*kills {
		t.Errorf("only %d uploads acknowledged over %d kills: the load did not run", len(acked), kills)
	}
}
