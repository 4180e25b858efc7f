package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// addrRecorder is an http.Client that remembers the local addresses of
// its connections: the client addresses the daemon sees.
type addrRecorder struct {
	mu    sync.Mutex
	addrs []string
}

func (a *addrRecorder) client() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true, // a new client port per request
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				a.mu.Lock()
				a.addrs = append(a.addrs, c.LocalAddr().String())
				a.mu.Unlock()
			}
			return c, err
		},
	}}
}

// readDaemonLog reads the daemon's log file, once it holds want.
func readDaemonLog(t *testing.T, dir, want string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, daemonLogFile))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), want) || time.Now().After(deadline) {
			return string(b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDaemonLogsNoClientAddress: HKP queries reveal who looks for whom, so
// unless grapevine_access_log is on, the daemon's log holds neither client
// addresses nor what they searched for, even at the most verbose
// debuglevel. With the access log on, both are there (which shows the
// check can see them).
func TestDaemonLogsNoClientAddress(t *testing.T) {
	const secret = "zanzibarquux"
	alice := "3B03A965A519A6CAE8B09425CED1786732CA2E5C"
	for _, c := range []struct {
		name      string
		conf      []string
		accessLog bool
	}{
		{"default", nil, false},
		{"debuglevel=10", []string{"debuglevel: 10"}, false},
		{"access_log", []string{"grapevine_access_log: true"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			base, dir := startDaemon(t, c.conf...)
			var rec addrRecorder
			hc := rec.client()
			data, err := os.ReadFile(fixture(t, "keys-a.pgp"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hc.PostForm(base+"/pks/add", url.Values{"keytext": {string(data)}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			for _, q := range []string{
				"op=get&search=0x" + alice,
				"op=index&search=" + secret,
				"op=vindex&options=mr&search=" + secret + "@example.org",
				"op=get&search=" + secret,
				"op=index&search=alice",
				"op=x-" + secret,
			} {
				resp, err := hc.Get(base + "/pks/lookup?" + q)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			// Handlers log before they answer, so everything the requests
			// logged is in the file by now.
			logText := readDaemonLog(t, dir, `"serving"`)
			if !strings.Contains(logText, `"serving"`) {
				t.Fatalf("log file lacks the start-up lines:\n%s", logText)
			}
			rec.mu.Lock()
			addrs := rec.addrs
			rec.mu.Unlock()
			if len(addrs) < 7 {
				t.Fatalf("recorded %d client addresses, want 7", len(addrs))
			}
			leaks := []string{secret, "remote_addr", alice}
			for _, a := range addrs {
				_, port, _ := net.SplitHostPort(a)
				leaks = append(leaks, a, ":"+port+`"`)
			}
			var found []string
			for _, s := range leaks {
				if strings.Contains(logText, s) {
					found = append(found, s)
				}
			}
			if c.accessLog {
				if len(found) == 0 {
					t.Errorf("access log on, but no client address or query in the log:\n%s", logText)
				}
				return
			}
			if len(found) > 0 {
				t.Errorf("log holds %q with grapevine_access_log off:\n%s", found, logText)
			}
		})
	}
}

// TestDaemonStdoutLog: with sksconf stdoutlog no log file is written.
func TestDaemonStdoutLog(t *testing.T) {
	_, dir := startDaemon(t, "stdoutlog:")
	if _, err := os.Stat(filepath.Join(dir, daemonLogFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stdoutlog: %s exists (%v)", daemonLogFile, err)
	}
}

// TestLogFileReopen is logrotate's sequence: rename the file, SIGHUP (here
// a direct call of what SIGHUP runs), and new lines go to a new file at the
// old path while the renamed file keeps the old ones.
func TestLogFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "grapevine.log")
	lf, err := openLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	logger := zerolog.New(lf)
	logger.Info().Msg("before rotation")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	logger.Info().Msg("still to the renamed file")
	if err := lf.Reopen(); err != nil {
		t.Fatal(err)
	}
	logger.Info().Msg("after rotation")

	old, err := os.ReadFile(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Count(string(old), "\n"), 2; got != want || !strings.Contains(string(old), "before rotation") || !strings.Contains(string(old), "still to the renamed file") {
		t.Errorf("rotated file has %d lines, want %d:\n%s", got, want, old)
	}
	if got, want := string(cur), `{"level":"info","message":"after rotation"}`+"\n"; got != want {
		t.Errorf("new file = %q, want %q", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("log file mode %v, want %v (as SKS)", got, want)
	}

	// After Close, writes are dropped without error and Reopen does not
	// resurrect the file.
	if err := lf.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lf.Reopen(); err != nil {
		t.Fatal(err)
	}
	logger.Info().Msg("after close")
	if cur, _ := os.ReadFile(path); bytes.Contains(cur, []byte("after close")) {
		t.Errorf("write after Close reached the file:\n%s", cur)
	}
}

// TestDaemonLogger: without stdoutlog the daemon logs JSON lines at the
// debuglevel's level to DIR/grapevine/grapevine.log, says so on stderr, and
// stops writing once closed.
func TestDaemonLogger(t *testing.T) {
	dir := t.TempDir()
	conf := DefaultSKSConf()
	conf.Basedir = dir
	var stderr bytes.Buffer
	e := &env{stdout: io.Discard, stderr: &stderr}
	logger, closeLog, err := e.newDaemonLogger(conf)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, daemonLogFile)
	if !strings.Contains(stderr.String(), path) {
		t.Errorf("stderr does not say where the log goes: %q", stderr.String())
	}
	logger.Info().Msg("line one")
	logger.Debug().Msg("debug line") // debuglevel 3: not logged
	closeLog()
	logger.Info().Msg("after close")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); !strings.Contains(got, `"message":"line one"`) || strings.Contains(got, "debug line") || strings.Contains(got, "after close") {
		t.Errorf("log file:\n%s", got)
	}
}
