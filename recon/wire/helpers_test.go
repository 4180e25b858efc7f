package wire_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/recon/wire"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// reconFixtures names the SKS 1.1.6 recon captures in shared/fixtures/sks
// (see its README.md). Each has .initiator.bin, .acceptor.bin and a .txt
// written by shared/tools/sks-recon-decode.
var reconFixtures = []string{
	"recon-config-rejected-mbar",
	"recon-empty-acceptor-905",
	"recon-full-3v3",
	"recon-poly-908v908",
	"recon-rejected-while-busy",
}

// directions maps the .txt labels to the capture file suffixes.
var directions = []struct{ label, suffix string }{
	{"I->A", ".initiator.bin"},
	{"A->I", ".acceptor.bin"},
}

func readShared(tb testing.TB, rel string) []byte {
	tb.Helper()
	b, err := os.ReadFile(testenv.SharedFile(tb, rel))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// sharedFile returns a file under the shared directory, or nil when it is
// absent. Fuzz seeds use it: the fixture tests already report a missing
// shared directory, and fuzzing still has the inline seeds.
func sharedFile(tb testing.TB, rel string) []byte {
	dir := os.Getenv("GRAPEVINE_SHARED")
	if dir == "" {
		dir = filepath.Join(filepath.Dir(testenv.RepoRoot(tb)), "shared")
	}
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		return nil
	}
	return b
}

// sharedSeeds returns both directions of every recon capture that is
// present (see sharedFile).
func sharedSeeds(tb testing.TB) [][]byte {
	var out [][]byte
	for _, name := range reconFixtures {
		for _, d := range directions {
			if b := sharedFile(tb, "fixtures/sks/"+name+d.suffix); b != nil {
				out = append(out, b)
			}
		}
	}
	return out
}

// item is one unit of a captured stream: a Config frame, a verdict, or a
// later frame, with the bytes it occupied.
type item struct {
	msg     wire.Message // nil for a verdict
	verdict wire.Verdict
	raw     []byte
}

// decodeStream decodes one direction of a recon session the way a session
// reads it: a Config frame, the bare verdict (plus reason), then frames.
// It returns the items decoded and the error that ended the stream;
// io.EOF means a clean end.
func decodeStream(data []byte, lim wire.Limits) ([]item, error) {
	src := bytes.NewReader(data)
	br := bufio.NewReader(src)
	pos := func() int { return len(data) - src.Len() - br.Buffered() }
	rd := wire.NewReader(br, lim)
	var items []item
	start := 0
	m, err := rd.ReadMessage()
	if err != nil {
		return nil, err
	}
	items = append(items, item{msg: m, raw: data[start:pos()]})
	start = pos()
	v, err := rd.ReadVerdict()
	if err != nil {
		return items, err
	}
	items = append(items, item{verdict: v, raw: data[start:pos()]})
	for {
		start = pos()
		m, err := rd.ReadMessage()
		if err != nil {
			return items, err
		}
		items = append(items, item{msg: m, raw: data[start:pos()]})
	}
}

// encodeItem re-encodes an item with the package's encoders.
func encodeItem(tb testing.TB, it item) []byte {
	tb.Helper()
	if it.msg != nil {
		b, err := wire.AppendMessage(nil, it.msg)
		if err != nil {
			tb.Fatalf("AppendMessage(%T): %v", it.msg, err)
		}
		return b
	}
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	if err := wire.WriteVerdict(bw, it.verdict); err != nil {
		tb.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// txtEntry is one message as the .txt describes it.
type txtEntry struct {
	desc  string
	size  int    // bytes on the wire
	hex   string // all of them, or the first shown
	whole bool   // hex holds every byte
}

// parseTxt reads the per-direction message lists of a fixture .txt.
func parseTxt(tb testing.TB, txt string) map[string][]txtEntry {
	tb.Helper()
	out := map[string][]txtEntry{}
	lines := strings.Split(txt, "\n")
	for i := 0; i < len(lines); i++ {
		for _, d := range directions {
			head, ok := strings.CutPrefix(lines[i], d.label+" #")
			if !ok {
				continue
			}
			_, desc, ok := strings.Cut(head, ": ")
			if !ok || i+1 >= len(lines) {
				tb.Fatalf("txt line %d: cannot parse %q", i+1, lines[i])
			}
			e := txtEntry{desc: desc}
			hexLine := strings.TrimSpace(lines[i+1])
			var shown int
			if n, _ := fmt.Sscanf(hexLine, "%d bytes, first %d shown: %s", &e.size, &shown, &e.hex); n == 3 {
				e.whole = false
			} else if n, _ := fmt.Sscanf(hexLine, "%d bytes: %s", &e.size, &e.hex); n == 2 {
				e.whole = true
			} else {
				tb.Fatalf("txt line %d: cannot parse %q", i+2, hexLine)
			}
			out[d.label] = append(out[d.label], e)
			i++
		}
	}
	return out
}

// describe renders an item the way shared/tools/sks-recon-decode prints it,
// one entry per bare string, so a decode can be compared with the .txt.
func describe(it item) []txtEntry {
	if it.msg == nil {
		if it.verdict.Passed {
			return []txtEntry{{desc: "config verdict 'passed' (bare string, no type byte)", size: len(it.raw)}}
		}
		return []txtEntry{
			{desc: "config verdict 'failed' (bare string, no type byte)", size: 10},
			{desc: "failure reason " + pyBytes(it.verdict.Reason), size: len(it.raw) - 10},
		}
	}
	t := it.msg.Type()
	head := fmt.Sprintf("%s (type %d, length %d) ", t, t, binary.BigEndian.Uint32(it.raw))
	var body string
	switch m := it.msg.(type) {
	case *wire.ReconRqstPoly:
		body = fmt.Sprintf("prefix=%s size=%d samples=%d", pyPrefix(m.Prefix), m.Size, len(m.Samples))
	case *wire.ReconRqstFull:
		body = fmt.Sprintf("prefix=%s %s", pyPrefix(m.Prefix), pyElems(m.Set))
	case *wire.Elements:
		body = pyElems(m.Set)
	case *wire.FullElements:
		body = pyElems(m.Set)
	case *wire.ErrorMsg:
		body = pyBytes(m.Text)
	case *wire.DbRqst:
		body = pyBytes(m.Data)
	case *wire.DbRepl:
		body = pyBytes(m.Data)
	case *wire.ConfigMsg:
		var parts []string
		for _, p := range m.Pairs {
			switch {
			case (p.Key == wire.KeyBitQuantum || p.Key == wire.KeyMBar || p.Key == wire.KeyHTTPPort) && len(p.Value) == 4:
				parts = append(parts, fmt.Sprintf("'%s': %d (4-byte BE %x)", p.Key, binary.BigEndian.Uint32([]byte(p.Value)), p.Value))
			default:
				parts = append(parts, fmt.Sprintf("'%s': '%s'", p.Key, p.Value))
			}
		}
		body = "{" + strings.Join(parts, ", ") + "}"
	}
	return []txtEntry{{desc: head + body, size: len(it.raw)}}
}

func pyPrefix(p wire.Prefix) string { return fmt.Sprintf("'%s' (%d bits)", p, p.Len()) }

func pyBytes(s string) string { return "b'" + s + "'" }

func pyElems(s []wire.Element) string {
	out := fmt.Sprintf("%d elements", len(s))
	for i, e := range s {
		if i == 3 {
			return out + " ..."
		}
		if i == 0 {
			out += ":"
		}
		out += " " + hex.EncodeToString(e[:])
	}
	return out
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func readOne(tb testing.TB, b []byte, lim wire.Limits) (wire.Message, error) {
	tb.Helper()
	return wire.ReadMessage(bufio.NewReader(bytes.NewReader(b)), lim)
}

// isDecodeFailure reports whether err is one of the documented outcomes of
// decoding bytes held in memory.
func isDecodeFailure(err error) bool {
	var de *wire.DecodeError
	return err == io.EOF || (errors.As(err, &de) && (errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrUnknownType)))
}
