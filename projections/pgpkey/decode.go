package pgpkey

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"sync"
)

// Decode splits an upload into keys. data is either a binary packet stream
// or ASCII armor: any number of PUBLIC KEY BLOCKs, with any text before,
// between and after them (HTML, mail quoting lines, …), armor headers such
// as Version: and Comment:, CRLF or LF line ends.
//
// The armor rules are more lenient than SKS's armor.ml, which decodes only
// the first block and requires the checksum: a missing or malformed CRC-24
// line is tolerated, but one that decodes and does not match is an error.
// Blocks of other kinds (signatures, messages) are skipped. A PRIVATE KEY
// BLOCK is an error with ErrSecretKey and is not decoded.
//
// Decode returns every key it could split off, in input order. The error is
// non-nil, a *ParseError saying where, when the armor is broken (no END
// line, invalid base64, checksum mismatch), when a packet stream inside is
// badly framed, when secret key material is present, or (ErrNoKey) when
// nothing decodable was found. Keys found elsewhere in the input are still
// returned with such an error; a caller that wants SKS's all-or-nothing
// behaviour for /pks/add rejects the upload on any error.
//
// Decode does not canonicalise: pass each key to ParseKey.
func Decode(data []byte) ([]*RawKey, error) {
	if len(data) > 0 && data[0]&0x80 != 0 && !bytes.HasPrefix(data, utf8BOM) {
		keys, err := readAll(data, 0)
		if len(keys) > 0 || !bytes.Contains(data, armorBegin) {
			if len(keys) == 0 && err == nil {
				err = &ParseError{Offset: 0, Reason: "no public key in input", Err: ErrNoKey}
			}
			return keys, err
		}
		// Not a packet stream after all (text starting with a high
		// byte): fall through to armor.
	}
	return decodeArmor(data)
}

var (
	utf8BOM     = []byte{0xef, 0xbb, 0xbf}
	armorBegin  = []byte("-----BEGIN PGP ")
	armorEnd    = []byte("-----END PGP ")
	armorDashes = []byte("-----")
)

// bufReaders recycles readAll's buffered readers: every upload decodes
// through one, and a fresh 64 KiB buffer per upload (allocated, cleared,
// collected) was a tenth of the upload handler's CPU. The keys a Reader
// returns never alias a bufio.Reader (takeBuffered and readKey copy).
var bufReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerBufferSize) }}

// readAll splits a whole binary packet stream; it returns the first error
// and keeps going after it.
func readAll(data []byte, block int) ([]*RawKey, error) {
	var keys []*RawKey
	var first error
	br := bufReaders.Get().(*bufio.Reader)
	br.Reset(bytes.NewReader(data))
	defer func() {
		br.Reset(nil) // drop data
		bufReaders.Put(br)
	}()
	r := &Reader{MaxPacketBytes: DefaultMaxPacketBytes, MaxKeyBytes: DefaultMaxKeyBytes, br: br}
	for {
		k, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				return keys, err // a read error: impossible with a bytes.Reader
			}
			pe.Block = block
			if first == nil {
				first = err
			}
			continue
		}
		k.Block = block
		keys = append(keys, k)
	}
	return keys, first
}

// decodeArmor decodes every armor block of data.
func decodeArmor(data []byte) ([]*RawKey, error) {
	var keys []*RawKey
	var first error
	note := func(err error) {
		if first == nil {
			first = err
		}
	}
	block := 0
	pos := 0
	for {
		i := bytes.Index(data[pos:], armorBegin)
		if i < 0 {
			break
		}
		begin := pos + i
		line, next := lineAt(data, begin)
		pos = next
		if len(line) <= len(armorBegin) {
			// "-----BEGIN PGP " and nothing else on the line (its trailing
			// white space trimmed): no header, so no block to skip.
			continue
		}
		label := armorLabel(line[len(armorBegin):])
		block++
		switch label {
		case "PUBLIC KEY BLOCK":
		case "PRIVATE KEY BLOCK", "SECRET KEY BLOCK":
			note(&ParseError{Block: block, Offset: int64(begin), Reason: "secret key material refused", Err: ErrSecretKey})
			pos = skipToEnd(data, pos)
			continue
		default:
			pos = skipToEnd(data, pos) // signatures, messages: not keys
			continue
		}
		bin, end, err := decodeArmorBody(data, begin, pos, block)
		pos = end
		if err != nil {
			note(err)
			continue
		}
		ks, err := readAll(bin, block)
		keys = append(keys, ks...)
		if err != nil {
			note(err)
		}
	}
	if len(keys) == 0 && first == nil {
		first = &ParseError{Offset: 0, Reason: "no public key in input", Err: ErrNoKey}
	}
	return keys, first
}

// lineAt returns the line containing data[at:] up to, not including, its
// line end with trailing white space removed, and the offset of the next
// line.
func lineAt(data []byte, at int) (line []byte, next int) {
	j := bytes.IndexByte(data[at:], '\n')
	if j < 0 {
		return bytes.TrimRight(data[at:], " \t\r"), len(data)
	}
	return bytes.TrimRight(data[at:at+j], " \t\r"), at + j + 1
}

// armorLabel returns the label of a BEGIN or END line, given the text after
// "-----BEGIN PGP "; junk after the closing dashes (say "</pre>") is ignored.
func armorLabel(rest []byte) string {
	if j := bytes.Index(rest, armorDashes); j >= 0 {
		rest = rest[:j]
	}
	return string(rest)
}

// skipToEnd returns the offset just after the next "-----END PGP " (or
// len(data)). Scanning for the next block resumes there, not at the next
// line, so that blocks pasted without a line break between them are found.
func skipToEnd(data []byte, pos int) int {
	i := bytes.Index(data[pos:], armorEnd)
	if i < 0 {
		return len(data)
	}
	return pos + i + len(armorEnd)
}

// decodeArmorBody decodes the armor block whose BEGIN line is at begin and
// whose next line is at pos. It returns the binary data and the offset after
// the block.
func decodeArmorBody(data []byte, begin, pos, block int) ([]byte, int, error) {
	armorErr := func(off int, reason string) *ParseError {
		return &ParseError{Block: block, Offset: int64(off), Reason: reason}
	}
	// Armor headers: "Key: value" lines up to a blank line. Base64 never
	// holds ':', so a line without one ends the headers even when the
	// blank line is missing.
	for pos < len(data) {
		line, next := lineAt(data, pos)
		if len(line) == 0 {
			pos = next
			break
		}
		if bytes.IndexByte(line, ':') < 0 || bytes.HasPrefix(line, armorEnd) {
			break
		}
		pos = next
	}

	// Body lines up to the CRC line or the END line. lineStarts maps an
	// offset in the collected base64 text back to the input.
	var text []byte
	type lineStart struct{ text, input int }
	var starts []lineStart
	var crc []byte
	crcOff := 0
	endFound := false
	for pos < len(data) {
		lineOff := pos
		line, next := lineAt(data, pos)
		pos = next
		if j := bytes.Index(line, armorEnd); j >= 0 {
			endFound = true
			pos = lineOff + j + len(armorEnd)
			break
		}
		trimmed := bytes.TrimLeft(line, " \t")
		if len(trimmed) == 0 {
			continue
		}
		if trimmed[0] == '=' && crc == nil {
			crc, crcOff = trimmed[1:], lineOff
			continue
		}
		if crc != nil {
			// Text after the CRC line but before END.
			return nil, pos, armorErr(lineOff, "unexpected text after armor checksum")
		}
		starts = append(starts, lineStart{len(text), lineOff})
		for _, c := range trimmed {
			if c != ' ' && c != '\t' {
				text = append(text, c)
			}
		}
	}
	if !endFound {
		return nil, pos, armorErr(begin, "armor block has no END line")
	}
	where := func(textOff int) int {
		in := begin
		for _, s := range starts {
			if s.text > textOff {
				break
			}
			in = s.input
		}
		return in
	}
	enc := base64.StdEncoding
	if len(text)%4 != 0 && bytes.IndexByte(text, '=') < 0 {
		enc = base64.RawStdEncoding // tolerate missing padding
	}
	bin := make([]byte, enc.DecodedLen(len(text)))
	n, err := enc.Decode(bin, text)
	if err != nil {
		off := begin
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			off = where(int(ce))
		}
		return nil, pos, armorErr(off, "invalid base64 in armor")
	}
	bin = bin[:n]
	if len(bin) == 0 {
		return nil, pos, armorErr(begin, "empty armor block")
	}
	if sum, ok := decodeCRC(crc); ok && sum != crc24(bin) {
		return nil, pos, armorErr(crcOff, "armor checksum mismatch")
	}
	return bin, pos, nil
}

// decodeCRC decodes the text after '=' of a CRC-24 line; ok is false when it
// is missing or not four base64 characters, which we tolerate.
func decodeCRC(s []byte) (uint32, bool) {
	if len(s) != 4 {
		return 0, false
	}
	var b [3]byte
	if n, err := base64.StdEncoding.Decode(b[:], s); err != nil || n != 3 {
		return 0, false
	}
	return uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]), true
}

// crc24 is the OpenPGP armor checksum (RFC 9580 §6.1).
func crc24(data []byte) uint32 { return CRC24(CRC24Init, data) }
