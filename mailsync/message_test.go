package mailsync_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/mailsync"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// specHeader is the header block of the example in mailsync.md §2.2
// (SKS sendmail.ml / dbserver.ml transmit_single_key), byte for byte.
const specHeader = `To: pgp-public-keys@pks1.example.org, pgp-public-keys@pks2.example.net
From: pgp-public-keys@keyserver.example.org
Reply-To: pgp-public-keys@keyserver.example.org
Errors-To: pgp-public-keys@keyserver.example.org
Subject: incremental
Precedence: list
Content-type: application/pgp-keys
X-KeyServer-Sent: pgp-public-keys@keyserver.example.org

-----BEGIN PGP PUBLIC KEY BLOCK-----
Version: SKS 1.1.6
Comment: Hostname: keyserver.example.org

`

func specMessage(key []byte) *mailsync.Message {
	return &mailsync.Message{
		To:           []string{"pgp-public-keys@pks1.example.org", "pgp-public-keys@pks2.example.net"},
		From:         "pgp-public-keys@keyserver.example.org",
		Key:          key,
		Hostname:     "keyserver.example.org",
		ArmorVersion: "SKS 1.1.6",
	}
}

func TestMessageMatchesSpecExample(t *testing.T) {
	k, err := pgpkey.ParseKey(testKeys(t)[1])
	if err != nil {
		t.Fatal(err)
	}
	key := k.Marshal()
	got := string(specMessage(key).Bytes())
	if !strings.HasPrefix(got, specHeader) {
		t.Fatalf("message starts\n%s\nwant\n%s", got[:min(len(got), len(specHeader))], specHeader)
	}
	if strings.Contains(got, "\r") {
		t.Error("message has CR; SKS writes \\n line ends")
	}
	if !strings.HasSuffix(got, "\n-----END PGP PUBLIC KEY BLOCK-----") {
		t.Errorf("message ends %q, want the END line without a newline", got[len(got)-40:])
	}
	body := strings.Split(strings.TrimSuffix(got[len(specHeader):], "\n-----END PGP PUBLIC KEY BLOCK-----"), "\n")
	crc := body[len(body)-1]
	for i, line := range body[:len(body)-1] {
		if len(line) > 76 || (i < len(body)-2 && len(line) != 76) {
			t.Fatalf("base64 line %d has %d characters, want 76 (last may be shorter)", i+1, len(line))
		}
	}
	if len(crc) != 5 || crc[0] != '=' {
		t.Fatalf("checksum line %q, want =XXXX", crc)
	}
	for _, h := range []string{"Date:", "Message-ID:", "MIME-Version:"} {
		if strings.Contains(got, h) {
			t.Errorf("message has %s; SKS sends none", h)
		}
	}
	// The key comes back out, checksum checked.
	raws, err := pgpkey.Decode([]byte(got))
	if err != nil || len(raws) != 1 || !bytes.Equal(raws[0].Raw, key) {
		t.Fatalf("Decode(message) = %d keys, %v; want the key back", len(raws), err)
	}
}

func TestMessageExtraHeadersAndCRC(t *testing.T) {
	m := specMessage([]byte("hello"))
	m.Extra = true
	m.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	got := string(m.Bytes())
	head, _, _ := strings.Cut(got, "\n\n")
	lines := strings.Split(head, "\n")
	if got, want := len(lines), 11; got != want {
		t.Fatalf("%d header lines, want %d:\n%s", got, want, head)
	}
	if lines[7] != "X-KeyServer-Sent: pgp-public-keys@keyserver.example.org" ||
		lines[8] != "Date: Fri, 02 Jan 2026 03:04:05 +0000" ||
		!strings.HasPrefix(lines[9], "Message-ID: <") || !strings.HasSuffix(lines[9], "@keyserver.example.org>") ||
		lines[10] != "MIME-Version: 1.0" {
		t.Fatalf("headers:\n%s", head)
	}
	// RFC 4880 §6.1 sample: CRC-24 of "" is the init value.
	if got, want := mailsync.CRC24(nil), uint32(0xB704CE); got != want {
		t.Fatalf("crc24(\"\") = %06X, want %06X", got, want)
	}
}

func TestMessageHeaderInjection(t *testing.T) {
	m := specMessage([]byte("x"))
	m.From = "a@b\nBcc: victim@example.org"
	if strings.Contains(string(m.Bytes()), "\nBcc:") {
		t.Fatal("a newline in from_addr added a header")
	}
}
