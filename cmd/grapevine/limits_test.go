package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/mailsync"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// floodedKeyBytes returns a real ed25519 key carrying n fake third-party
// certifications on its user ID (CVE-2019-13050 style: random issuers,
// signatures that do not verify), binary, with its clean version.
func floodedKeyBytes(t *testing.T, seed uint64, n int) (flooded []byte, clean *pgpkey.Key) {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA}
	e, err := openpgp.NewEntity(fmt.Sprintf("Flooded %d", seed), "", fmt.Sprintf("flooded%d@example.org", seed), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	clean, err = projections.ParseEventKey(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 7))
	pkts := []pgpkey.Packet{clean.Primary}
	pkts = append(pkts, clean.DirectSigs...)
	pkts = append(pkts, clean.UIDs[0].Packet)
	pkts = append(pkts, clean.UIDs[0].Sigs...)
	created := uint32(e.PrimaryKey.CreationTime.Unix())
	for i := range n {
		hashed := []byte{5, 2, 0, 0, 0, 0, 22, 33, 4}
		binary.BigEndian.PutUint32(hashed[2:6], created+uint32(i)+1)
		for range 20 {
			hashed = append(hashed, byte(r.Uint32()))
		}
		b := []byte{4, 0x10, 22, 8}
		b = binary.BigEndian.AppendUint16(b, uint16(len(hashed)))
		b = append(b, hashed...)
		b = append(b, 0, 0, byte(r.Uint32()), byte(r.Uint32()))
		for range 2 {
			b = append(b, 1, 0)
			for range 32 {
				b = append(b, byte(r.Uint32()))
			}
		}
		pkts = append(pkts, pgpkey.Packet{Tag: pgpkey.TagSignature, Body: b})
	}
	for _, g := range clean.Subkeys {
		pkts = append(pkts, g.Packet)
		pkts = append(pkts, g.Sigs...)
	}
	for _, p := range pkts {
		flooded = pgpkey.AppendPacket(flooded, p)
	}
	return flooded, clean
}

// storedSigs returns the number of signatures on the stored key's user ID
// and the stored key, read from a closed basedir.
func storedKey(t *testing.T, b *basedir, clean *pgpkey.Key) *pgpkey.Key {
	t.Helper()
	rec, err := b.store.Latest(projections.RecordID(clean))
	if err != nil {
		t.Fatalf("key %s not stored: %v", clean.Fingerprint(), err)
	}
	k, err := projections.ParseEventKey(rec.Key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// checkTrimmed fails unless stored is clean plus exactly max third-party
// certifications.
func checkTrimmed(t *testing.T, path string, stored, clean *pgpkey.Key, max int) {
	t.Helper()
	if !stored.Contains(clean) {
		t.Errorf("%s: the stored key lost a self-signature", path)
	}
	if got, want := len(stored.UIDs[0].Sigs), len(clean.UIDs[0].Sigs)+max; got != want {
		t.Errorf("%s: stored user ID holds %d signatures, want %d", path, got, want)
	}
}

// maxLogKeyBytes returns the largest key an event of the log carries.
func maxLogKeyBytes(t *testing.T, lg *eventlog.Log) int {
	t.Helper()
	n := 0
	for idx := eventlog.Index(1); idx <= lg.LastIndex(); idx++ {
		ev, err := lg.Read(idx)
		if err != nil {
			t.Fatal(err)
		}
		n = max(n, len(ev.Key))
	}
	return n
}

// TestFloodedKeyOnEveryPath sends a key flooded with 3,000 fake
// certifications through each append path, with
// grapevine_max_certs_per_uid: 100 in sksconf: import, HKP upload, mail
// and recon's fetch store. Each stores the key with its self-signatures and
// 100 certifications, and no event in the log holds the flooded key.
func TestFloodedKeyOnEveryPath(t *testing.T) {
	const n, max = 3000, 100
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sksconf"), []byte("grapevine_max_certs_per_uid: "+strconv.Itoa(max)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type input struct {
		flooded []byte
		clean   *pgpkey.Key
	}
	var in []input
	for i := range 4 {
		f, c := floodedKeyBytes(t, uint64(100+i), n)
		in = append(in, input{f, c})
	}

	// import
	dump := filepath.Join(t.TempDir(), "flooded.pgp")
	if err := os.WriteFile(dump, in[0].flooded, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "import", "--basedir", dir, dump)

	b, err := openBasedir(dir, zerolog.Nop(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got := b.keyLimits.MaxCertsPerUID; got != max {
		t.Fatalf("basedir limits: MaxCertsPerUID %d, want %d from sksconf", got, max)
	}
	ctx := context.Background()

	// HKP upload
	hcfg := hkp.DefaultConfig()
	hcfg.KeyLimits = b.keyLimits
	hcfg.ApplyWait = 0
	hsrv, err := hkp.New(hcfg, b.store, b.log, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/pks/add", bytes.NewReader(in[1].flooded))
	req.Header.Set("Content-Type", "application/pgp-keys")
	rw := httptest.NewRecorder()
	hsrv.ServeHTTP(rw, req)
	if rw.Code != http.StatusOK {
		t.Fatalf("upload: %d %s", rw.Code, rw.Body.String())
	}

	// mail
	raws, err := pgpkey.Decode(in[2].flooded)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := pgpkey.ParseKey(raws[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appendMailKeys(ctx, b.log, b.store, b.keyLimits, "flood@example.org", []mailsync.IncomingKey{{Raw: raws[0], Key: mk}}); err != nil {
		t.Fatal(err)
	}

	// recon: the fetcher asks Novel, then appends the peer's bytes.
	rk, err := newReconKeys(b, b.keyLimits)
	if err != nil {
		t.Fatal(err)
	}
	defer rk.Close()
	fk, err := projections.ParseEventKey(in[3].flooded)
	if err != nil {
		t.Fatal(err)
	}
	if novel, err := rk.Novel(fk); err != nil || !novel {
		t.Fatalf("recon: Novel = %v, %v; want true", novel, err)
	}
	if _, err := rk.Append(ctx, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginRecon, Peer: "peer", Key: in[3].flooded}); err != nil {
		t.Fatal(err)
	}
	if err := b.catchUp(ctx, io.Discard, "test"); err != nil {
		t.Fatal(err)
	}

	for i, path := range []string{"import", "upload", "mail", "recon"} {
		checkTrimmed(t, path, storedKey(t, b, in[i].clean), in[i].clean, max)
	}
	if got, limit := maxLogKeyBytes(t, b.log), len(in[0].flooded)/5; got > limit {
		t.Errorf("an event holds a key of %d bytes: the flooded key (%d bytes) reached the log", got, len(in[0].flooded))
	}
	// The peer's hash is held, as far as recon can tell: never fetched again.
	if _, err := rk.ByHash(fk.Hash()); err != nil {
		t.Errorf("recon: the flooded key's hash is not remembered: %v", err)
	}
	// Sending the flooded key again changes nothing, on every path.
	if novel, err := rk.Novel(fk); err != nil || novel {
		t.Errorf("recon again: Novel = %v, %v; want false", novel, err)
	}
	rw = httptest.NewRecorder()
	req = httptest.NewRequest("POST", "/pks/add", bytes.NewReader(in[1].flooded))
	req.Header.Set("Content-Type", "application/pgp-keys")
	last := b.log.LastIndex()
	hsrv.ServeHTTP(rw, req)
	if rw.Code != http.StatusOK || b.log.LastIndex() != last {
		t.Errorf("upload again: %d, log %d → %d; want 200 and nothing appended", rw.Code, last, b.log.LastIndex())
	}
}

func TestHashMemoryIsDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trimmed")
	hm, err := openHashMemory(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	h := func(b byte) pgpkey.KeyHash { return pgpkey.KeyHash{b} }
	for i := range 5 {
		if err := hm.add(h(byte(i)), []byte{byte(i), 9}); err != nil {
			t.Fatal(err)
		}
	}
	if hm.len() != 3 {
		t.Errorf("holds %d hashes, want the max of 3", hm.len())
	}
	hm.Close()
	// A torn record at the end (a crash mid-write) is dropped at open.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{0xee, 1, 2})
	f.Close()
	hm, err = openHashMemory(path, 10)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if rid, ok := hm.get(h(byte(i))); !ok || !bytes.Equal(rid, []byte{byte(i), 9}) {
			t.Errorf("hash %d: %x, %v after reopening", i, rid, ok)
		}
	}
	if err := hm.add(h(7), []byte{7}); err != nil {
		t.Fatal(err)
	}
	hm.Close()
	hm, err = openHashMemory(path, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer hm.Close()
	if _, ok := hm.get(h(7)); !ok || hm.len() != 4 {
		t.Errorf("after a torn tail and one more add: %d hashes, hash 7 %v", hm.len(), ok)
	}
}

func TestKeyLimitsOptions(t *testing.T) {
	conf := "grapevine_max_key_bytes: 1_000_000\ngrapevine_max_packet_bytes: 4096\ngrapevine_max_sig_bytes: 2048\n" +
		"grapevine_max_uids: 10\ngrapevine_max_subkeys: 11\ngrapevine_max_sigs: 12\ngrapevine_max_certs_per_uid: -1\n"
	c, _, err := ParseSKSConf(strings.NewReader(conf), "sksconf")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := pgpkey.Limits{MaxKeyBytes: 1_000_000, MaxPacketBytes: 4096, MaxSigBytes: 2048, MaxUIDs: 10, MaxSubkeys: 11, MaxSigs: 12, MaxCertsPerUID: -1}
	if got := c.keyLimits(); got != want {
		t.Errorf("keyLimits = %+v, want %+v", got, want)
	}
	if got, want := DefaultSKSConf().keyLimits(), pgpkey.DefaultLimits(); got != want {
		t.Errorf("defaults = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"grapevine_max_uids: 0", "grapevine_max_certs_per_uid: 0", "grapevine_max_sig_bytes: 10", "grapevine_max_packet_bytes: -5"} {
		c, _, err := ParseSKSConf(strings.NewReader(bad+"\n"), "sksconf")
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), strings.SplitN(bad, ":", 2)[0]) {
			t.Errorf("%q: error %v, want one naming the option", bad, err)
		}
	}
}

// TestFloodedKeyReconWithSKS: a real SKS 1.1.6 holds a key flooded with
// 5,000 fake certifications. `grapevine recon` fetches it and stores it
// trimmed; a second run (a new process: only the durable memory can know)
// fetches nothing.
func TestFloodedKeyReconWithSKS(t *testing.T) {
	flooded, clean := floodedKeyBytes(t, 7, 5000)
	kdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(kdir, "flooded.pgp"), flooded, 0o644); err != nil {
		t.Fatal(err)
	}
	sks := testenv.StartSKS(t, testenv.SKSOptions{Keys: []string{kdir}, NoGossip: true, Peers: []string{"127.0.0.1:1"}})
	dir := t.TempDir()
	// The HKP port we announce is free: SKS's fetch of our keys fails
	// at once instead of reaching whatever listens on 11371.
	conf := fmt.Sprintf("hostname: 127.0.0.254\nhkp_port: %d\n", freeLoopbackPort(t))
	if err := os.WriteFile(filepath.Join(dir, "sksconf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "import", "--basedir", dir, fixture(t, "keys-b.pgp"))
	peer := "127.0.0.1:" + strconv.Itoa(sks.ReconPort)

	out, errOut, err := reconRun(t, "--basedir", dir, "--peer", peer)
	if err != nil {
		t.Fatalf("recon: %v\n%s\n%s", err, out, errOut)
	}
	t.Logf("first round:\n%s", out)
	if !strings.Contains(out, "1 asked") || !strings.Contains(out, "1 added") {
		t.Errorf("first round did not fetch and add the flooded key:\n%s", out)
	}
	// SKS serves one recon session at a time and may still be busy with
	// its side of the first (fetching from us): try again until it talks.
	for try := 0; ; try++ {
		out, errOut, err = reconRun(t, "--basedir", dir, "--peer", peer)
		if err == nil {
			break
		}
		if try == 20 {
			t.Fatalf("recon: %v\n%s\n%s", err, out, errOut)
		}
		sks.Run(t, "count") // a round trip to SKS's HKP side paces the retries
	}
	t.Logf("second round:\n%s", out)
	if !strings.Contains(out, "0 asked (1 skipped)") {
		t.Errorf("second round fetched again:\n%s", out)
	}
	b, err := openBasedir(dir, zerolog.Nop(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	checkTrimmed(t, "recon from SKS", storedKey(t, b, clean), clean, pgpkey.DefaultLimitCertsPerUID)
}

// TestFloodedKeyFromHockeypuckPeer: a flooded key fetched for the
// Hockeypuck dataset is stored trimmed, and the peer's Hockeypuck hash of
// the untrimmed key is remembered durably as held, so no later round — in
// this process or the next — fetches it again.
func TestFloodedKeyFromHockeypuckPeer(t *testing.T) {
	const max = 100
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "sksconf"), []byte("grapevine_max_certs_per_uid: "+strconv.Itoa(max)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	flooded, clean := floodedKeyBytes(t, 300, 3000)
	peerHash, err := projections.HockeypuckHash(flooded)
	if err != nil {
		t.Fatal(err)
	}
	fk, err := projections.ParseEventKey(flooded)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	b, err := openBasedir(dir, zerolog.Nop(), true)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := newReconKeys(b, b.keyLimits)
	if err != nil {
		t.Fatal(err)
	}
	hk := rk.Hockeypuck().(recon.KeyHasher)
	h, novel, err := hk.KeyHash(flooded, fk)
	if err != nil || !novel || h != peerHash {
		t.Fatalf("first fetch: KeyHash = %x, %v, %v; want %x, true", h, novel, err, peerHash)
	}
	if _, err := rk.Append(ctx, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginRecon, Peer: "hockeypuck", Key: flooded}); err != nil {
		t.Fatal(err)
	}
	if err := b.catchUp(ctx, io.Discard, "test"); err != nil {
		t.Fatal(err)
	}
	if err := b.store.CatchUpHockeypuck(ctx, b.log, b.log.LastIndex()); err != nil {
		t.Fatal(err)
	}
	checkTrimmed(t, "recon from Hockeypuck", storedKey(t, b, clean), clean, max)
	if got, limit := maxLogKeyBytes(t, b.log), len(flooded)/5; got > limit {
		t.Errorf("an event holds a key of %d bytes: the flooded key (%d bytes) reached the log", got, len(flooded))
	}
	rk.Close()
	b.Close()

	// A new process: only the durable memory can know.
	b, err = openBasedir(dir, zerolog.Nop(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rk, err = newReconKeys(b, b.keyLimits)
	if err != nil {
		t.Fatal(err)
	}
	defer rk.Close()
	hks := rk.Hockeypuck()
	if _, err := hks.ByHash(peerHash); err != nil {
		t.Errorf("the peer's Hockeypuck hash of the flooded key is not held: %v", err)
	}
	if _, novel, err := hks.(recon.KeyHasher).KeyHash(flooded, fk); err != nil || novel {
		t.Errorf("fetched again: KeyHash novel = %v, %v; want false", novel, err)
	}
	if novel, err := hks.Novel(fk); err != nil || novel {
		t.Errorf("Novel = %v, %v; want false", novel, err)
	}
}
