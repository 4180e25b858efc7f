package mailsync

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Message is one outgoing sync mail: one key (mailsync.md §2.2, "one mail
// per key").
type Message struct {
	To   []string // the mailsync partners, all in one To: header
	From string   // from_addr
	// Key is the key's binary packets, armored into the body.
	Key []byte
	// Hostname and ArmorVersion add the armor headers "Comment: Hostname:"
	// and "Version:" when set (see Config).
	Hostname, ArmorVersion string
	// Extra adds Date, Message-ID and MIME-Version; Date is Time.
	Extra bool
	Time  time.Time
}

// Bytes returns the message in SKS's exact shape (sendmail.ml, mailsync.md
// §2.2): the header block in SKS's order with "\n" line ends, a blank line,
// then one armor block with 76-character base64 lines and a CRC-24, and no
// newline after the END line. With Extra, Date, Message-ID and MIME-Version
// follow SKS's headers; receivers that match on Subject or
// X-KeyServer-Sent see no difference.
func (m *Message) Bytes() []byte {
	var b bytes.Buffer
	hdr := func(name, value string) {
		b.WriteString(name)
		b.WriteString(": ")
		b.WriteString(oneLine(value))
		b.WriteByte('\n')
	}
	hdr("To", strings.Join(m.To, ", "))
	hdr("From", m.From)
	hdr("Reply-To", m.From)
	hdr("Errors-To", m.From)
	hdr("Subject", "incremental")
	hdr("Precedence", "list")
	hdr("Content-type", "application/pgp-keys")
	hdr("X-KeyServer-Sent", m.From)
	if m.Extra {
		hdr("Date", m.Time.Format(time.RFC1123Z))
		hdr("Message-ID", messageID(m.From))
		hdr("MIME-Version", "1.0")
	}
	b.WriteByte('\n')
	writeArmor(&b, m.Key, m.Hostname, m.ArmorVersion)
	return b.Bytes()
}

// oneLine keeps a configured value from adding header lines.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

func messageID(from string) string {
	var r [12]byte
	rand.Read(r[:])
	domain := "grapevine.invalid"
	if i := strings.LastIndexByte(from, '@'); i >= 0 {
		domain = strings.TrimRight(from[i+1:], "> ")
	}
	return fmt.Sprintf("<%s.%s@%s>", time.Now().UTC().Format("20060102150405"), hex.EncodeToString(r[:]), domain)
}

// armorLineLen is SKS's base64 line length (Cryptokit MIME-style base64,
// hkp.md §5.1).
const armorLineLen = 76

// writeArmor writes one PUBLIC KEY BLOCK without a final newline.
func writeArmor(b *bytes.Buffer, data []byte, hostname, ver string) {
	b.WriteString("-----BEGIN PGP PUBLIC KEY BLOCK-----\n")
	if ver != "" {
		b.WriteString("Version: " + oneLine(ver) + "\n")
	}
	if hostname != "" {
		if len(hostname) > 53 { // SKS truncates (hkp.md §5.1)
			hostname = hostname[:53]
		}
		b.WriteString("Comment: Hostname: " + oneLine(hostname) + "\n")
	}
	b.WriteByte('\n')
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > armorLineLen {
		b.WriteString(enc[:armorLineLen])
		b.WriteByte('\n')
		enc = enc[armorLineLen:]
	}
	if enc != "" {
		b.WriteString(enc)
		b.WriteByte('\n')
	}
	c := crc24(data)
	b.WriteByte('=')
	b.WriteString(base64.StdEncoding.EncodeToString([]byte{byte(c >> 16), byte(c >> 8), byte(c)}))
	b.WriteString("\n-----END PGP PUBLIC KEY BLOCK-----")
}

// crc24 is the OpenPGP armor checksum (RFC 4880 §6.1).
func crc24(data []byte) uint32 {
	const (
		init = 0xB704CE
		poly = 0x1864CFB
	)
	crc := uint32(init)
	for _, c := range data {
		crc ^= uint32(c) << 16
		for i := 0; i < 8; i++ {
			crc <<= 1
			if crc&0x1000000 != 0 {
				crc ^= poly
			}
		}
	}
	return crc & 0xFFFFFF
}
