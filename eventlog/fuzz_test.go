package eventlog_test

import (
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// FuzzUnmarshal checks that decoding never panics and that whatever decodes
// survives an encode/decode round trip.
func FuzzUnmarshal(f *testing.F) {
	for _, e := range sampleEvents() {
		b, err := e.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(withCRC([]byte{1, 1, 2, 1, 3, 9, 2, 0xaa, 0xbb}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var e eventlog.Event
		if err := e.UnmarshalBinary(b); err != nil {
			return
		}
		if len(e.Key)+len(e.Target)+len(e.Peer)+len(e.Reason) > len(b) {
			t.Fatalf("decoded %d field bytes from %d input bytes", len(e.Key)+len(e.Target)+len(e.Peer)+len(e.Reason), len(b))
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
	})
}
