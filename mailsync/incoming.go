package mailsync

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Errors of ReadMail. Every error ReadMail returns is about the mail's
// content (the MTA should not retry it): ErrNoKey when no key was found,
// otherwise a *MailError.
var ErrNoKey = errors.New("mailsync: no public key block in mail")

// MailError says what is wrong with an incoming mail.
type MailError struct {
	Part   string // which MIME part, e.g. "part 2.1"; "" for the whole mail
	Reason string
	Err    error
}

func (e *MailError) Error() string {
	s := "mailsync: "
	if e.Part != "" {
		s += e.Part + ": "
	}
	s += e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *MailError) Unwrap() error { return e.Err }

// Limits on the structure of an incoming mail.
const (
	maxMIMEDepth = 8   // nesting of multipart and message/rfc822
	maxMIMEParts = 200 // parts in the whole mail
)

// IncomingKey is one key found in a mail.
type IncomingKey struct {
	Raw *pgpkey.RawKey // as split from the mail; Raw.Raw is stored in the log
	Key *pgpkey.Key    // canonicalised
}

// Mail is what ReadMail found in one incoming mail.
type Mail struct {
	// From is the address of the From: header ("" when missing or
	// unparseable); it becomes Event.Peer.
	From string
	// Keys are the distinct keys of the mail in order of appearance (a key
	// found twice, e.g. in the text and the HTML alternative, is listed
	// once).
	Keys []IncomingKey
}

// ReadMail parses one mail as an MTA delivers it (RFC 5322, with or
// without MIME) and returns every OpenPGP public key in it.
//
// It reads plain mails and MIME mails with nested multipart/* and
// message/rfc822 parts, base64 and quoted-printable transfer encodings, and
// keys either ASCII-armored in any text part or as binary packets in an
// application/pgp-keys part. All armor blocks of all parts are used, a
// superset of SKS, which takes only the first block of the whole text
// (mailsync.md §3.2, §4).
//
// It is all-or-nothing: if any key found fails pgpkey.ParseKey (or the
// armor is broken), the whole mail is refused, so that a mail is either
// stored whole or left to the operator; SKS merges the keys before a bad
// one and moves the file to failed_messages. A bare revocation certificate
// is a bad key here as in SKS, where it aborts the message.
func ReadMail(data []byte) (*Mail, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		// Not even a header block: treat the whole input as text, as
		// SKS runs its armor decoder over the whole file.
		r := &mailReader{}
		if err := r.text("", data, true); err != nil {
			return nil, err
		}
		return r.result("")
	}
	from := ""
	if a, err := mail.ParseAddress(msg.Header.Get("From")); err == nil {
		from = a.Address
	}
	r := &mailReader{}
	if err := r.entity("", msg.Header, msg.Body, 0); err != nil {
		return nil, err
	}
	return r.result(from)
}

type mailReader struct {
	parts int
	keys  []IncomingKey
	seen  map[pgpkey.KeyHash]bool
}

func (r *mailReader) result(from string) (*Mail, error) {
	if len(r.keys) == 0 {
		return nil, ErrNoKey
	}
	return &Mail{From: from, Keys: r.keys}, nil
}

// entity reads one MIME entity with header h and (still encoded) body.
func (r *mailReader) entity(part string, h map[string][]string, body io.Reader, depth int) error {
	r.parts++
	if r.parts > maxMIMEParts {
		return &MailError{Part: part, Reason: fmt.Sprintf("more than %d MIME parts", maxMIMEParts)}
	}
	if depth > maxMIMEDepth {
		return &MailError{Part: part, Reason: fmt.Sprintf("MIME nesting deeper than %d", maxMIMEDepth)}
	}
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	mediatype, params, err := mime.ParseMediaType(get("Content-Type"))
	if err != nil {
		mediatype = "text/plain" // RFC 2045 §5.2 default, also for a missing header
	}
	decoded, err := decodeTransfer(get("Content-Transfer-Encoding"), body)
	if err != nil {
		return &MailError{Part: partName(part), Reason: "cannot decode transfer encoding", Err: err}
	}
	switch {
	case strings.HasPrefix(mediatype, "multipart/"):
		boundary := params["boundary"]
		if boundary == "" {
			return &MailError{Part: partName(part), Reason: "multipart without boundary"}
		}
		mr := multipart.NewReader(decoded, boundary)
		for i := 1; ; i++ {
			p, err := mr.NextRawPart() // raw: we decode quoted-printable ourselves
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return &MailError{Part: partName(part), Reason: "broken multipart", Err: err}
			}
			sub := fmt.Sprintf("%d", i)
			if part != "" {
				sub = part + "." + sub
			}
			if err := r.entity(sub, p.Header, p, depth+1); err != nil {
				return err
			}
		}
	case mediatype == "message/rfc822":
		inner, err := mail.ReadMessage(decoded)
		if err != nil {
			return &MailError{Part: partName(part), Reason: "broken attached message", Err: err}
		}
		return r.entity(part, inner.Header, inner.Body, depth+1)
	default:
		b, err := io.ReadAll(decoded)
		if err != nil {
			return &MailError{Part: partName(part), Reason: "cannot decode transfer encoding", Err: err}
		}
		binaryOK := mediatype == "application/pgp-keys" || mediatype == "application/octet-stream"
		return r.text(part, b, binaryOK)
	}
}

func partName(part string) string {
	if part == "" {
		return ""
	}
	return "part " + part
}

// text looks for keys in one decoded part. Parts other than
// application/pgp-keys are searched for armor only, so that a binary
// attachment is not mistaken for a key.
func (r *mailReader) text(part string, b []byte, binaryOK bool) error {
	if !binaryOK && !bytes.Contains(b, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		return nil
	}
	raws, err := pgpkey.Decode(b)
	if errors.Is(err, pgpkey.ErrNoKey) && len(raws) == 0 {
		return nil
	}
	if err != nil {
		return &MailError{Part: partName(part), Reason: "broken key data", Err: err}
	}
	for _, raw := range raws {
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			return &MailError{Part: partName(part), Reason: fmt.Sprintf("key %d", len(r.keys)+1), Err: err}
		}
		h := k.Hash()
		if r.seen[h] {
			continue
		}
		if r.seen == nil {
			r.seen = map[pgpkey.KeyHash]bool{}
		}
		r.seen[h] = true
		r.keys = append(r.keys, IncomingKey{Raw: raw, Key: k})
	}
	return nil
}

// decodeTransfer undoes a Content-Transfer-Encoding. 7bit, 8bit, binary
// and unknown values pass through.
func decodeTransfer(cte string, body io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, &base64Cleaner{r: bufio.NewReader(body)}), nil
	case "quoted-printable":
		return quotedprintable.NewReader(body), nil
	}
	return body, nil
}

// base64Cleaner drops line breaks and other bytes outside the base64
// alphabet, as RFC 2045 §6.8 tells decoders to.
type base64Cleaner struct{ r *bufio.Reader }

func (c *base64Cleaner) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		b, err := c.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=' {
			p[n] = b
			n++
		}
	}
	return n, nil
}
