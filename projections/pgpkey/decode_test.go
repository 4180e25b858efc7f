package pgpkey_test

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// armored encodes data with go-crypto's armor writer, an independent
// implementation of the CRC-24 and line format.
func armored(tb testing.TB, blockType string, data []byte, checksum bool) string {
	tb.Helper()
	var b bytes.Buffer
	w, err := armor.EncodeWithChecksumOption(&b, blockType, map[string]string{
		"Comment": "grapevine test: with a colon",
		"Version": "GnuPG v2",
	}, checksum)
	if err != nil {
		tb.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.String()
}

// hashesOf parses every decoded key and returns its hash.
func hashesOf(tb testing.TB, raws []*pgpkey.RawKey) []string {
	tb.Helper()
	var out []string
	for _, raw := range raws {
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			tb.Fatalf("key at byte %d of block %d: %v", raw.Offset, raw.Block, err)
		}
		out = append(out, k.Hash().String())
	}
	return out
}

func wantHashes(s *stream, idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, s.keys[i].Hash().String())
	}
	return out
}

func crcLine(t *testing.T, a string) string {
	t.Helper()
	for _, line := range strings.Split(a, "\n") {
		if strings.HasPrefix(line, "=") {
			return line
		}
	}
	t.Fatal("armor has no CRC line")
	return ""
}

func TestDecodeArmor(t *testing.T) {
	s := fixtureStream(t)
	block1 := armored(t, "PGP PUBLIC KEY BLOCK", s.data[:s.keyOffs[3]], true) // keys 0-2
	block2 := armored(t, "PGP PUBLIC KEY BLOCK", s.data[s.keyOffs[3]:], true) // keys 3-6
	noCRC := armored(t, "PGP PUBLIC KEY BLOCK", s.data[:s.keyOffs[1]], false) // key 0
	sig := armored(t, "PGP SIGNATURE", []byte{0x88, 0x02, 0x04, 0x00}, true)
	all := []int{0, 1, 2, 3, 4, 5, 6}

	for _, tc := range []struct {
		name  string
		input string
		want  []int
	}{
		{"OneBlock", block1, []int{0, 1, 2}},
		{"SeveralBlocksWithText", "Here are my keys:\n\n" + block1 + "\nand the others\n" + sig + block2 + "-- \nsig\n", all},
		{"CRLF", strings.ReplaceAll(block1+block2, "\n", "\r\n"), all},
		{"LeadingHTML", "<html><body><pre>" + block2 + "</pre></body></html>", []int{3, 4, 5, 6}},
		{"HTMLOnBeginLine", "<pre>" + strings.Replace(block1, "-----END PGP PUBLIC KEY BLOCK-----", "-----END PGP PUBLIC KEY BLOCK-----</pre>", 1), []int{0, 1, 2}},
		{"MissingCRC", noCRC, []int{0}},
		{"CRCWrongFormat", strings.Replace(block1, crcLine(t, block1), "=abc", 1), []int{0, 1, 2}},
		{"NoHeaderBlankLine", strings.Replace(block1, "Version: GnuPG v2\n\n", "Version: GnuPG v2\n", 1), []int{0, 1, 2}},
		{"NoHeaders", strings.Replace(strings.Replace(block1, "Comment: grapevine test: with a colon\n", "", 1), "Version: GnuPG v2\n\n", "", 1), []int{0, 1, 2}},
		{"TrailingSpaces", strings.ReplaceAll(block1, "\n", "  \n"), []int{0, 1, 2}},
		{"LeadingUTF8Text", "Schlüssel:\n" + block1, []int{0, 1, 2}},
		{"Binary", string(s.data), all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "NoHeaderBlankLine" && !strings.Contains(block1, "Version: GnuPG v2\n\n") {
				t.Fatal("armor writer changed: header block not found")
			}
			raws, err := pgpkey.Decode([]byte(tc.input))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got, want := strings.Join(hashesOf(t, raws), " "), strings.Join(wantHashes(s, tc.want...), " "); got != want {
				t.Errorf("got keys %s\nwant %s", got, want)
			}
		})
	}
}

func TestDecodeBlockAndOffsets(t *testing.T) {
	s := fixtureStream(t)
	in := armored(t, "PGP PUBLIC KEY BLOCK", s.data[:s.keyOffs[2]], true) + armored(t, "PGP PUBLIC KEY BLOCK", s.data[s.keyOffs[2]:s.keyOffs[3]], true)
	raws, err := pgpkey.Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		block  int
		offset int64
	}{{1, 0}, {1, s.keyOffs[1]}, {2, 0}}
	if len(raws) != len(want) {
		t.Fatalf("got %d keys, want %d", len(raws), len(want))
	}
	for i, w := range want {
		if raws[i].Block != w.block || raws[i].Offset != w.offset {
			t.Errorf("key %d: block %d offset %d, want block %d offset %d", i, raws[i].Block, raws[i].Offset, w.block, w.offset)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	s := fixtureStream(t)
	good := armored(t, "PGP PUBLIC KEY BLOCK", s.data[:s.keyOffs[1]], true) // key 0
	other := armored(t, "PGP PUBLIC KEY BLOCK", s.data[s.keyOffs[1]:s.keyOffs[2]], true)
	crc := crcLine(t, other)
	badCRC := strings.Replace(other, crc, "=AAAA", 1)
	if crc == "=AAAA" {
		t.Fatal("test needs a different fake CRC")
	}
	badB64Line := strings.Split(other, "\n")[5]
	badB64 := strings.Replace(other, badB64Line, badB64Line[:10]+"*"+badB64Line[11:], 1)
	noEnd := other[:strings.Index(other, "-----END")]
	// A key whose second packet has a partial length, armored.
	broken := append(append([]byte(nil), s.data[:s.pktOffs[1][1]]...), 0xc2, 0xe1)
	badFraming := armored(t, "PGP PUBLIC KEY BLOCK", broken, true)
	secret := armored(t, "PGP PRIVATE KEY BLOCK", []byte{0x95, 0x01, 0x04}, true)

	for _, tc := range []struct {
		name     string
		input    string
		keys     int // keys still returned
		block    int
		offset   int64 // -1: do not check
		reason   string
		sentinel error
	}{
		{"CRCMismatch", good + badCRC, 1, 2, int64(len(good) + strings.Index(badCRC, "=AAAA")), "armor checksum mismatch", nil},
		{"InvalidBase64", good + badB64, 1, 2, int64(len(good) + strings.Index(badB64, badB64Line[:10])), "invalid base64 in armor", nil},
		{"NoEndLine", good + noEnd, 1, 2, int64(len(good)), "armor block has no END line", nil},
		{"FramingInsideArmor", badFraming, 1, 1, s.pktOffs[1][1], "partial body length", nil},
		{"PrivateKeyBlock", good + secret, 1, 2, int64(len(good)), "secret key material refused", pgpkey.ErrSecretKey},
		{"NoKeys", "hello, this is not a key\n", 0, 0, 0, "no public key in input", pgpkey.ErrNoKey},
		{"OnlySignature", armored(t, "PGP SIGNATURE", []byte{0x88, 0x02, 0x04, 0x00}, true), 0, 0, 0, "no public key in input", pgpkey.ErrNoKey},
		{"Empty", "", 0, 0, 0, "no public key in input", pgpkey.ErrNoKey},
		{"EmptyBlock", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n", 0, 1, 0, "empty armor block", nil},
		// A BEGIN line cut off right after "-----BEGIN PGP ": trimming its
		// trailing white space leaves it shorter than the marker (found by
		// FuzzDecode; it used to panic). It is no armor header, so a key
		// block after it is still found and numbered 1.
		{"TruncatedBegin", "-----BEGIN PGP ", 0, 0, 0, "no public key in input", pgpkey.ErrNoKey},
		{"TruncatedBeginLine", "-----BEGIN PGP \t\r\n", 0, 0, 0, "no public key in input", pgpkey.ErrNoKey},
		{"TruncatedBeginThenKey", "-----BEGIN PGP \n" + good + badCRC, 1, 2, -1, "armor checksum mismatch", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raws, err := pgpkey.Decode([]byte(tc.input))
			if err == nil {
				t.Fatalf("Decode succeeded with %d keys", len(raws))
			}
			if len(raws) != tc.keys {
				t.Errorf("got %d keys with the error, want %d", len(raws), tc.keys)
			}
			pe := asParseError(t, err)
			if pe.Block != tc.block || (tc.offset >= 0 && pe.Offset != tc.offset) || pe.Reason != tc.reason {
				t.Errorf("got %q (Block %d, Offset %d), want Block %d, Offset %d, %q", pe.Error(), pe.Block, pe.Offset, tc.block, tc.offset, tc.reason)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v is not %v", err, tc.sentinel)
			}
		})
	}
}

func TestParseErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    pgpkey.ParseError
		want string
	}{
		{pgpkey.ParseError{Offset: 812, Packet: 3, Reason: "length past end of key"}, "packet 3 at byte 812: length past end of key"},
		{pgpkey.ParseError{Offset: 0, Reason: "key has no user ID"}, "key at byte 0: key has no user ID"},
		{pgpkey.ParseError{Offset: 12, Packet: 1, Block: 2, Reason: "r"}, "armor block 2: packet 1 at byte 12: r"},
		{pgpkey.ParseError{Offset: -1, Packet: 2, Reason: "r"}, "packet 2: r"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

// TestDecodeReusesBuffer: decoding an upload allocates far less than the
// Reader's 64 KiB buffer (recycled between calls), and keys decoded
// earlier keep their bytes when the buffer is reused.
func TestDecodeReusesBuffer(t *testing.T) {
	s := fixtureStream(t)
	first := armored(t, "PGP PUBLIC KEY BLOCK", s.data[:s.keyOffs[1]], true) // key 0
	other := armored(t, "PGP PUBLIC KEY BLOCK", s.data[s.keyOffs[3]:], true) // keys 3-6
	raws, err := pgpkey.Decode([]byte(first))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(hashesOf(t, raws), " ")
	input := []byte(other)
	var before, after runtime.MemStats
	// Under the race detector sync.Pool drops a quarter of what is put
	// back, so a call then allocates 16 KB + a quarter of the 64 KiB
	// buffer on average (≈ 33 KB): the bound lies between that and the 82
	// KB of a fresh buffer per call, and n is large enough that chance
	// runs of drops stay far below it.
	const n = 200
	runtime.ReadMemStats(&before)
	for range n {
		if _, err := pgpkey.Decode(input); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / n
	if limit := uint64(48 << 10); per > limit { // was 82 KB with a fresh buffer each time
		t.Errorf("Decode allocated %d bytes per call of a %d-byte upload, want at most %d", per, len(input), limit)
	}
	if got := strings.Join(hashesOf(t, raws), " "); got != want {
		t.Errorf("key decoded first changed after later decodes: %s, want %s", got, want)
	}
}
