package corpus_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

// testPool keeps RSA key generation short in tests; the output depends on
// it but not its properties.
const testPool = 8

func generate(tb testing.TB, opt corpus.Options) ([]byte, corpus.Stats) {
	tb.Helper()
	var buf bytes.Buffer
	st, err := corpus.Generate(context.Background(), &buf, opt)
	if err != nil {
		tb.Fatalf("Generate(%+v): %v", opt, err)
	}
	if got, want := int64(buf.Len()), st.Bytes; got != want {
		tb.Fatalf("wrote %d bytes, Stats.Bytes = %d", got, want)
	}
	return buf.Bytes(), st
}

// mix2000 is the N=2000 corpus the structural tests share.
var mix2000 = sync.OnceValues(func() ([]byte, corpus.Stats) {
	var buf bytes.Buffer
	st, err := corpus.Generate(context.Background(), &buf, corpus.Options{N: 2000, Seed: 7, RSAPoolSize: testPool})
	if err != nil {
		panic(err)
	}
	return buf.Bytes(), st
})

func TestDeterministic(t *testing.T) {
	opt := corpus.Options{N: 100, Seed: 1, RSAPoolSize: testPool}
	opt.Workers = 1
	a, _ := generate(t, opt)
	opt.Workers = 3
	b, _ := generate(t, opt)
	if !bytes.Equal(a, b) {
		t.Fatalf("Workers=1 and Workers=3 differ (%d and %d bytes)", len(a), len(b))
	}
	opt.Seed = 2
	c, _ := generate(t, opt)
	if bytes.Equal(a, c) {
		t.Fatal("seeds 1 and 2 gave the same corpus")
	}
}

// TestGolden pins the bytes of a small corpus, so that a change in this
// package, in go-crypto or in Go that alters the output is noticed: every
// benchmark result quoted against "seed 1" would silently change meaning.
// If the change is intended, update the hash and say so in the commit.
func TestGolden(t *testing.T) {
	const want = "57d615c7a31b4f35969e38d751d4619b5ba3f06b60642b316e8f4046ea4cbda5"
	b, _ := generate(t, corpus.Options{N: 60, Seed: 1, RSAPoolSize: 2})
	sum := sha256.Sum256(b)
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("SHA-256 of the N=60 seed=1 corpus = %s, want %s (the corpus bytes changed)", got, want)
	}
}

// parsedKey is one key of a corpus split and parsed packet by packet.
type parsedKey struct {
	primary *packet.PublicKey
	packets []packet.Packet
}

// splitKeys parses a corpus with go-crypto, checks the framing (old-format
// headers only, as GnuPG and SKS write) and returns the keys.
func splitKeys(t *testing.T, b []byte) []parsedKey {
	t.Helper()
	// Framing: walk the raw headers.
	for off := 0; off < len(b); {
		ctb := b[off]
		if ctb&0xc0 != 0x80 {
			t.Fatalf("byte %d: header 0x%02x is not an old-format packet header", off, ctb)
		}
		var n, hdr int
		switch ctb & 3 {
		case 0:
			n, hdr = int(b[off+1]), 2
		case 1:
			n, hdr = int(b[off+1])<<8|int(b[off+2]), 3
		case 2:
			n, hdr = int(b[off+1])<<24|int(b[off+2])<<16|int(b[off+3])<<8|int(b[off+4]), 5
		default:
			t.Fatalf("byte %d: indeterminate length", off)
		}
		// Shortest length type, as SKS's write_packet and GnuPG use.
		if (ctb&3 == 1 && n < 256) || (ctb&3 == 2 && n < 65536) {
			t.Fatalf("byte %d: length %d not in the shortest form", off, n)
		}
		off += hdr + n
		if off > len(b) {
			t.Fatalf("packet at byte %d runs past the end", off-hdr-n)
		}
	}

	var keys []parsedKey
	r := packet.NewReader(bytes.NewReader(b))
	for {
		p, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("key %d: parse: %v", len(keys), err)
		}
		if pk, ok := p.(*packet.PublicKey); ok && !pk.IsSubkey {
			if pk.Version != 4 {
				t.Fatalf("key %d: version %d primary", len(keys), pk.Version)
			}
			keys = append(keys, parsedKey{primary: pk})
			continue
		}
		if len(keys) == 0 {
			t.Fatalf("packet %T before the first primary key", p)
		}
		keys[len(keys)-1].packets = append(keys[len(keys)-1].packets, p)
	}
	return keys
}

func TestKeysParseAndVerify(t *testing.T) {
	b, st := mix2000()
	ring, err := openpgp.ReadKeyRing(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("ReadKeyRing: %v", err)
	}
	// ReadKeyRing skips keys with bad self-signatures, so count them.
	if got, want := len(ring), 2000; got != want {
		t.Fatalf("ReadKeyRing read %d keys, want %d", got, want)
	}
	for i, e := range ring {
		if len(e.Identities) == 0 {
			t.Errorf("key %d %X: no identities", i, e.PrimaryKey.Fingerprint)
		}
	}

	keys := splitKeys(t, b)
	if got, want := len(keys), 2000; got != want {
		t.Fatalf("split %d keys, want %d", got, want)
	}
	byFpr := make(map[string]*packet.PublicKey)
	for i, k := range keys {
		fpr := string(k.primary.Fingerprint)
		if byFpr[fpr] != nil {
			t.Fatalf("key %d: fingerprint %X appears twice", i, k.primary.Fingerprint)
		}
		byFpr[fpr] = k.primary
	}

	var (
		uids, subkeys, sigs, certs, selfSigs int
		subFprs                              = make(map[string]bool)
	)
	for i, k := range keys {
		var uid *packet.UserId
		var sub *packet.PublicKey
		for _, p := range k.packets {
			switch p := p.(type) {
			case *packet.UserId:
				uid, sub = p, nil
				uids++
				if !utf8.ValidString(p.Id) {
					t.Errorf("key %d: user ID %q is not UTF-8", i, p.Id)
				}
			case *packet.PublicKey:
				uid, sub = nil, p
				subkeys++
				fpr := string(p.Fingerprint)
				if byFpr[fpr] != nil || subFprs[fpr] {
					t.Errorf("key %d: subkey fingerprint %X is not unique", i, p.Fingerprint)
				}
				subFprs[fpr] = true
			case *packet.Signature:
				sigs++
				issuer := byFpr[string(p.IssuerFingerprint)]
				if issuer == nil {
					t.Fatalf("key %d: signature 0x%02x by %X, not a corpus key", i, uint8(p.SigType), p.IssuerFingerprint)
				}
				self := issuer == k.primary
				if p.IssuerKeyId == nil || *p.IssuerKeyId != issuer.KeyId {
					t.Errorf("key %d: signature without the issuer key ID", i)
				}
				var err error
				switch {
				case uid != nil:
					err = issuer.VerifyUserIdSignature(uid.Id, k.primary, p)
					if !self && p.SigType != packet.SigTypeCertificationRevocation {
						certs++
					}
				case sub != nil:
					if !self {
						t.Fatalf("key %d: subkey signature by another key", i)
					}
					err = k.primary.VerifyKeySignature(sub, p)
				default:
					if !self || p.SigType != packet.SigTypeKeyRevocation {
						t.Fatalf("key %d: direct signature 0x%02x", i, uint8(p.SigType))
					}
					err = k.primary.VerifyRevocationSignature(p)
				}
				if err != nil {
					t.Errorf("key %d %X: signature 0x%02x by %X: %v", i, k.primary.Fingerprint, uint8(p.SigType), p.IssuerFingerprint, err)
				}
				if self {
					selfSigs++
				}
				if p.CreationTime.Before(k.primary.CreationTime) || p.CreationTime.Before(issuer.CreationTime) {
					t.Errorf("key %d: signature 0x%02x made before a key it involves", i, uint8(p.SigType))
				}
				if !p.CreationTime.Before(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
					t.Errorf("key %d: signature made in %v", i, p.CreationTime)
				}
			default:
				t.Errorf("key %d: unexpected packet %T", i, p)
			}
		}
	}
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"keys", len(keys), st.Keys},
		{"user IDs", uids, st.UserIDs},
		{"subkeys", subkeys, st.Subkeys},
		{"signatures", sigs, st.Signatures},
		{"certifications", certs, st.Certifications},
	} {
		if c.got != c.want {
			t.Errorf("%s: parsed %d, Stats says %d", c.name, c.got, c.want)
		}
	}
	t.Logf("%d keys, %d user IDs, %d subkeys, %d signatures (%d self), %d certifications, %d bytes",
		len(keys), uids, subkeys, sigs, selfSigs, certs, len(b))
}

func TestMix(t *testing.T) {
	b, st := mix2000()
	ring, err := openpgp.ReadKeyRing(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	mix := corpus.DefaultMix()
	near := func(what string, got int, share, tol float64) {
		t.Helper()
		if f := float64(got) / n; f < share-tol || f > share+tol {
			t.Errorf("%s: %d of %d keys (%.3f), want %.3f ± %.3f", what, got, n, f, share, tol)
		}
	}

	var (
		algos               = map[string]int{}
		noEnc, revoked, exp int
		uidCounts           [5]int
		nonASCII, popular   int
		certs               []int
		before2005, after24 int
		revokedUIDs         int
	)
	for _, e := range ring {
		pk := e.PrimaryKey
		switch pk.PubKeyAlgo {
		case packet.PubKeyAlgoEdDSA:
			algos["ed25519"]++
		case packet.PubKeyAlgoRSA:
			bits, _ := pk.BitLength()
			algos[fmt.Sprintf("rsa%d", bits)]++
		case packet.PubKeyAlgoECDSA:
			switch c, _ := pk.Curve(); c {
			case packet.CurveNistP256:
				algos["nistp256"]++
			case packet.CurveNistP384:
				algos["nistp384"]++
			default:
				t.Errorf("ECDSA curve %v", c)
			}
		default:
			t.Errorf("primary algorithm %v", pk.PubKeyAlgo)
		}
		if len(e.Subkeys) == 0 {
			noEnc++
		}
		for _, sk := range e.Subkeys {
			if !sk.Sig.FlagEncryptCommunications {
				t.Errorf("%X: subkey without encryption flag", pk.Fingerprint)
			}
		}
		if len(e.Revocations) > 0 {
			revoked++
		}
		var c int
		expires := false
		for _, id := range e.Identities {
			if !isASCII(id.Name) {
				nonASCII++
			}
			if strings.Contains(id.Name, "example.org") {
				popular++
			}
			if id.SelfSignature.KeyLifetimeSecs != nil {
				expires = true
			}
			if len(id.Revocations) > 0 {
				revokedUIDs++
			}
			for _, s := range id.Signatures {
				if !s.CheckKeyIdOrFingerprint(pk) && s.SigType != packet.SigTypeCertificationRevocation {
					c++
				}
			}
		}
		if expires {
			exp++
		}
		uidCounts[len(e.Identities)]++
		certs = append(certs, c)
		if y := pk.CreationTime.UTC().Year(); y < 2005 {
			before2005++
		} else if y >= 2024 {
			after24++
		}
		if y := pk.CreationTime.UTC().Year(); y < 1998 || y > 2025 {
			t.Errorf("%X: created in %d", pk.Fingerprint, y)
		}
	}

	// Primary kinds: exact counts, half of the sign-only keys are Ed25519.
	kinds := mix.Ed25519 + mix.RSA + mix.ECDSA + mix.SignOnly
	near("Ed25519 primaries", algos["ed25519"], (mix.Ed25519+mix.SignOnly/2)/kinds, 0.005)
	rsa := algos["rsa2048"] + algos["rsa3072"] + algos["rsa4096"]
	near("RSA primaries", rsa, (mix.RSA+mix.SignOnly/2)/kinds, 0.005)
	near("ECDSA primaries", algos["nistp256"]+algos["nistp384"], mix.ECDSA/kinds, 0.005)
	near("P-384 primaries", algos["nistp384"], mix.ECDSA*mix.P384/kinds, 0.005)
	near("RSA 4096", algos["rsa4096"], (mix.RSA+mix.SignOnly/2)*mix.RSA4096/kinds, 0.005)
	near("keys without encryption subkey", noEnc, mix.SignOnly/kinds, 0.002)
	// Drawn per key: binomial tolerances (about 4 sigma).
	near("revoked keys", revoked, mix.RevokedKeys, 0.013)
	near("expiring keys", exp, mix.ExpiringKeys, 0.035)
	if got, want := fmt.Sprint(algos), fmt.Sprint(st.ByAlgorithm); got != want {
		t.Errorf("parsed algorithms %v, Stats.ByAlgorithm %v", got, want)
	}
	if st.RevokedKeys != revoked || st.ExpiringKeys != exp || st.WithoutEncryption != noEnc || st.RevokedUserIDs != revokedUIDs {
		t.Errorf("Stats %+v disagrees with parsed revoked=%d expiring=%d noEnc=%d revokedUIDs=%d", st, revoked, exp, noEnc, revokedUIDs)
	}
	for c := 1; c <= 4; c++ {
		if uidCounts[c] == 0 {
			t.Errorf("no key with %d user IDs (%v)", c, uidCounts)
		}
	}
	if uidCounts[1] < n/3 {
		t.Errorf("only %d keys with one user ID", uidCounts[1])
	}
	if revokedUIDs == 0 || st.RevokedSubkeys == 0 {
		t.Errorf("no revoked user IDs (%d) or subkeys (%d)", revokedUIDs, st.RevokedSubkeys)
	}
	if nonASCII < n/20 {
		t.Errorf("only %d user IDs with non-ASCII names", nonASCII)
	}
	if popular < n/20 {
		t.Errorf("only %d user IDs at example.org", popular)
	}
	if before2005 == 0 || after24 < n/20 {
		t.Errorf("creation times: %d keys before 2005, %d from 2024", before2005, after24)
	}

	// Certifications: most keys 0-2, a heavy tail.
	var upTo2, none, maxC int
	for _, c := range certs {
		if c <= 2 {
			upTo2++
		}
		if c == 0 {
			none++
		}
		maxC = max(maxC, c)
	}
	if upTo2 < n*80/100 || none < n*40/100 || maxC < 20 {
		t.Errorf("certifications per key: %d keys with 0, %d with at most 2, max %d", none, upTo2, maxC)
	}
	if maxC != st.MaxCertifications {
		t.Errorf("max certifications %d, Stats says %d", maxC, st.MaxCertifications)
	}
	t.Logf("algorithms %v; user IDs per key %v; %d non-ASCII, %d example.org; certifications: %d keys none, %d <= 2, max %d",
		algos, uidCounts[1:], nonASCII, popular, none, upTo2, maxC)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func TestGenerateDump(t *testing.T) {
	opt := corpus.Options{N: 120, Seed: 3, RSAPoolSize: testPool}
	all, _ := generate(t, opt)
	dir := filepath.Join(t.TempDir(), "dump")
	st, err := corpus.GenerateDump(context.Background(), dir, opt, 50)
	if err != nil {
		t.Fatalf("GenerateDump: %v", err)
	}
	want := []string{"sks-dump-0000.pgp", "sks-dump-0001.pgp", "sks-dump-0002.pgp"}
	if got := strings.Join(st.Files, " "); got != strings.Join(want, " ") {
		t.Fatalf("Files = %s, want %s", got, strings.Join(want, " "))
	}
	var cat []byte
	var sums strings.Builder
	for i, name := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		ring, err := openpgp.ReadKeyRing(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, want := len(ring), []int{50, 50, 20}[i]; got != want {
			t.Errorf("%s: %d keys, want %d", name, got, want)
		}
		cat = append(cat, b...)
		sum := md5.Sum(b)
		fmt.Fprintf(&sums, "%x  %s\n", sum, name)
	}
	if !bytes.Equal(cat, all) {
		t.Error("dump files concatenated differ from Generate's output")
	}
	md5sums, err := os.ReadFile(filepath.Join(dir, "MD5SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(md5sums), sums.String(); got != want {
		t.Errorf("MD5SUMS = %q, want %q", got, want)
	}
	meta, err := os.ReadFile(filepath.Join(dir, "metadata-sks-dump.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"#Files-Count: 3\n", "#Key-Count: 120\n", "#Digest-algo: md5\n", sums.String()} {
		if !strings.Contains(string(meta), line) {
			t.Errorf("metadata lacks %q:\n%s", line, meta)
		}
	}
}

// cancelWriter cancels a context on its n-th write.
type cancelWriter struct {
	n      int
	cancel context.CancelFunc
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	if w.n--; w.n == 0 {
		w.cancel()
	}
	return len(p), nil
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := corpus.Generate(ctx, &cancelWriter{n: 20, cancel: cancel}, corpus.Options{N: 100000, Seed: 1, RSAPoolSize: testPool, Workers: 2})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Generate after cancel: %v, want context.Canceled", err)
	}
	// At most the keys in flight (8 per worker, plus one per worker) follow.
	if st.Keys < 20 || st.Keys > 20+9*2 {
		t.Errorf("cancelled after 20 keys, Stats.Keys = %d", st.Keys)
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n++; w.n > 10 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestWriteError(t *testing.T) {
	_, err := corpus.Generate(context.Background(), &failWriter{}, corpus.Options{N: 500, Seed: 1, RSAPoolSize: testPool})
	if err == nil || err.Error() != "disk full" {
		t.Fatalf("Generate to a failing writer: %v, want disk full", err)
	}
}

func TestValidate(t *testing.T) {
	mix := corpus.DefaultMix()
	mix.RSA2048, mix.RSA3072, mix.RSA4096 = 0, 0, 0
	bad := corpus.DefaultMix()
	bad.RevokedKeys = 1.5
	for _, c := range []struct {
		name  string
		opt   corpus.Options
		field string
	}{
		{"ZeroN", corpus.Options{}, "N"},
		{"HugeN", corpus.Options{N: corpus.MaxN + 1}, "N"},
		{"NegativeWorkers", corpus.Options{N: 1, Workers: -1}, "Workers"},
		{"NegativePool", corpus.Options{N: 1, RSAPoolSize: -1}, "RSAPoolSize"},
		{"NoRSASizes", corpus.Options{N: 1, Mix: mix}, "Mix"},
		{"Probability", corpus.Options{N: 1, Mix: bad}, "Mix.RevokedKeys"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.opt.Validate()
			var ve *corpus.ValidationError
			if !errors.As(err, &ve) || ve.Field != c.field {
				t.Fatalf("Validate() = %v, want a ValidationError on %s", err, c.field)
			}
			if _, err := corpus.Generate(context.Background(), io.Discard, c.opt); err == nil {
				t.Fatal("Generate accepted the options")
			}
		})
	}
	if err := (corpus.Options{N: 1}).Validate(); err != nil {
		t.Fatalf("Validate(N=1) = %v", err)
	}
}

func TestSmallN(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5} {
		b, st := generate(t, corpus.Options{N: n, Seed: 9, RSAPoolSize: 1})
		ring, err := openpgp.ReadKeyRing(bytes.NewReader(b))
		if err != nil || len(ring) != n || st.Keys != n {
			t.Errorf("N=%d: read %d keys (%v), Stats.Keys %d", n, len(ring), err, st.Keys)
		}
		if st.Certifications != 0 && n < 5 {
			t.Errorf("N=%d: %d certifications", n, st.Certifications)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	for _, n := range []int{1000} {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			opt := corpus.Options{N: n, Seed: 1}
			// Fill the process-wide RSA pools first: they are a one-off
			// cost per seed, not per key.
			if _, err := corpus.Generate(context.Background(), io.Discard, opt); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var bytes int64
			start := time.Now()
			for b.Loop() {
				st, err := corpus.Generate(context.Background(), io.Discard, opt)
				if err != nil {
					b.Fatal(err)
				}
				bytes = st.Bytes
			}
			b.SetBytes(bytes)
			b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "keys/s")
		})
	}
}
