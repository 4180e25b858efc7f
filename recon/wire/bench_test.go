package wire_test

import (
	"bufio"
	"bytes"
	"math/rand"
	"testing"

	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

func randomSet(rng *rand.Rand, n int) []wire.Element {
	s := make([]wire.Element, n)
	for i := range s {
		var h [16]byte
		rng.Read(h[:])
		s[i] = wire.ElementFromKeyHash(h)
	}
	return s
}

// BenchmarkDecodeReconMessage decodes single frames of the shapes a session
// sees: the root Poly request, a leaf's Full request, Elements replies from
// a few elements up to a new peer's catch-up set, and Config.
func BenchmarkDecodeReconMessage(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	cfg, _ := wire.DefaultConfig().Message()
	p, _ := wire.ParsePrefix("0110")
	for _, bc := range []struct {
		name string
		msg  wire.Message
	}{
		{"ReconRqstPoly", &wire.ReconRqstPoly{Size: 908, Samples: randomSet(rng, 6)}},
		{"ReconRqstFull/149", &wire.ReconRqstFull{Prefix: p, Set: randomSet(rng, 149)}},
		{"Elements/3", &wire.Elements{Set: randomSet(rng, 3)}},
		{"Elements/905", &wire.Elements{Set: randomSet(rng, 905)}},
		{"Elements/100000", &wire.Elements{Set: randomSet(rng, 100000)}},
		{"Config", cfg},
	} {
		frame, err := wire.AppendMessage(nil, bc.msg)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			benchDecode(b, frame)
		})
	}
}

func benchDecode(b *testing.B, frame []byte) {
	src := bytes.NewReader(frame)
	br := bufio.NewReaderSize(src, 64<<10)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		src.Reset(frame)
		br.Reset(src)
		if _, err := wire.ReadMessage(br, wire.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteMessage encodes an Elements reply into a buffered writer.
func BenchmarkWriteMessage(b *testing.B) {
	m := &wire.Elements{Set: randomSet(rand.New(rand.NewSource(2)), 905)}
	var buf bytes.Buffer
	bw := bufio.NewWriterSize(&buf, 64<<10)
	frame, _ := wire.AppendMessage(nil, m)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		buf.Reset()
		bw.Reset(&buf)
		if err := wire.WriteMessage(bw, m); err != nil {
			b.Fatal(err)
		}
		bw.Flush()
	}
}
