package mailsync_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/mailsync"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// FuzzReadMail feeds ReadMail hostile mails: anyone can mail the relay's
// address, and `grapevine mail-in` hands every delivered mail to it. It must
// never panic, must answer with ErrNoKey or a *MailError when it refuses a
// mail, and every key it accepts must be one pgpkey would accept on its own
// and appear once.
func FuzzReadMail(f *testing.F) {
	raws := testKeys(f)
	a1, a2 := armored(f, raws[0].Raw), armored(f, raws[1].Raw)
	const head = "From: PKS Server <pgp-public-keys@pks.example.org>\nTo: pgp-public-keys@b.test\nSubject: incremental\n"
	for _, m := range []string{
		head + "\n" + a1,
		a1,
		head + "Content-type: application/pgp-keys\n\n" + a1 + a2,
		head + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain\n\nkey attached\n--b1\nContent-Type: application/pgp-keys\nContent-Transfer-Encoding: base64\n\n" + b64lines(raws[0].Raw) + "--b1--\n",
		head + "Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n" + qp(a2),
		head + "Content-Type: multipart/mixed; boundary=f\n\n--f\nContent-Type: message/rfc822\n\nFrom: x@y\nContent-Type: multipart/alternative; boundary=i\n\n--i\n\n" + a1 + "--i--\n--f--\n",
		head + "Content-Type: multipart/mixed\n\n" + a1,
		head + "\nno key\n",
		"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
	} {
		f.Add([]byte(m))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := mailsync.ReadMail(data)
		if err != nil {
			var me *mailsync.MailError
			if !errors.Is(err, mailsync.ErrNoKey) && !errors.As(err, &me) {
				t.Fatalf("ReadMail error %T %v: want ErrNoKey or a *MailError", err, err)
			}
			if m != nil {
				t.Fatalf("ReadMail returned a mail with error %v", err)
			}
			return
		}
		if len(m.Keys) == 0 {
			t.Fatal("ReadMail accepted a mail without keys")
		}
		if strings.ContainsAny(m.From, "\r\n") {
			t.Fatalf("From %q holds a line break", m.From)
		}
		seen := map[pgpkey.KeyHash]bool{}
		for i, ik := range m.Keys {
			if ik.Raw == nil || ik.Key == nil {
				t.Fatalf("key %d: Raw or Key is nil", i)
			}
			h := ik.Key.Hash()
			if seen[h] {
				t.Fatalf("key %d: hash %s listed twice", i, h)
			}
			seen[h] = true
			// What goes into the log is Raw.Raw: it must stand on its
			// own as the same key.
			again, err := pgpkey.Decode(ik.Raw.Raw)
			if err != nil || len(again) != 1 {
				t.Fatalf("key %d: its Raw does not decode to one key: %d, %v", i, len(again), err)
			}
			k, err := pgpkey.ParseKey(again[0])
			if err != nil {
				t.Fatalf("key %d: its Raw no longer parses: %v", i, err)
			}
			if k.Hash() != h {
				t.Fatalf("key %d: its Raw parses to hash %s, not %s", i, k.Hash(), h)
			}
		}
	})
}
