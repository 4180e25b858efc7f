package pgpkey_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// Paths of the shared fixtures (../shared/fixtures/sks/README.md).
const (
	debianKeyring       = "/usr/share/keyrings/debian-keyring.gpg"
	debianKeyringSHA256 = "115140a66a82e8aff366b5f322e1b2ff0aea610b88b02474e1a27dcd600aabe5" // fixtures/sks/README.md
	debianHashesTSV     = "fixtures/sks/debian-keyring-2022.12.24.sks-hashes.tsv"
	testKeysDir         = "fixtures/sks/test-keys"
)

// P is the public key body of the synthetic vectors (keyhash.md §10.2).
const vectorP = "045f00000016"

var vecPacket = regexp.MustCompile(`\((\d+),("[^"]*"|[0-9a-fA-F]+|P)\)`)

// vec parses the packet notation of keyhash.md §10.2, e.g.
// `(6,P) (2,04ff) (13,"bob")`: UID bodies are quoted ASCII, other bodies hex,
// P the vector public key.
func vec(tb testing.TB, s string) []pgpkey.Packet {
	tb.Helper()
	var out []pgpkey.Packet
	for _, m := range vecPacket.FindAllStringSubmatch(s, -1) {
		tag, err := strconv.Atoi(m[1])
		if err != nil {
			tb.Fatal(err)
		}
		body := m[2]
		var b []byte
		switch {
		case body == "P":
			b = mustHex(tb, vectorP)
		case strings.HasPrefix(body, `"`):
			b = []byte(strings.Trim(body, `"`))
		default:
			b = mustHex(tb, body)
		}
		out = append(out, pgpkey.Packet{Tag: uint8(tag), Body: b})
	}
	if len(out) == 0 {
		tb.Fatalf("vec(%q): no packets", s)
	}
	return out
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatalf("hex %q: %v", s, err)
	}
	return b
}

func mustHash(tb testing.TB, s string) pgpkey.KeyHash {
	tb.Helper()
	h, err := pgpkey.ParseKeyHash(s)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// format prints packets in the vector notation, for failure messages.
func format(pkts []pgpkey.Packet) string {
	var b strings.Builder
	for i, p := range pkts {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("(" + strconv.Itoa(int(p.Tag)) + ",")
		switch {
		case p.Tag == pgpkey.TagUserID:
			b.WriteString(strconv.Quote(string(p.Body)))
		case p.Tag == pgpkey.TagPublicKey && hex.EncodeToString(p.Body) == vectorP:
			b.WriteString("P")
		case len(p.Body) > 8:
			b.WriteString(hex.EncodeToString(p.Body[:8]) + "…")
		default:
			b.WriteString(hex.EncodeToString(p.Body))
		}
		b.WriteString(")")
	}
	return b.String()
}

func mustCanonicalize(tb testing.TB, pkts []pgpkey.Packet) *pgpkey.Key {
	tb.Helper()
	k, err := pgpkey.Canonicalize(pkts)
	if err != nil {
		tb.Fatalf("Canonicalize(%s): %v", format(pkts), err)
	}
	return k
}

// packetsEqual reports whether two packet lists are identical.
func packetsEqual(a, b []pgpkey.Packet) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// readAllKeys splits a binary stream, failing the test on any error.
func readAllKeys(tb testing.TB, data []byte) []*pgpkey.RawKey {
	tb.Helper()
	var keys []*pgpkey.RawKey
	r := pgpkey.NewReader(bytes.NewReader(data))
	for {
		k, err := r.Next()
		if err == io.EOF {
			return keys
		}
		if err != nil {
			tb.Fatalf("Next after %d keys: %v", len(keys), err)
		}
		keys = append(keys, k)
	}
}

// testKey is one row of fixtures/sks/test-keys/test-keys.tsv.
type testKey struct {
	file        string
	fingerprint string
	hash        string
	algo        string // algo/bits/curve as gpg lists it
	uids        []string
}

func loadTestKeys(tb testing.TB) []testKey {
	tb.Helper()
	f, err := os.Open(testenv.SharedFile(tb, testKeysDir+"/test-keys.tsv"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []testKey
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) != 5 {
			tb.Fatalf("test-keys.tsv: bad line %q", sc.Text())
		}
		out = append(out, testKey{c[0], c[1], c[2], c[3], strings.Split(c[4], "; ")})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// readShared returns a shared fixture file's bytes.
func readShared(tb testing.TB, rel string) []byte {
	tb.Helper()
	b, err := os.ReadFile(testenv.SharedFile(tb, rel))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// testKeyFiles returns the binary test key files, in a fixed order.
func testKeyFiles(tb testing.TB) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	for _, name := range []string{"keys-a.pgp", "keys-b.pgp", "grace.pgp"} {
		out[name] = readShared(tb, filepath.Join(testKeysDir, name))
	}
	return out
}

// readDebianKeyring returns the Debian keyring, after checking that it is the
// version whose SKS hashes the fixture holds.
func readDebianKeyring(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(testenv.RequireFile(tb, debianKeyring, "debian-keyring"))
	if err != nil {
		tb.Fatal(err)
	}
	if got := sha256.Sum256(b); hex.EncodeToString(got[:]) != debianKeyringSHA256 {
		testenv.Missing(tb, "debian-keyring 2022.12.24 (installed "+debianKeyring+" has sha256 "+
			hex.EncodeToString(got[:])+")")
	}
	return b
}

// debianHashes returns fingerprint → SKS hash from the fixture.
func debianHashes(tb testing.TB) map[string]string {
	tb.Helper()
	data := readShared(tb, debianHashesTSV)
	out := map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if i == 0 {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 2 {
			tb.Fatalf("%s: bad line %q", debianHashesTSV, line)
		}
		out[c[0]] = c[1]
	}
	return out
}

func asParseError(tb testing.TB, err error) *pgpkey.ParseError {
	tb.Helper()
	var pe *pgpkey.ParseError
	if !errors.As(err, &pe) {
		tb.Fatalf("error %v (%T) is not a *ParseError", err, err)
	}
	return pe
}
