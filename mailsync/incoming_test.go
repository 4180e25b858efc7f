package mailsync_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"mime/quotedprintable"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/grapevine-keyserver/grapevine/mailsync"
)

func armored(t testing.TB, keys ...[]byte) string {
	t.Helper()
	var b bytes.Buffer
	w, err := armor.Encode(&b, "PGP PUBLIC KEY BLOCK", map[string]string{"Comment": "test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		w.Write(k)
	}
	w.Close()
	b.WriteByte('\n')
	return b.String()
}

func b64lines(b []byte) string {
	s := base64.StdEncoding.EncodeToString(b)
	var out strings.Builder
	for len(s) > 76 {
		out.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	out.WriteString(s + "\r\n")
	return out.String()
}

func qp(s string) string {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.String()
}

func TestReadMail(t *testing.T) {
	raws := testKeys(t)
	k1, k2 := raws[0].Raw, raws[1].Raw
	a1, a2 := armored(t, k1), armored(t, k2)
	broken := strings.Replace(a1, "\n=", "\n=AAAA\n=", 1) // garbage before the CRC
	corrupt := a1[:len(a1)/2] + "!!!!" + a1[len(a1)/2:]
	const head = "From: PKS Server <pgp-public-keys@pks.example.org>\nTo: pgp-public-keys@b.test\nSubject: incremental\n"
	for _, tc := range []struct {
		name     string
		mail     string
		keys     int
		from     string
		wantErr  error
		anyError bool
	}{
		{name: "Plain", mail: head + "\n" + a1, keys: 1, from: "pgp-public-keys@pks.example.org"},
		{name: "SKSIncremental", mail: head + "Content-type: application/pgp-keys\nX-KeyServer-Sent: a@b\n\n" + strings.TrimSuffix(a1, "\n"), keys: 1},
		{name: "TwoBlocks", mail: head + "\nfirst:\n" + a1 + "second:\n" + a2, keys: 2},
		{name: "OneBlockTwoKeys", mail: head + "\n" + armored(t, k1, k2), keys: 2},
		{name: "NoHeaders", mail: a1, keys: 1, from: ""},
		{name: "MultipartMixedPGPKeysPart", mail: head + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"XX\"\n\npreamble\n--XX\nContent-Type: text/plain\n\nHere is my key.\n--XX\nContent-Type: application/pgp-keys\n\n" + a1 + "--XX--\n", keys: 1},
		{name: "Base64BinaryPart", mail: head + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain\n\nkey attached\n--b1\nContent-Type: application/pgp-keys; name=key.gpg\nContent-Transfer-Encoding: base64\n\n" + b64lines(append(append([]byte{}, k1...), k2...)) + "--b1--\n", keys: 2},
		{name: "Base64TextBody", mail: head + "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: base64\n\n" + b64lines([]byte(a1)), keys: 1},
		{name: "QuotedPrintable", mail: head + "MIME-Version: 1.0\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n" + qp("Key:\n"+a1), keys: 1},
		{name: "QuotedPrintablePart", mail: head + "Content-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n" + qp(a2) + "\n--q--\n", keys: 1},
		{name: "AlternativeDuplicate", mail: head + "Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/alternative; boundary=i\n\n--i\nContent-Type: text/plain\n\n" + a1 + "--i\nContent-Type: text/html\n\n<pre>" + a1 + "</pre>\n--i--\n--o--\n", keys: 1},
		{name: "ForwardedMessage", mail: head + "Content-Type: multipart/mixed; boundary=f\n\n--f\nContent-Type: message/rfc822\n\nFrom: x@y\nSubject: key\n\n" + a2 + "--f--\n", keys: 1},
		{name: "NoKey", mail: head + "\nHello, no key here.\n", wantErr: mailsync.ErrNoKey},
		{name: "NoKeyMultipart", mail: head + "Content-Type: multipart/mixed; boundary=n\n\n--n\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n" + b64lines([]byte("just text")) + "--n--\n", wantErr: mailsync.ErrNoKey},
		{name: "BrokenArmor", mail: head + "\n" + corrupt, anyError: true},
		{name: "BrokenCRC", mail: head + "\n" + broken, anyError: true},
		{name: "GoodAndBrokenAllOrNothing", mail: head + "\n" + a2 + corrupt, anyError: true},
		{name: "MultipartWithoutBoundary", mail: head + "Content-Type: multipart/mixed\n\n" + a1, anyError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := mailsync.ReadMail([]byte(tc.mail))
			switch {
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ReadMail() error = %v, want %v", err, tc.wantErr)
				}
				return
			case tc.anyError:
				var me *mailsync.MailError
				if !errors.As(err, &me) {
					t.Fatalf("ReadMail() = %v, %v; want a *MailError", m, err)
				}
				t.Logf("error: %v", err)
				return
			case err != nil:
				t.Fatalf("ReadMail() error = %v", err)
			}
			if got, want := len(m.Keys), tc.keys; got != want {
				t.Fatalf("got %d keys, want %d", got, want)
			}
			if tc.from != "" && m.From != tc.from {
				t.Fatalf("From = %q, want %q", m.From, tc.from)
			}
		})
	}
}
