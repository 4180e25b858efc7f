package eventlog_test

import (
	"bytes"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// FuzzUnmarshal checks that decoding never panics and that whatever decodes
// survives an encode/decode round trip. Each input is tried as is and with a
// valid checksum appended, so the fuzzer reaches the field parser without
// having to forge CRCs.
func FuzzUnmarshal(f *testing.F) {
	for _, e := range sampleEvents() {
		b, err := e.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		if len(b) > 1024 {
			continue // large seeds make the fuzzer's minimisation crawl
		}
		f.Add(b)
		f.Add(b[:len(b)-4]) // the body, for the appended-checksum variant
	}
	f.Add(withCRC([]byte{1, 1, 2, 1, 3, 9, 2, 0xaa, 0xbb}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		checkDecode(t, withCRC(bytes.Clone(b)))
	})
}

func checkDecode(t *testing.T, b []byte) {
	var e eventlog.Event
	if err := e.UnmarshalBinary(b); err != nil {
		return
	}
	if n := len(e.Key) + len(e.Target) + len(e.Peer) + len(e.Reason); n > len(b) {
		t.Fatalf("decoded %d field bytes from %d input bytes", n, len(b))
	}
	b2, err := e.MarshalBinary()
	if err != nil {
		t.Fatalf("MarshalBinary of decoded event: %v", err)
	}
	var e2 eventlog.Event
	if err := e2.UnmarshalBinary(b2); err != nil {
		t.Fatalf("UnmarshalBinary of re-encoded event: %v", err)
	}
	if !eventsEqual(&e, &e2) {
		t.Fatalf("round trip: got %+v, want %+v", e2, e)
	}
}
