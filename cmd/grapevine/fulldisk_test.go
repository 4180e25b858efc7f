package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// mountTmpfs mounts a tmpfs of size bytes on dir (created if needed) and
// unmounts it at cleanup. It needs root: without it the test skips with a
// clear message, and fails under CI=true.
func mountTmpfs(t *testing.T, dir string, size int64) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root privileges (the full-disk test mounts a small tmpfs)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		testenv.Missing(t, fmt.Sprintf("a tmpfs mount (mount %s: %v)", dir, err))
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// fillDisk writes a ballast file in dir until the filesystem is full and
// returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ballast")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	// Whatever fits in less than a page: a few more bytes.
	for {
		if _, err := f.Write(buf[:64]); err != nil {
			break
		}
	}
	return path
}

// fullDiskUpload posts one new key and returns the status, Retry-After and
// body.
func fullDiskUpload(t *testing.T, url string, key []byte) (int, string, string) {
	t.Helper()
	resp, err := http.Post(url+"/pks/add", "application/pgp-keys", bytes.NewReader(key))
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
}

// servedKey reports whether op=get finds fpr.
func servedKey(t *testing.T, url, fpr string) bool {
	t.Helper()
	resp, err := http.Get(url + "/pks/lookup?op=get&options=mr&search=0x" + fpr)
	if err != nil {
		t.Fatalf("get %s: %v", fpr, err)
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// runFullDisk is the shared body of the full-disk tests: mountAt is where
// the small filesystem goes, relative to the daemon's basedir.
func runFullDisk(t *testing.T, mountAt string) {
	d := newChildDaemon(t)
	mnt := filepath.Join(d.dir, mountAt)
	mountTmpfs(t, mnt, 8<<20)
	d.start()
	d.waitServing()

	var acked []string
	n := 0
	upload := func() (int, string, string, string) {
		n++
		key, fpr := newUploadKey(t, 500_000+n)
		status, retry, body := fullDiskUpload(t, d.url, key)
		if status == 200 {
			acked = append(acked, fpr)
		}
		return status, retry, body, fpr
	}
	for range 20 {
		if status, _, body, _ := upload(); status != 200 {
			t.Fatalf("upload before the disk fills: %d %s", status, body)
		}
	}

	ballast := fillDisk(t, mnt)
	// The disk is full: uploads get 503 with Retry-After and a message,
	// and nothing is stored for them; lookups go on.
	var refused []string
	for range 20 {
		status, retry, body, fpr := upload()
		if status == 200 {
			// Room left in a page or Pebble's memtable: keep going.
			continue
		}
		if status != http.StatusServiceUnavailable || retry == "" || !strings.Contains(body, "could not be stored") {
			t.Fatalf("upload on a full disk: %d, Retry-After %q, body %q; want 503 with Retry-After and a message", status, retry, body)
		}
		refused = append(refused, fpr)
	}
	if len(refused) == 0 {
		t.Fatal("no upload was refused on the full disk")
	}
	for _, fpr := range acked {
		if !servedKey(t, d.url, fpr) {
			t.Fatalf("acknowledged key %s not served while the disk is full", fpr)
		}
	}
	select {
	case err := <-d.done:
		d.cmd = nil
		t.Fatalf("the daemon exited on a full disk: %v\n%s", err, d.stderr.String())
	default:
	}

	// Space returns: uploads succeed again, without a restart.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, _, body, _ := upload()
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("uploads did not resume within 60 s of freeing space: %d %s\n%s", status, body, d.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range 10 {
		if status, _, body, _ := upload(); status != 200 {
			t.Fatalf("upload after recovery: %d %s", status, body)
		}
	}
	for _, fpr := range acked {
		if !servedKey(t, d.url, fpr) {
			t.Fatalf("acknowledged key %s not served after recovery", fpr)
		}
	}
	for _, fpr := range refused {
		if servedKey(t, d.url, fpr) {
			t.Errorf("key %s was answered 503 but is stored", fpr)
		}
	}

	// Nothing is damaged: a clean stop, then the stored keys are exactly
	// the acknowledged ones and check passes.
	d.stop()
	st := statsOf(t, d.dir)
	if got, want := st["keys"], strconv.Itoa(len(acked)); got != want {
		t.Errorf("stats keys %s, want the %s acknowledged", got, want)
	}
	if st["log_offset"] != st["keys"] || st["applied_keys"] != st["log_offset"] {
		t.Errorf("log_offset %s, applied_keys %s, keys %s: want all equal", st["log_offset"], st["applied_keys"], st["keys"])
	}
	if out, _, err := grapevine(t, "check", "--basedir", d.dir); err != nil {
		t.Errorf("check after the full disk: %v\n%s", err, out)
	}
	t.Logf("%d uploads acknowledged, %d refused with 503 while the disk was full", len(acked), len(refused))
	// What the daemon said about it (docs/reliability.md quotes it).
	var errs []string
	logText, _ := os.ReadFile(filepath.Join(d.dir, daemonLogFile))
	for _, l := range strings.Split(d.stderr.String()+string(logText), "\n") {
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"level":"warn"`) || strings.Contains(l, "recovered") {
			errs = append(errs, l)
		}
	}
	t.Logf("daemon errors and warnings (%d):\n%s", len(errs), strings.Join(errs[:min(len(errs), 8)], "\n"))
}

// TestFullDiskLog: the event log alone on a small filesystem that fills.
func TestFullDiskLog(t *testing.T) { runFullDisk(t, logDir) }

// TestFullDiskBasedir: log and projections (Pebble) on one small
// filesystem that fills.
func TestFullDiskBasedir(t *testing.T) { runFullDisk(t, stateDir) }

// TestFullDiskProjections: the projections' Pebble database alone on a
// small filesystem that fills. Uploads still go to the log, so they are
// durable and answered 200; the runner cannot apply them and retries with
// backoff (lookups serve what was applied before); once space returns it
// catches up by itself, and nothing is lost or damaged.
func TestFullDiskProjections(t *testing.T) {
	d := newChildDaemon(t)
	mnt := filepath.Join(d.dir, dbDir)
	mountTmpfs(t, mnt, 64<<20) // room for the keys below once the ballast goes
	d.start()
	d.waitServing()
	var acked []string
	for i := range 40 {
		key, fpr := newUploadKey(t, 600_000+i)
		if status, _, body := fullDiskUpload(t, d.url, key); status != 200 {
			t.Fatalf("upload before the disk fills: %d %s", status, body)
		}
		acked = append(acked, fpr)
	}
	ballast := fillDisk(t, mnt)
	// Large keys (1,000 certifications each, ~110 KB), so that Pebble's
	// write-ahead log outgrows what it preallocated.
	for i := range 120 {
		key, clean := floodedKeyBytes(t, uint64(700_000+i), 1000)
		fpr := clean.Fingerprint().String()
		status, _, body := fullDiskUpload(t, d.url, key)
		if status != 200 {
			t.Fatalf("upload with the projections' disk full: %d %s (the log has room)", status, body)
		}
		acked = append(acked, fpr)
	}
	select {
	case err := <-d.done:
		d.cmd = nil
		logText, _ := os.ReadFile(filepath.Join(d.dir, daemonLogFile))
		t.Fatalf("the daemon exited with the projections' disk full: %v\n%s%s", err, d.stderr.String(), logText)
	default:
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, fpr := range acked {
		for !servedKey(t, d.url, fpr) {
			if time.Now().After(deadline) {
				logText, _ := os.ReadFile(filepath.Join(d.dir, daemonLogFile))
				t.Fatalf("key %s not served 90 s after space returned\n%s", fpr, logText)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	d.stop()
	st := statsOf(t, d.dir)
	if got, want := st["keys"], strconv.Itoa(len(acked)); got != want || st["log_offset"] != want || st["applied_keys"] != want {
		t.Errorf("keys %s, log_offset %s, applied_keys %s; want %s each", got, st["log_offset"], st["applied_keys"], want)
	}
	if out, _, err := grapevine(t, "check", "--basedir", d.dir); err != nil {
		t.Errorf("check after the full disk: %v\n%s", err, out)
	}
	logText, _ := os.ReadFile(filepath.Join(d.dir, daemonLogFile))
	var errs []string
	for _, l := range strings.Split(string(logText), "\n") {
		if strings.Contains(l, `"level":"error"`) || strings.Contains(l, `"level":"warn"`) {
			errs = append(errs, l)
		}
	}
	t.Logf("daemon errors and warnings (%d):\n%s", len(errs), strings.Join(errs[:min(len(errs), 8)], "\n"))
}

// TestFullDiskProjectionsStop: a daemon told to stop while its projections
// cannot flush (their disk is full) stops anyway, with a non-zero status
// and a log line saying why, instead of waiting for space; the next start
// re-applies from the log and every acknowledged key is served.
func TestFullDiskProjectionsStop(t *testing.T) {
	d := newChildDaemon(t)
	mnt := filepath.Join(d.dir, dbDir)
	mountTmpfs(t, mnt, 64<<20)
	d.start()
	d.waitServing()
	var acked []string
	for i := range 20 {
		key, fpr := newUploadKey(t, 800_000+i)
		if status, _, body := fullDiskUpload(t, d.url, key); status != 200 {
			t.Fatalf("upload before the disk fills: %d %s", status, body)
		}
		acked = append(acked, fpr)
	}
	ballast := fillDisk(t, mnt)
	for i := range 120 {
		key, clean := floodedKeyBytes(t, uint64(900_000+i), 1000)
		if status, _, body := fullDiskUpload(t, d.url, key); status != 200 {
			t.Fatalf("upload with the projections' disk full: %d %s (the log has room)", status, body)
		}
		acked = append(acked, clean.Fingerprint().String())
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	var exitErr error
	select {
	case exitErr = <-d.done:
		d.cmd = nil
	case <-time.After(storeCloseTimeout + 45*time.Second):
		d.cmd.Process.Signal(syscall.SIGQUIT)
		err := <-d.done
		d.cmd = nil
		t.Fatalf("the daemon did not stop with its projections' disk full: %v\n%s", err, d.stderr.String())
	}
	logText, _ := os.ReadFile(filepath.Join(d.dir, daemonLogFile))
	if exitErr == nil {
		// The flush may have squeezed through; then the stop was clean
		// and there is nothing to prove in this run.
		t.Logf("the projections closed cleanly despite the full disk")
	} else if !strings.Contains(string(logText), "did not close within") {
		t.Fatalf("stopped with %v but no log line says the projections did not close\n%s%s", exitErr, d.stderr.String(), logText)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	d.start()
	d.waitServing()
	for _, fpr := range acked {
		if !servedKey(t, d.url, fpr) {
			t.Fatalf("key %s acknowledged before the stop is not served after the restart", fpr)
		}
	}
	d.stop()
	if out, _, err := grapevine(t, "check", "--basedir", d.dir); err != nil {
		t.Errorf("check after the restart: %v\n%s", err, out)
	}
}
