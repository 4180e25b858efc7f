package wire

import (
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Sentinel errors. Every error this package returns for bad input wraps one
// of them (through *DecodeError), so callers decide with errors.Is.
var (
	// ErrMalformed marks input that breaks the wire format: a count larger
	// than the bytes left in its frame, a prefix whose byte string does not
	// match its bit count, a verdict that is neither "passed" nor "failed".
	ErrMalformed = errors.New("recon/wire: malformed input")

	// ErrTooLarge marks a length, count or frame size above its Limits
	// field. It is detected before anything is allocated for it.
	ErrTooLarge = errors.New("recon/wire: limit exceeded")

	// ErrUnknownType marks a frame whose type byte is not 0..10. SKS fails
	// the session with "Unexpected message code" (reconMessages.ml).
	ErrUnknownType = errors.New("recon/wire: unknown message type")

	// ErrInvalidMessage is returned by the encoders for a Go value that has
	// no wire form (a count or size above 2^32-1, a Config without
	// required values). Nothing is written in that case.
	ErrInvalidMessage = errors.New("recon/wire: invalid message")
)

// DecodeError reports bad or truncated input and where it was found.
//
// Err is ErrMalformed, ErrTooLarge, ErrUnknownType or io.ErrUnexpectedEOF,
// so errors.Is(err, io.ErrUnexpectedEOF) holds for input cut short.
type DecodeError struct {
	// What names the unit being decoded: a message type ("Elements frame"),
	// "frame", "verdict", "hashquery body" or "key strings body".
	What string
	// Offset is the byte offset inside that unit where the problem was
	// found. For frames, offset 0 is the first byte of the length field.
	Offset int64
	// Reason is a short lowercase phrase, e.g. "count 3 needs 51 bytes, 4 left".
	Reason string
	// Err is the sentinel this error wraps.
	Err error
}

func (e *DecodeError) Error() string {
	return "recon/wire: " + e.What + " at byte " + strconv.FormatInt(e.Offset, 10) + ": " + e.Reason
}

func (e *DecodeError) Unwrap() error { return e.Err }

// RejectError reports a Config handshake that ended with the bare string
// "failed". Reason is SKS's text, e.g. "mbar values do not match".
type RejectError struct {
	Reason string
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("recon/wire: config rejected: %q", e.Reason)
}

// truncated builds the error for input that ended early.
func truncated(what string, off int64, field string) error {
	return &DecodeError{What: what, Offset: off, Reason: "unexpected EOF in " + field, Err: io.ErrUnexpectedEOF}
}

// readErr classifies an error from io.ReadFull: a short read becomes a
// *DecodeError wrapping io.ErrUnexpectedEOF (EOF in the middle of a unit is
// always unexpected), anything else (a deadline, a reset) is wrapped as is.
func readErr(err error, what string, off int64, field string) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return truncated(what, off, field)
	}
	return fmt.Errorf("recon/wire: read %s %s: %w", what, field, err)
}
