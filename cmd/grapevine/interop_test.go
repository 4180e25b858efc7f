package main

// Interop tests with the real clients operators' users run: GnuPG (gpg +
// dirmngr), Sequoia's sq, curl, and a real nginx reverse proxy in front.
// Each program is installed by .ci/install-deps; a missing one skips
// locally and fails under CI=true (testenv.RequireProgram).

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// startDaemon runs `grapevine serve` in-process on a fresh basedir with
// loopback ports and returns the HKP base URL. extraConf lines are
// appended to sksconf.
func startDaemon(t *testing.T, extraConf ...string) (hkpURL, dir string) {
	t.Helper()
	return startDaemonIn(t, t.TempDir(), nil, extraConf...)
}

// startDaemonIn is startDaemon on a given basedir; prepare, if not nil,
// runs after sksconf is written and before the daemon starts.
func startDaemonIn(t *testing.T, dir string, prepare func(dir string), extraConf ...string) (hkpURL, _ string) {
	t.Helper()
	port := testenv.FreePort(t)
	conf := fmt.Sprintf("hkp_address: 127.0.0.1\nhkp_port: %d\nrecon_address: 127.0.0.1\nrecon_port: %d\nhostname: 127.0.0.254\n%s\n",
		port, testenv.FreePort(t), strings.Join(extraConf, "\n"))
	if err := os.WriteFile(filepath.Join(dir, "sksconf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(dir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// exited is closed when run returns, with its error in serveErr: a
	// closed channel can be waited on by the start-up loop and by the
	// cleanup alike (a CI run once hung for 30 minutes in a cleanup that
	// waited for a result the loop had already taken).
	exited := make(chan struct{})
	var serveErr error
	var stderr syncBuffer
	go func() {
		defer close(exited)
		serveErr = run(ctx, []string{"serve", "--basedir", dir}, &stderr, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-exited:
			if serveErr != nil {
				t.Errorf("serve: %v\n%s", serveErr, stderr.String())
			}
		case <-time.After(time.Minute):
			t.Errorf("serve did not return within a minute of its context's end\n%s", stderr.String())
		}
	})
	hkpURL = fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(hkpURL + "/pks/health")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("serve exited: %v\n%s", serveErr, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon did not answer: %v\n%s", err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return hkpURL, dir
}

type syncBuffer struct {
	mu  chanMutex
	buf bytes.Buffer
}

type chanMutex struct{ ch chan struct{} }

func (m *chanMutex) lock() {
	if m.ch == nil {
		m.ch = make(chan struct{}, 1)
	}
	m.ch <- struct{}{}
}
func (m *chanMutex) unlock() { <-m.ch }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.lock()
	defer b.mu.unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.lock()
	defer b.mu.unlock()
	return b.buf.String()
}

// gnupg is a throwaway GnuPG home pointed at one keyserver.
type gnupg struct {
	t    *testing.T
	home string
	gpg  string
}

func newGnuPG(t *testing.T, keyserver string) *gnupg {
	t.Helper()
	gpg := testenv.RequireProgram(t, "gpg")
	testenv.RequireProgram(t, "dirmngr")
	// Short path: gpg-agent's socket path must fit in sun_path.
	home, err := os.MkdirTemp("", "gv-gpg-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(home, 0o700)
	if err := os.WriteFile(filepath.Join(home, "dirmngr.conf"), []byte("keyserver "+keyserver+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gnupg{t: t, home: home, gpg: gpg}
	t.Cleanup(func() {
		g.killDaemons()
		os.RemoveAll(home)
	})
	return g
}

func (g *gnupg) run(args ...string) (string, error) {
	g.t.Helper()
	cmd := exec.Command(g.gpg, append([]string{"--homedir", g.home, "--batch", "--no-tty"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (g *gnupg) mustRun(args ...string) string {
	g.t.Helper()
	out, err := g.run(args...)
	if err != nil {
		g.t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// killDaemons ends the gpg-agent and dirmngr this home started, by PID:
// the processes whose command line names this home directory.
func (g *gnupg) killDaemons() {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || !(strings.HasSuffix(args[0], "gpg-agent") || strings.HasSuffix(args[0], "dirmngr")) {
			continue
		}
		for i, a := range args {
			if a == "--homedir" && i+1 < len(args) && args[i+1] == g.home {
				syscall.Kill(pid, syscall.SIGTERM)
			}
		}
	}
}

func fixtureKeyList(t *testing.T, name string) []*pgpkey.Key {
	data, err := os.ReadFile(fixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	raws, err := pgpkey.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	var keys []*pgpkey.Key
	for _, r := range raws {
		k, err := pgpkey.ParseKey(r)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

// gnupgRoundTrip runs every gpg keyserver operation against keyserver.
func gnupgRoundTrip(t *testing.T, keyserver string) {
	alice := fixtureKeyList(t, "keys-a.pgp")[0]
	fpr := alice.Fingerprint().String()

	sender := newGnuPG(t, keyserver)
	sender.mustRun("--import", fixture(t, "keys-a.pgp"))
	out := sender.mustRun("--send-keys", fpr)
	if !strings.Contains(out, "sending key") {
		t.Fatalf("send-keys output: %s", out)
	}

	recv := newGnuPG(t, keyserver)
	out = recv.mustRun("--recv-keys", fpr)
	if !strings.Contains(out, "imported: 1") {
		t.Fatalf("recv-keys by fingerprint: %s", out)
	}
	out = recv.mustRun("--with-colons", "--search-keys", "alice@example.org")
	if !strings.Contains(out, "pub:"+fpr+":22:") || !strings.Contains(out, "uid:Alice Ed <alice@example.org>:") {
		t.Fatalf("search-keys by e-mail:\n%s", out)
	}
	out = recv.mustRun("--with-colons", "--search-keys", "Alice Second")
	if !strings.Contains(out, fpr) {
		t.Fatalf("search-keys by name:\n%s", out)
	}
	out = recv.mustRun("--refresh-keys")
	if !strings.Contains(out, "unchanged: 1") {
		t.Fatalf("refresh-keys: %s", out)
	}
	byID := newGnuPG(t, keyserver)
	out = byID.mustRun("--recv-keys", alice.KeyID().String())
	if !strings.Contains(out, "imported: 1") {
		t.Fatalf("recv-keys by long key ID: %s", out)
	}
	if out, err := byID.run("--recv-keys", "0000000000000000000000000000000000000000"); err == nil {
		t.Fatalf("recv-keys of an unknown key succeeded: %s", out)
	}
}

func TestGnuPGDirect(t *testing.T) {
	url, _ := startDaemon(t)
	gnupgRoundTrip(t, "hkp://"+strings.TrimPrefix(url, "http://"))
}

func TestGnuPGThroughNginx(t *testing.T) {
	url, _ := startDaemon(t)
	front := startNginx(t, strings.TrimPrefix(url, "http://"))
	gnupgRoundTrip(t, "hkp://"+front)
}

func TestSequoia(t *testing.T) {
	sq := testenv.RequireProgram(t, "sq")
	url, _ := startDaemon(t)
	server := "hkp://" + strings.TrimPrefix(url, "http://")
	grace := fixtureKeyList(t, "grace.pgp")[0]
	sqRun := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(sq, append([]string{"keyserver", "-p", "insecure", "-s", server}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("sq keyserver %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	sqRun("send", fixture(t, "grace.pgp"))
	for _, q := range []string{grace.Fingerprint().String(), grace.KeyID().String(), "grace@example.org"} {
		out := sqRun("get", "-B", q)
		raws, err := pgpkey.Decode([]byte(out))
		if err != nil || len(raws) != 1 {
			t.Fatalf("sq get %s: %d keys, %v", q, len(raws), err)
		}
		k, err := pgpkey.ParseKey(raws[0])
		if err != nil || k.Fingerprint() != grace.Fingerprint() {
			t.Fatalf("sq get %s returned another key: %v", q, err)
		}
	}
}

// TestCurl: HTTP/1.0 requests, Expect: 100-continue uploads, and a body
// just under the 8 MiB limit through nginx (and one over it refused).
func TestCurl(t *testing.T) {
	curl := testenv.RequireProgram(t, "curl")
	url, _ := startDaemon(t)
	front := "http://" + startNginx(t, strings.TrimPrefix(url, "http://"))
	curlRun := func(args ...string) (string, error) {
		cmd := exec.Command(curl, append([]string{"-sS", "--max-time", "60"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	form := filepath.Join(t.TempDir(), "form")
	armoredKey, err := os.ReadFile(fixture(t, "grace.pgp"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(form, armoredKey, 0o644)
	for _, base := range []string{url, front} {
		out, err := curlRun("--http1.0", "-o", "/dev/null", "-w", "%{http_code} %{http_version}", base+"/pks/lookup?op=stats")
		// grapevine answers HTTP/1.0 in kind; nginx always says 1.1.
		if want := "200 1"; err != nil || base == url && out != want || !strings.HasPrefix(out, "200 ") {
			t.Errorf("%s: HTTP/1.0 stats: %q %v", base, out, err)
		}
		out, err = curlRun("-H", "Expect: 100-continue", "-o", "/dev/null", "-w", "%{http_code}",
			"--data-urlencode", "keytext@"+form, base+"/pks/add")
		if err != nil || out != "200" {
			t.Errorf("%s: upload with Expect: 100-continue: %q %v", base, out, err)
		}
	}
	// A body of just under 8 MiB passes nginx (client_max_body_size 8m) and
	// grapevine (grapevine_max_post_bytes 8 MiB): a key with a large user
	// attribute, form-encoded.
	big := bigKey(t, 5<<20)
	bigForm := filepath.Join(t.TempDir(), "big")
	os.WriteFile(bigForm, big, 0o644)
	out, err := curlRun("-o", "/dev/null", "-w", "%{http_code} %{size_upload}", "--data-urlencode", "keytext@"+bigForm, front+"/pks/add")
	if err != nil || !strings.HasPrefix(out, "200 ") {
		t.Fatalf("large upload through nginx: %q %v", out, err)
	}
	if n, _ := strconv.Atoi(strings.Fields(out)[1]); n < 7<<20 || n > 8<<20 {
		t.Errorf("large upload body was %d bytes, want between 7 and 8 MiB", n)
	}
	over := filepath.Join(t.TempDir(), "over")
	os.WriteFile(over, bytes.Repeat([]byte("A"), 9<<20), 0o644)
	out, _ = curlRun("-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@"+over, url+"/pks/add")
	if out != "413" {
		t.Errorf("9 MiB upload straight to grapevine: %q, want 413", out)
	}
}

// bigKey returns a valid armored key with a user attribute of n bytes.
func bigKey(t *testing.T, n int) []byte {
	t.Helper()
	base := fixtureKeyList(t, "grace.pgp")[0]
	uat := make([]byte, n)
	for i := range uat {
		uat[i] = byte(i * 7)
	}
	k := &pgpkey.Key{Primary: base.Primary, DirectSigs: base.DirectSigs, UIDs: append(append([]pgpkey.Group(nil), base.UIDs...), pgpkey.Group{Packet: pgpkey.Packet{Tag: 17, Body: uat}}), Subkeys: base.Subkeys}
	var buf bytes.Buffer
	buf.WriteString("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n")
	enc := base64Lines(k.Marshal())
	buf.WriteString(enc)
	buf.WriteString("-----END PGP PUBLIC KEY BLOCK-----\n")
	return buf.Bytes()
}

// startNginx runs a real nginx on a free loopback port in front of
// backend, configured as the SKS seeds recommend, and returns host:port.
func startNginx(t *testing.T, backend string) string {
	t.Helper()
	nginx := testenv.RequireProgram(t, "nginx")
	dir := t.TempDir()
	port := testenv.FreePort(t)
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 127.0.0.1:%[2]d;
    client_max_body_size 8m;
    location ~ ^/(pks|vks)/ {
      proxy_pass http://%[3]s;
      proxy_pass_header Server;
      add_header Via "1.1 keys.test:%[2]d (nginx)";
      proxy_ignore_client_abort on;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
`, dir, port, backend)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not start: %v\n%s\n%s", err, out.String(), log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func base64Lines(b []byte) string {
	s := base64Std.EncodeToString(b)
	var out strings.Builder
	for len(s) > 64 {
		out.WriteString(s[:64])
		out.WriteByte('\n')
		s = s[64:]
	}
	out.WriteString(s)
	out.WriteByte('\n')
	return out.String()
}

var base64Std = base64.StdEncoding

// TestDumpAndStatsWhileServing: with the daemon holding the basedir,
// `grapevine dump` and `grapevine stats` go through it, and the dump is
// consistent while uploads continue.
func TestDumpAndStatsWhileServing(t *testing.T) {
	url, dir := startDaemon(t)
	for _, f := range []string{"keys-a.pgp", "keys-b.pgp"} {
		data, _ := os.ReadFile(fixture(t, f))
		resp, err := http.Post(url+"/pks/add", "application/pgp-keys", bytes.NewReader(data))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("upload %s: %v %v", f, err, resp)
		}
		resp.Body.Close()
	}
	st := settledStatsOf(t, dir)
	if st["keys"] != "6" || st["log_offset"] != "6" || st["applied_keys"] != "6" {
		t.Fatalf("stats through the daemon: %v", st)
	}
	if got := hashesOf(t, dir, "3"); len(got) != 3 {
		t.Fatalf("dump at 3 through the daemon: %d keys", len(got))
	}
	want := tsvHashes(t, fixture(t, "test-keys.tsv"), 6)
	if got := hashesOf(t, dir, ""); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("full dump through the daemon: %v, want %v", got, want)
	}
}
