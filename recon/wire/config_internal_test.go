package wire

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

// TestOCamlIntOfString pins the int_of_string rules SKS's version parse
// inherits (OCaml runtime ints.c parse_intnat, 63-bit ints).
func TestOCamlIntOfString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"6", 6, true},
		{"-1", -1, true},
		{"+7", 7, true},
		{"1_000", 1000, true},
		{"0x1f", 31, true},
		{"0X1F", 31, true},
		{"0o17", 15, true},
		{"0b101", 5, true},
		{"0u42", 42, true},
		{"-0x10", -16, true},
		{"4611686018427387903", 1<<62 - 1, true}, // max_int
		{"-4611686018427387904", -1 << 62, true}, // min_int
		{"4611686018427387904", 0, false},
		{"0x7fffffffffffffff", -1, true}, // unsigned forms wrap, as Val_long does
		{"0x8000000000000000", 0, false},
		{"99999999999999999999999", 0, false},
		{"", 0, false},
		{"-", 0, false},
		{"_1", 0, false},
		{"0x", 0, false},
		{"1a", 0, false},
		{"6+", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"0xg", 0, false},
		{"08", 8, true},
	} {
		got, ok := ocamlIntOfString(tc.in)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("ocamlIntOfString(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want [3]int64
		exn  string
	}{
		{"1.1.6", [3]int64{1, 1, 6}, ""},
		{".1.1.6", [3]int64{1, 1, 6}, ""},
		{"1.1.6.", [3]int64{}, `Failure("int_of_string")`},
		{"1.1.", [3]int64{}, `Invalid_argument("index out of bounds")`},
		{"1.1.6.7", [3]int64{}, `Failure("int_of_string")`},
	} {
		got, exn := parseVersion(tc.in)
		if exn != tc.exn || (exn == "" && got != tc.want) {
			t.Errorf("parseVersion(%q) = %v, %q; want %v, %q", tc.in, got, exn, tc.want, tc.exn)
		}
	}
}

// hugeMsg claims a body that does not fit a u32 frame length.
type hugeMsg struct{ Elements }

func (*hugeMsg) bodyLen() uint64 { return 1 << 32 }

func TestFrameTooLong(t *testing.T) {
	out, err := AppendMessage([]byte{1}, &hugeMsg{})
	if !errors.Is(err, ErrInvalidMessage) || len(out) != 1 {
		t.Errorf("AppendMessage = %d bytes, %v; want ErrInvalidMessage and nothing appended", len(out), err)
	}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	if err := WriteMessage(bw, &hugeMsg{}); !errors.Is(err, ErrInvalidMessage) || bw.Buffered() != 0 {
		t.Errorf("WriteMessage = %v with %d bytes buffered", err, bw.Buffered())
	}
}
