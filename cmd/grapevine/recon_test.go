package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// reconRun runs `grapevine recon` in-process.
func reconRun(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb}
	err := e.reconCmd(context.Background(), args)
	return out.String(), errb.String(), err
}

// reconPeer is a grapevine serving HKP and recon on loopback, holding the
// keys of the given fixture files, and accepting sessions from 127.0.0.1.
type reconPeer struct {
	reconAddr, hkpAddr netip.AddrPort
}

func startReconPeer(t *testing.T, fixtures ...string) *reconPeer {
	t.Helper()
	dir := t.TempDir()
	logger := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	log, err := eventlog.Open(filepath.Join(dir, "log"), eventlog.Config{Logger: logger, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	scfg := projections.DefaultConfig()
	scfg.Logger = logger
	scfg.Log = log
	store, err := projections.Open(filepath.Join(dir, "db"), scfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fixtures {
		data, err := os.ReadFile(fixture(t, f))
		if err != nil {
			t.Fatal(err)
		}
		r := pgpkey.NewReader(bytes.NewReader(data))
		for {
			raw, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := log.Append(context.Background(), &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginImport, Key: raw.Raw}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	listen := func() net.Listener {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	hln, rln := listen(), listen()
	p := &reconPeer{reconAddr: netip.MustParseAddrPort(rln.Addr().String()), hkpAddr: netip.MustParseAddrPort(hln.Addr().String())}
	hsrv, err := hkp.New(hkp.DefaultConfig(), store, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	rcfg := recon.DefaultConfig()
	rcfg.Logger = logger
	rcfg.HTTPPort = int(p.hkpAddr.Port())
	members := recon.StaticMembers{{Name: "me", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, Port: 1}}
	rsrv, err := recon.New(rcfg, recon.PebbleTree(store.DB(), store.PtreeConfig()), store, log, members)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(3)
	go func() { defer wg.Done(); store.Follow(ctx, log) }()
	go func() { defer wg.Done(); hsrv.Serve(ctx, hln) }()
	go func() { defer wg.Done(); rsrv.Serve(ctx, rln) }()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		store.Close()
		log.Close()
	})
	return p
}

// The fixture files split into keys as import does: keys-a and keys-b
// hold three keys each.
func TestReconFetchesWhatThePeerHas(t *testing.T) {
	peer := startReconPeer(t, "keys-a.pgp")
	dir := t.TempDir()
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-b.pgp"))
	out, errOut, err := reconRun(t, "--basedir", dir, "--peer", peer.reconAddr.String())
	if err != nil {
		t.Fatalf("recon: %v\n%s", err, errOut)
	}
	for _, want := range []string{
		"recon with " + peer.reconAddr.String(),
		"session complete",
		"we lack 3 keys; we told the peer of 3 it lacks",
		"fetched from " + peer.hkpAddr.String(),
		"3 asked (0 skipped), 3 added",
		"applied up to log index 6",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	st := statsOf(t, dir)
	if st["keys"] != "6" || st["ptree_elements"] != "6" {
		t.Errorf("after recon: keys %s, ptree elements %s; want 6", st["keys"], st["ptree_elements"])
	}
	// Again: nothing left to fetch.
	out, _, err = reconRun(t, "--basedir", dir, "--peer", peer.reconAddr.String())
	if err != nil || !strings.Contains(out, "we lack 0 keys") || strings.Contains(out, "fetched from") {
		t.Errorf("second recon: %v\n%s", err, out)
	}
}

func TestReconBadArguments(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--basedir", dir},
		{"--basedir", dir, "--peer", "localhost"},
		{"--basedir", dir, "--peer", "localhost:0"},
		{"--basedir", dir, "--peer", "127.0.0.1:11370", "extra"},
	} {
		_, _, err := reconRun(t, args...)
		var u usageError
		if !errors.As(err, &u) || exitCode(err) != 2 {
			t.Errorf("recon %v: err %v, want a usage error", args, err)
		}
	}
	// Nobody listens: a plain failure naming the peer.
	port := freeLoopbackPort(t)
	_, _, err := reconRun(t, "--basedir", dir, "--peer", "127.0.0.1:"+strconv.Itoa(port))
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(port)) {
		t.Errorf("unreachable peer: %v", err)
	}
}

func freeLoopbackPort(t *testing.T) int {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestReconWithSKS runs `grapevine recon` against a real SKS 1.1.6
// (shared/tools/sks-peer) holding keys-a, from a basedir holding keys-b.
func TestReconWithSKS(t *testing.T) {
	testenv.RequireProgram(t, "sks")
	tool := testenv.SharedFile(t, "tools/sks-peer")
	tmp, err := os.MkdirTemp("", "gvsks")
	if err != nil {
		t.Fatal(err)
	}
	sdir := filepath.Join(tmp, "s")
	t.Cleanup(func() {
		exec.Command(tool, "stop", "--dir", sdir).Run()
		os.RemoveAll(tmp)
	})
	hkpPort, reconPort := freeLoopbackPort(t), freeLoopbackPort(t)
	start := time.Now()
	if out, err := exec.Command(tool, "start", "--dir", sdir, "--no-install", "--no-gossip",
		"--hkp-port", strconv.Itoa(hkpPort), "--recon-port", strconv.Itoa(reconPort),
		"--keys", fixture(t, "keys-a.pgp"), "--peer", "127.0.0.1:1").CombinedOutput(); err != nil {
		t.Fatalf("sks-peer start: %v\n%s", err, out)
	}
	t.Logf("SKS started in %v", time.Since(start).Round(time.Millisecond))
	dir := t.TempDir()
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-b.pgp"))
	start = time.Now()
	out, errOut, err := reconRun(t, "--basedir", dir, "--peer", "127.0.0.1:"+strconv.Itoa(reconPort))
	if err != nil {
		t.Fatalf("recon: %v\n%s\n%s", err, out, errOut)
	}
	t.Logf("grapevine recon took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	if !strings.Contains(out, "we lack 3 keys") || !strings.Contains(out, "3 added") {
		t.Errorf("output:\n%s", out)
	}
	want := slices.Sorted(slices.Values(slices.Concat(hashesOfFile(t, "keys-a.pgp"), hashesOfFile(t, "keys-b.pgp"))))
	if got := hashesOf(t, dir, ""); !slices.Equal(got, want) {
		t.Errorf("basedir holds %v, want %v", got, want)
	}
}

// hashesOfFile returns the SKS hashes of a fixture file's keys.
func hashesOfFile(t *testing.T, name string) []string {
	d := t.TempDir()
	data, err := os.ReadFile(fixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "k.pgp"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return hashesInDir(t, d)
}
