package pgpkey_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// stream is a binary packet stream of known keys in SKS framing, with the
// offset of every key and packet.
type stream struct {
	data    []byte
	keys    []*pgpkey.Key
	keyOffs []int64   // offset of each key
	pktOffs [][]int64 // offset of each packet of each key
}

// sksHeaderLen is the header size SKS write_packet uses (keyhash.md §7).
func sksHeaderLen(p pgpkey.Packet) int {
	switch n := len(p.Body); {
	case p.Tag >= 16:
		return 6
	case n < 256:
		return 2
	case n < 65536:
		return 3
	}
	return 5
}

func newStream(tb testing.TB, keys []*pgpkey.Key) *stream {
	tb.Helper()
	s := &stream{keys: keys}
	for _, k := range keys {
		off := int64(len(s.data))
		s.keyOffs = append(s.keyOffs, off)
		var offs []int64
		for _, p := range k.Packets() {
			offs = append(offs, off)
			off += int64(sksHeaderLen(p) + len(p.Body))
		}
		s.pktOffs = append(s.pktOffs, offs)
		s.data = k.AppendMarshal(s.data)
		if int64(len(s.data)) != off {
			tb.Fatalf("Marshal framing is not SKS's: %d bytes, want %d", len(s.data), off)
		}
	}
	return s
}

// fixtureStream is the seven test keys, in SKS framing.
func fixtureStream(tb testing.TB) *stream {
	tb.Helper()
	files := testKeyFiles(tb)
	var keys []*pgpkey.Key
	for _, name := range []string{"keys-a.pgp", "keys-b.pgp", "grace.pgp"} {
		for _, raw := range readAllKeys(tb, files[name]) {
			k, err := pgpkey.ParseKey(raw)
			if err != nil {
				tb.Fatal(err)
			}
			keys = append(keys, k)
		}
	}
	if len(keys) != 7 {
		tb.Fatalf("fixture keys: got %d, want 7", len(keys))
	}
	return newStream(tb, keys)
}

// result is one Next call's outcome.
type result struct {
	key *pgpkey.RawKey
	err error
}

// collect calls Next until io.EOF (at most limit times).
func collect(tb testing.TB, r *pgpkey.Reader) []result {
	tb.Helper()
	var out []result
	for range 1000 {
		k, err := r.Next()
		if err == io.EOF {
			if k2, err2 := r.Next(); k2 != nil || err2 != io.EOF {
				tb.Fatalf("Next after io.EOF = %v, %v; want nil, io.EOF", k2, err2)
			}
			return out
		}
		if (k == nil) == (err == nil) {
			tb.Fatalf("Next returned key %v and error %v", k, err)
		}
		out = append(out, result{k, err})
	}
	tb.Fatal("Next did not reach io.EOF")
	return nil
}

// checkKey checks that a result is key i of s, read at its true offset.
func (s *stream) checkKey(tb testing.TB, res result, i int) {
	tb.Helper()
	if res.err != nil {
		tb.Fatalf("want key %d at byte %d, got error %v", i, s.keyOffs[i], res.err)
	}
	if got, want := res.key.Offset, s.keyOffs[i]; got != want {
		tb.Errorf("key %d: Offset = %d, want %d", i, got, want)
	}
	k, err := pgpkey.ParseKey(res.key)
	if err != nil {
		tb.Fatalf("key %d: %v", i, err)
	}
	if got, want := k.Hash(), s.keys[i].Hash(); got != want {
		tb.Errorf("key %d: hash %s, want %s", i, got, want)
	}
}

// checkErr checks that a result is a *ParseError at the given place.
func checkErr(tb testing.TB, res result, offset int64, packet int, reason string) *pgpkey.ParseError {
	tb.Helper()
	if res.err == nil {
		tb.Fatalf("want error at byte %d, got key at byte %d", offset, res.key.Offset)
	}
	pe := asParseError(tb, res.err)
	if pe.Offset != offset || pe.Packet != packet || !strings.Contains(pe.Reason, reason) {
		tb.Errorf("got %q (Offset %d, Packet %d), want Offset %d, Packet %d, reason containing %q",
			pe.Error(), pe.Offset, pe.Packet, offset, packet, reason)
	}
	return pe
}

// splice returns data with ins inserted at off.
func splice(data []byte, off int64, ins ...byte) []byte {
	out := append([]byte(nil), data[:off]...)
	out = append(out, ins...)
	return append(out, data[off:]...)
}

func TestReaderSplitsKeys(t *testing.T) {
	s := fixtureStream(t)
	res := collect(t, pgpkey.NewReader(bytes.NewReader(s.data)))
	if len(res) != len(s.keys) {
		t.Fatalf("got %d results, want %d", len(res), len(s.keys))
	}
	for i, r := range res {
		s.checkKey(t, r, i)
		end := int64(len(s.data))
		if i+1 < len(s.keyOffs) {
			end = s.keyOffs[i+1]
		}
		if !bytes.Equal(r.key.Raw, s.data[s.keyOffs[i]:end]) {
			t.Errorf("key %d: Raw is not the exact input bytes", i)
		}
		if got, want := len(r.key.Packets), len(s.pktOffs[i]); got != want {
			t.Errorf("key %d: %d packets, want %d", i, got, want)
		}
	}
}

func TestReaderLeadingPacketIsAKey(t *testing.T) {
	// SKS starts a key at the first packet, whatever it is (keyhash.md §3):
	// a leading signature becomes a one-packet pseudo-key, which ParseKey
	// rejects; the real key after it is unaffected.
	s := fixtureStream(t)
	junk := []byte{0x88, 0x02, 0x04, 0x20} // old format tag 2, key revocation
	data := append(append([]byte(nil), junk...), s.data...)
	res := collect(t, pgpkey.NewReader(bytes.NewReader(data)))
	if len(res) != 8 {
		t.Fatalf("got %d results, want 8", len(res))
	}
	if res[0].err != nil || res[0].key.Offset != 0 || len(res[0].key.Packets) != 1 {
		t.Fatalf("first result: %+v, want a one-packet key at byte 0", res[0])
	}
	_, err := pgpkey.ParseKey(res[0].key)
	checkErr(t, result{err: err}, 0, 1, "standalone revocation certificate")
	if got, want := res[1].key.Offset, int64(len(junk)); got != want {
		t.Errorf("first real key at byte %d, want %d", got, want)
	}
}

func TestReaderTruncated(t *testing.T) {
	s := fixtureStream(t)
	k1 := s.pktOffs[1] // second key's packets
	last := len(k1) - 1
	for _, tc := range []struct {
		name   string
		cut    int64 // bytes kept
		errOff int64
		packet int
		reason string
	}{
		{"InBody", k1[last] + 5, k1[last], last + 1, "truncated packet: body of"},
		{"InHeader", k1[2] + 1, k1[2], 3, "truncated packet header"},
		{"InPrimaryBody", k1[0] + 3, k1[0], 1, "truncated packet: body of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := collect(t, pgpkey.NewReader(bytes.NewReader(s.data[:tc.cut])))
			if len(res) != 2 {
				t.Fatalf("got %d results, want key 0 and an error", len(res))
			}
			s.checkKey(t, res[0], 0)
			pe := checkErr(t, res[1], tc.errOff, tc.packet, tc.reason)
			if !errors.Is(pe, io.ErrUnexpectedEOF) {
				t.Errorf("error %v does not wrap io.ErrUnexpectedEOF", pe)
			}
		})
	}
}

func TestReaderFramingErrorsResync(t *testing.T) {
	s := fixtureStream(t)
	bad := s.pktOffs[1][1] // second packet of the second key
	for _, tc := range []struct {
		name   string
		insert []byte
		reason string
	}{
		{"AbsurdLength", []byte{0x8a, 0xff, 0xff, 0xff, 0xff}, "packet length 4294967295 exceeds limit"},
		{"AbsurdNewFormatLength", []byte{0xc2, 0xff, 0x7f, 0xff, 0xff, 0xff}, "packet length 2147483647 exceeds limit"},
		{"Indeterminate", []byte{0x8b, 0x04}, "indeterminate packet length"},
		{"Partial", []byte{0xc2, 0xe1, 0x04, 0x00}, "partial body length"},
		{"Bit7Clear", []byte("<html>"), "bit 7 of packet tag is clear"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := splice(s.data, bad, tc.insert...)
			shift := int64(len(tc.insert))
			res := collect(t, pgpkey.NewReader(bytes.NewReader(data)))
			// Key 0, the error, then keys 2.. at their shifted offsets.
			if len(res) != len(s.keys) {
				t.Fatalf("got %d results, want %d", len(res), len(s.keys))
			}
			s.checkKey(t, res[0], 0)
			checkErr(t, res[1], bad, 2, tc.reason)
			for i := 2; i < len(s.keys); i++ {
				if res[i].err != nil {
					t.Fatalf("result %d: %v", i, res[i].err)
				}
				if got, want := res[i].key.Offset, s.keyOffs[i]+shift; got != want {
					t.Errorf("key %d: Offset = %d, want %d", i, got, want)
				}
				k, err := pgpkey.ParseKey(res[i].key)
				if err != nil {
					t.Fatal(err)
				}
				if k.Hash() != s.keys[i].Hash() {
					t.Errorf("key %d: wrong hash after resync", i)
				}
			}
		})
	}
}

func TestReaderGarbage(t *testing.T) {
	s := fixtureStream(t)
	t.Run("Leading", func(t *testing.T) {
		junk := []byte("<!DOCTYPE html>\n<p>key:</p>\n")
		data := append(append([]byte(nil), junk...), s.data...)
		res := collect(t, pgpkey.NewReader(bytes.NewReader(data)))
		if len(res) != 1+len(s.keys) {
			t.Fatalf("got %d results, want %d", len(res), 1+len(s.keys))
		}
		checkErr(t, res[0], 0, 1, "bit 7 of packet tag is clear")
		if got, want := res[1].key.Offset, int64(len(junk)); got != want {
			t.Errorf("first key at byte %d, want %d", got, want)
		}
	})
	t.Run("OnlyGarbage", func(t *testing.T) {
		res := collect(t, pgpkey.NewReader(strings.NewReader("no keys here, just text\n")))
		if len(res) != 1 {
			t.Fatalf("got %d results, want one error", len(res))
		}
		checkErr(t, res[0], 0, 1, "bit 7")
	})
	t.Run("Empty", func(t *testing.T) {
		if res := collect(t, pgpkey.NewReader(bytes.NewReader(nil))); len(res) != 0 {
			t.Fatalf("got %d results from empty input", len(res))
		}
	})
	t.Run("ImplausibleHeadersSkipped", func(t *testing.T) {
		// Bytes that look like a tag-6 header but carry no plausible key
		// (version 9; algorithm 0) must not stop the resync.
		junk := []byte{0x01, 0x99, 0x00, 0x20, 0x09, 1, 2, 3, 4, 1, 0, 0, 0x98, 0x20, 0x04, 1, 2, 3, 4, 0x00, 0, 0}
		data := append(append([]byte(nil), junk...), s.data...)
		res := collect(t, pgpkey.NewReader(bytes.NewReader(data)))
		if len(res) != 1+len(s.keys) {
			t.Fatalf("got %d results, want %d", len(res), 1+len(s.keys))
		}
		if got, want := res[1].key.Offset, int64(len(junk)); got != want {
			t.Errorf("first key at byte %d, want %d", got, want)
		}
	})
}

func TestReaderMaxKeyBytes(t *testing.T) {
	s := fixtureStream(t)
	// Find the largest key and a limit below it but above all others.
	big, second := 0, int64(0)
	size := func(i int) int64 {
		if i+1 < len(s.keyOffs) {
			return s.keyOffs[i+1] - s.keyOffs[i]
		}
		return int64(len(s.data)) - s.keyOffs[i]
	}
	for i := range s.keys {
		if size(i) > size(big) {
			big = i
		}
	}
	for i := range s.keys {
		if i != big && size(i) > second {
			second = size(i)
		}
	}
	for _, tc := range []struct {
		name  string
		limit int64
	}{
		{"InKey", second},
		{"FirstPacket", 10}, // the primary itself is over the limit
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pgpkey.NewReader(bytes.NewReader(s.data))
			r.MaxKeyBytes = tc.limit
			res := collect(t, r)
			if len(res) != len(s.keys) {
				t.Fatalf("got %d results, want %d", len(res), len(s.keys))
			}
			for i, rs := range res {
				if (tc.limit == 10 || i == big) != (rs.err != nil) {
					t.Fatalf("result %d: %v, %v", i, rs.key, rs.err)
				}
				if rs.err == nil {
					s.checkKey(t, rs, i)
					continue
				}
				pe := checkErr(t, rs, s.keyOffs[i], 0, "key exceeds limit")
				if !errors.Is(pe, pgpkey.ErrTooLarge) {
					t.Errorf("error %v is not ErrTooLarge", pe)
				}
			}
		})
	}
}

func TestReaderBoundedMemory(t *testing.T) {
	// A header claiming a 63 MiB body followed by a few bytes must not make
	// the Reader allocate 63 MiB.
	data := []byte{0x98, 0x08, 4, 0, 0, 0, 1, 22, 0, 0} // a small v4 primary
	data = append(data, 0x8a, 0x03, 0xf0, 0x00, 0x00)   // sig, 63 MiB
	data = append(data, make([]byte, 100)...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res := collect(t, pgpkey.NewReader(bytes.NewReader(data)))
	runtime.ReadMemStats(&after)
	if len(res) != 1 {
		t.Fatalf("got %d results, want one error", len(res))
	}
	checkErr(t, res[0], 10, 2, "truncated packet")
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Errorf("allocated %d bytes for a %d-byte input", grew, len(data))
	}
}

func TestReaderMaxPacketBytes(t *testing.T) {
	s := fixtureStream(t)
	r := pgpkey.NewReader(bytes.NewReader(s.data))
	r.MaxPacketBytes = 16 // every key has a longer packet
	for _, rs := range collect(t, r) {
		if rs.err == nil {
			t.Fatalf("key at byte %d read despite MaxPacketBytes", rs.key.Offset)
		}
		asParseError(t, rs.err)
	}
}

func TestReaderReadErrorIsSticky(t *testing.T) {
	s := fixtureStream(t)
	boom := errors.New("disk on fire")
	r := pgpkey.NewReader(io.MultiReader(bytes.NewReader(s.data[:s.keyOffs[1]+3]), iotest.ErrReader(boom)))
	if _, err := r.Next(); err != nil { // key 0 ends at a packet boundary
		t.Fatalf("first key: %v", err)
	}
	for range 2 {
		if _, err := r.Next(); !errors.Is(err, boom) {
			t.Fatalf("Next = %v, want %v", err, boom)
		}
	}
}

func TestReaderInputChunking(t *testing.T) {
	// However the input arrives, the keys are the same: this drives both
	// the buffered fast path and the piecewise path at every boundary.
	s := fixtureStream(t)
	// One key larger than the 64 KiB read buffer.
	big := s.keys[0]
	var sigs []pgpkey.Packet
	for i := range 300 {
		body := bytes.Repeat([]byte{4, byte(i), byte(i >> 8)}, 100)
		sigs = append(sigs, pgpkey.Packet{Tag: pgpkey.TagSignature, Body: body})
	}
	big = pgpkey.Merge(big, &pgpkey.Key{Primary: big.Primary, DirectSigs: sigs})
	s = newStream(t, append([]*pgpkey.Key{s.keys[1], big}, s.keys[2:]...))
	if n := s.keyOffs[2] - s.keyOffs[1]; n < 70000 {
		t.Fatalf("big key is only %d bytes", n)
	}
	for _, tc := range []struct {
		name string
		r    func(io.Reader) io.Reader
	}{
		{"Whole", func(r io.Reader) io.Reader { return r }},
		{"OneByte", iotest.OneByteReader},
		{"Half", iotest.HalfReader},
		{"DataErr", iotest.DataErrReader},
	} {
		// Read buffers (slabs) smaller than most keys, the default, and
		// larger than the stream. Every key is checked once all are read:
		// keys handed out as slices of a slab stay as they were.
		for _, size := range []int{700, 64 << 10, 1 << 20} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, size), func(t *testing.T) {
				res := collect(t, pgpkey.NewReaderSize(tc.r(bytes.NewReader(s.data)), size))
				if len(res) != len(s.keys) {
					t.Fatalf("got %d results, want %d", len(res), len(s.keys))
				}
				for i, r := range res {
					s.checkKey(t, r, i)
				}
			})
		}
	}
}
