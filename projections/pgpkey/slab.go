package pgpkey

import (
	"bufio"
	"io"
)

// slabBuffer is the Reader's input buffer. It does what the Reader asked
// of a bufio.Reader (Peek, Discard, Read, Buffered, Size, with bufio's
// errors), except that it never moves or overwrites bytes it has read:
// when the slab it reads into is full, it goes on in a new one, and the
// unread bytes are copied there. A key that lies whole in the buffer is
// then handed out as a slice of the slab (take) instead of copied into
// memory of its own: with bufio, every byte of a dump was copied once more
// and every key was an allocation of its own. The keys read from one slab
// share it, and it stays allocated while any of them is referenced.
type slabBuffer struct {
	rd   io.Reader
	size int    // of a slab
	buf  []byte // the slab being read into; nil until the first read
	r, w int    // buf[r:w] is read and not yet consumed
	err  error  // of rd, returned once the buffer is empty (as bufio)
}

func newSlabBuffer(rd io.Reader, size int) *slabBuffer {
	return &slabBuffer{rd: rd, size: max(size, 16)}
}

// Size returns the size of a slab: the most Peek can return.
func (b *slabBuffer) Size() int { return b.size }

// Buffered returns how many bytes can be read without reading rd.
func (b *slabBuffer) Buffered() int { return b.w - b.r }

// fill reads once more into the slab, first moving to a new slab when the
// current one has no room left. It reads until rd returns some bytes or an
// error, at most 100 times (bufio's limit on empty reads).
func (b *slabBuffer) fill() {
	if b.buf == nil || b.w == len(b.buf) {
		next := make([]byte, b.size)
		b.w = copy(next, b.buf[b.r:b.w])
		b.r = 0
		b.buf = next
	}
	for range 100 {
		n, err := b.rd.Read(b.buf[b.w:])
		if n < 0 {
			panic("pgpkey: reader returned a negative count")
		}
		b.w += n
		if err != nil {
			b.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	b.err = io.ErrNoProgress
}

func (b *slabBuffer) readErr() error {
	err := b.err
	b.err = nil
	return err
}

// Peek returns the next n bytes without consuming them, as
// bufio.Reader.Peek does. The slice is valid until the next call.
func (b *slabBuffer) Peek(n int) ([]byte, error) {
	for b.w-b.r < n && b.w-b.r < b.size && b.err == nil {
		b.fill()
	}
	if n > b.size {
		return b.buf[b.r:b.w], bufio.ErrBufferFull
	}
	var err error
	if avail := b.w - b.r; avail < n {
		n = avail
		err = b.readErr()
		if err == nil {
			err = bufio.ErrBufferFull
		}
	}
	return b.buf[b.r : b.r+n], err
}

// Discard skips the next n bytes, as bufio.Reader.Discard does.
func (b *slabBuffer) Discard(n int) (int, error) {
	remain := n
	for {
		skip := min(b.w-b.r, remain)
		b.r += skip
		remain -= skip
		if remain == 0 {
			return n, nil
		}
		if b.err != nil {
			return n - remain, b.readErr()
		}
		b.fill()
	}
}

// Read reads into p, as bufio.Reader.Read does (at most one read of rd).
func (b *slabBuffer) Read(p []byte) (int, error) {
	if len(p) == 0 {
		if b.w > b.r {
			return 0, nil
		}
		return 0, b.readErr()
	}
	if b.r == b.w {
		if b.err != nil {
			return 0, b.readErr()
		}
		if len(p) >= b.size {
			// Large read, empty buffer: straight into p.
			n, err := b.rd.Read(p)
			if n < 0 {
				panic("pgpkey: reader returned a negative count")
			}
			return n, err
		}
		b.fill()
		if b.r == b.w {
			return 0, b.readErr()
		}
	}
	n := copy(p, b.buf[b.r:b.w])
	b.r += n
	return n, nil
}

// take consumes the next n bytes, which must be buffered, and returns them
// as a slice of the slab that nothing will write to again.
func (b *slabBuffer) take(n int) []byte {
	s := b.buf[b.r : b.r+n : b.r+n]
	b.r += n
	return s
}
