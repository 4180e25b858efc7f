package eventlog_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

func sampleEvents() map[string]*eventlog.Event {
	t0 := time.Date(2026, 8, 1, 12, 30, 45, 123456789, time.UTC)
	return map[string]*eventlog.Event{
		"KeySubmittedHKP": {Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: t0,
			Key: []byte{0x99, 0x01, 0x0d, 0x04, 0x00}},
		"KeySubmittedRecon": {Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginRecon, Peer: "sks.example.net 11370",
			Time: t0.Add(time.Nanosecond), Key: bytes.Repeat([]byte{0xc6, 0x33}, 5000)},
		"KeySubmittedMail": {Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginMail, Peer: "pgp-public-keys@keys.example.org",
			Time: t0, Key: []byte{1}},
		"KeySubmittedImport": {Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginImport, Peer: "dump/sks-dump-0003.pgp",
			Time: time.Unix(0, 0).UTC(), Key: []byte{2, 3}},
		"KeyDeleted": {Kind: eventlog.KindKeyDeleted, Origin: eventlog.OriginAdmin, Peer: "admin@localhost",
			Time: t0, Target: bytes.Repeat([]byte{0xab}, 20), Reason: "GDPR request #12"},
		"KeyBlocked": {Kind: eventlog.KindKeyBlocked, Origin: eventlog.OriginAdmin,
			Time: t0, Target: bytes.Repeat([]byte{0xcd}, 32), Reason: "spam: ünïcødé"},
		"KeyUnblocked": {Kind: eventlog.KindKeyUnblocked, Origin: eventlog.OriginAdmin,
			Time: time.Unix(-1, 5).UTC(), Target: []byte{0xef}},
		"ZeroTime":    {Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Key: []byte{7}},
		"Empty":       {},
		"UnknownKind": {Kind: 200, Origin: 99, Peer: "future"},
	}
}

func eventsEqual(a, b *eventlog.Event) bool {
	return a.Kind == b.Kind && a.Origin == b.Origin && a.Peer == b.Peer && a.Time.Equal(b.Time) &&
		a.Time.IsZero() == b.Time.IsZero() && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Target, b.Target) &&
		a.Reason == b.Reason
}

func TestEventRoundTrip(t *testing.T) {
	for name, e := range sampleEvents() {
		t.Run(name, func(t *testing.T) {
			b, err := e.MarshalBinary()
			if err != nil {
				t.Fatalf("MarshalBinary: %v", err)
			}
			var got eventlog.Event
			if err := got.UnmarshalBinary(b); err != nil {
				t.Fatalf("UnmarshalBinary: %v", err)
			}
			if !eventsEqual(&got, e) {
				t.Fatalf("got %+v, want %+v", got, *e)
			}
			if !got.Time.IsZero() && got.Time.Location() != time.UTC {
				t.Errorf("got.Time location %v, want UTC", got.Time.Location())
			}
			// The decoded event must not alias the input.
			for k := range b {
				b[k] ^= 0xff
			}
			if !eventsEqual(&got, e) {
				t.Fatalf("decoded event changed with its input")
			}
		})
	}
}

func TestEventTimeRange(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		e := &eventlog.Event{Kind: eventlog.KindKeySubmitted, Time: tm}
		if _, err := e.MarshalBinary(); !errors.Is(err, eventlog.ErrInvalid) {
			t.Errorf("MarshalBinary with time %v: err = %v, want ErrInvalid", tm, err)
		}
	}
}

// TestEventCorruption flips every byte of every sample record and cuts it
// at every length: each must fail with ErrCorrupt.
func TestEventCorruption(t *testing.T) {
	for name, e := range sampleEvents() {
		t.Run(name, func(t *testing.T) {
			b, err := e.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			for k := range b {
				for _, mask := range []byte{0x01, 0x80, 0xff} {
					c := bytes.Clone(b)
					c[k] ^= mask
					var got eventlog.Event
					if err := got.UnmarshalBinary(c); !errors.Is(err, eventlog.ErrCorrupt) {
						t.Fatalf("byte %d ^ %#x: err = %v, want ErrCorrupt", k, mask, err)
					}
				}
			}
			for n := 0; n < len(b); n++ {
				var got eventlog.Event
				if err := got.UnmarshalBinary(b[:n]); !errors.Is(err, eventlog.ErrCorrupt) {
					t.Fatalf("cut at %d of %d: err = %v, want ErrCorrupt", n, len(b), err)
				}
			}
		})
	}
}

// withCRC appends a valid checksum to body.
func withCRC(body []byte) []byte {
	return binary.BigEndian.AppendUint32(body, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

func TestEventDecodeRules(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		err  error // nil: must decode
		want eventlog.Event
	}{
		{"UnknownTagSkipped", []byte{1, 1, 2, 1, 3, 9, 2, 0xaa, 0xbb, 0x0a, 0}, nil,
			eventlog.Event{Kind: 1, Origin: 3}},
		{"LaterVersion", []byte{2, 1}, eventlog.ErrUnknownVersion, eventlog.Event{}},
		{"DuplicateTag", []byte{1, 1, 3, 1, 'a', 3, 1, 'b'}, eventlog.ErrCorrupt, eventlog.Event{}},
		{"TagsOutOfOrder", []byte{1, 1, 3, 1, 'a', 2, 1, 1}, eventlog.ErrCorrupt, eventlog.Event{}},
		{"ShortTime", []byte{1, 1, 1, 4, 0, 0, 0, 0}, eventlog.ErrCorrupt, eventlog.Event{}},
		{"LongOrigin", []byte{1, 1, 2, 2, 1, 1}, eventlog.ErrCorrupt, eventlog.Event{}},
		{"LengthPastEnd", []byte{1, 1, 4, 0xff, 0xff, 0xff, 0xff, 0x0f, 1}, eventlog.ErrCorrupt, eventlog.Event{}},
		{"TruncatedTag", []byte{1, 1, 0x80}, eventlog.ErrCorrupt, eventlog.Event{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got eventlog.Event
			err := got.UnmarshalBinary(withCRC(tt.body))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if !eventsEqual(&got, &tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestOrigin(t *testing.T) {
	for o, s := range map[eventlog.Origin]string{
		eventlog.OriginHKP: "hkp", eventlog.OriginRecon: "recon", eventlog.OriginMail: "mail",
		eventlog.OriginImport: "import", eventlog.OriginAdmin: "admin",
	} {
		if got := o.String(); got != s {
			t.Errorf("Origin(%d).String() = %q, want %q", o, got, s)
		}
		if got, err := eventlog.ParseOrigin(s); err != nil || got != o {
			t.Errorf("ParseOrigin(%q) = %v, %v, want %v", s, got, err, o)
		}
	}
	if got, want := eventlog.Origin(9).String(), "origin(9)"; got != want {
		t.Errorf("Origin(9).String() = %q, want %q", got, want)
	}
	if _, err := eventlog.ParseOrigin("HKP"); err == nil {
		t.Errorf("ParseOrigin(HKP) succeeded, want an error")
	}
}
