package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
)

// WriteMessage writes m as one frame: u32 length, type byte, body. It does
// not flush w; SKS's responder buffers replies until Flush, and callers
// decide when bytes go out.
//
// It returns an error wrapping ErrInvalidMessage, having written nothing,
// if the frame would not fit the 4-byte length; otherwise the first write
// error, if any.
func WriteMessage(w *bufio.Writer, m Message) error {
	n, err := frameLen(m)
	if err != nil {
		return err
	}
	e := encoder{w: w}
	e.u32(uint32(n))
	e.byte(byte(m.Type()))
	m.encodeBody(&e)
	if e.err != nil {
		return fmt.Errorf("recon/wire: write %s: %w", m.Type(), e.err)
	}
	return nil
}

// AppendMessage appends the frame of m to dst and returns the extended
// slice. Errors are those of WriteMessage; dst is returned unchanged then.
func AppendMessage(dst []byte, m Message) ([]byte, error) {
	n, err := frameLen(m)
	if err != nil {
		return dst, err
	}
	sw := sliceWriter{b: slices.Grow(dst, int(4+n))}
	e := encoder{w: &sw}
	e.u32(uint32(n))
	e.byte(byte(m.Type()))
	m.encodeBody(&e)
	return sw.b, nil
}

// WriteVerdict writes the bare (unframed) Config verdict: the string
// "passed", or "failed" followed by the reason string (spec recon.md §4).
// It does not flush w; SKS flushes right after the verdict.
func WriteVerdict(w *bufio.Writer, v Verdict) error {
	if !v.Passed && uint64(len(v.Reason)) > math.MaxUint32 {
		return fmt.Errorf("recon/wire: write verdict: reason of %d bytes: %w", len(v.Reason), ErrInvalidMessage)
	}
	e := encoder{w: w}
	if v.Passed {
		e.str(verdictPassed)
	} else {
		e.str(verdictFailed)
		e.str(v.Reason)
	}
	if e.err != nil {
		return fmt.Errorf("recon/wire: write verdict: %w", e.err)
	}
	return nil
}

// frameLen returns the frame's length field: the type byte plus the body.
func frameLen(m Message) (uint64, error) {
	if m == nil {
		return 0, fmt.Errorf("recon/wire: encode nil message: %w", ErrInvalidMessage)
	}
	n := 1 + m.bodyLen()
	if n > math.MaxUint32 {
		return 0, fmt.Errorf("recon/wire: encode %s: frame of %d bytes does not fit a u32 length: %w", m.Type(), n, ErrInvalidMessage)
	}
	return n, nil
}

// Body sizes. Each is exact, so the length field can be written first and
// the body streamed after it.

func strLen(s string) uint64             { return 4 + uint64(len(s)) }
func setLen(s []Element) uint64          { return 4 + ElementSize*uint64(len(s)) }
func prefixLen(p Prefix) uint64          { return 4 + strLen(p.b) }
func (m *ReconRqstPoly) bodyLen() uint64 { return prefixLen(m.Prefix) + 4 + setLen(m.Samples) }
func (m *ReconRqstFull) bodyLen() uint64 { return prefixLen(m.Prefix) + setLen(m.Set) }
func (m *Elements) bodyLen() uint64      { return setLen(m.Set) }
func (m *FullElements) bodyLen() uint64  { return setLen(m.Set) }
func (*SyncFail) bodyLen() uint64        { return 0 }
func (*Done) bodyLen() uint64            { return 0 }
func (*Flush) bodyLen() uint64           { return 0 }
func (m *ErrorMsg) bodyLen() uint64      { return strLen(m.Text) }
func (m *DbRqst) bodyLen() uint64        { return strLen(m.Data) }
func (m *DbRepl) bodyLen() uint64        { return strLen(m.Data) }

func (m *ConfigMsg) bodyLen() uint64 {
	n := uint64(4)
	for _, p := range m.Pairs {
		n += strLen(p.Key) + strLen(p.Value)
	}
	return n
}

func (m *ReconRqstPoly) encodeBody(e *encoder) {
	e.prefix(m.Prefix)
	e.u32(m.Size)
	e.set(m.Samples)
}

func (m *ReconRqstFull) encodeBody(e *encoder) {
	e.prefix(m.Prefix)
	e.set(m.Set)
}

func (m *Elements) encodeBody(e *encoder)     { e.set(m.Set) }
func (m *FullElements) encodeBody(e *encoder) { e.set(m.Set) }
func (*SyncFail) encodeBody(*encoder)         {}
func (*Done) encodeBody(*encoder)             {}
func (*Flush) encodeBody(*encoder)            {}
func (m *ErrorMsg) encodeBody(e *encoder)     { e.str(m.Text) }
func (m *DbRqst) encodeBody(e *encoder)       { e.str(m.Data) }
func (m *DbRepl) encodeBody(e *encoder)       { e.str(m.Data) }

func (m *ConfigMsg) encodeBody(e *encoder) {
	e.u32(uint32(len(m.Pairs)))
	for _, p := range m.Pairs {
		e.str(p.Key)
		e.str(p.Value)
	}
}

// byteWriter is what the encoder writes to: *bufio.Writer, *sliceWriter.
type byteWriter interface {
	io.Writer
	io.ByteWriter
	io.StringWriter
}

// encoder writes primitives and keeps the first error (sticky).
type encoder struct {
	w   byteWriter
	err error
}

func (e *encoder) byte(b byte) {
	if e.err == nil {
		e.err = e.w.WriteByte(b)
	}
}

func (e *encoder) u32(v uint32) {
	if e.err == nil {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], v)
		_, e.err = e.w.Write(b[:])
	}
}

func (e *encoder) str(s string) {
	e.u32(uint32(len(s)))
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

func (e *encoder) prefix(p Prefix) {
	e.u32(uint32(p.n))
	e.str(p.b)
}

func (e *encoder) set(s []Element) {
	e.u32(uint32(len(s)))
	for i := range s {
		if e.err != nil {
			return
		}
		_, e.err = e.w.Write(s[i][:])
	}
}

// sliceWriter appends to a byte slice; it never fails.
type sliceWriter struct{ b []byte }

func (s *sliceWriter) Write(p []byte) (int, error) {
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *sliceWriter) WriteByte(c byte) error {
	s.b = append(s.b, c)
	return nil
}

func (s *sliceWriter) WriteString(str string) (int, error) {
	s.b = append(s.b, str...)
	return len(str), nil
}
