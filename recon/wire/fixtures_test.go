package wire_test

import (
	"bytes"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// TestFixtures decodes both directions of every SKS 1.1.6 recon capture,
// compares each message with what the capture's .txt says (type, length,
// prefix, size, counts, first elements, Config values, verdicts, and the
// bytes), and re-encodes every message byte for byte.
func TestFixtures(t *testing.T) {
	for _, name := range reconFixtures {
		t.Run(name, func(t *testing.T) {
			want := parseTxt(t, string(readShared(t, "fixtures/sks/"+name+".txt")))
			for _, d := range directions {
				t.Run(d.label, func(t *testing.T) {
					data := readShared(t, "fixtures/sks/"+name+d.suffix)
					items, err := decodeStream(data, wire.Limits{})
					if err != io.EOF {
						t.Fatalf("stream ended with %v, want io.EOF after %d items", err, len(items))
					}

					var got []txtEntry
					var reencoded []byte
					for _, it := range items {
						es := describe(it)
						// Attach the bytes so they are compared with the .txt hex.
						off := 0
						for i := range es {
							es[i].hex = hex.EncodeToString(it.raw[off : off+es[i].size])
							off += es[i].size
						}
						got = append(got, es...)
						enc := encodeItem(t, it)
						if !bytes.Equal(enc, it.raw) {
							t.Errorf("re-encoded %s:\n got %x\nwant %x", es[0].desc, enc, it.raw)
						}
						reencoded = append(reencoded, enc...)
					}
					if !bytes.Equal(reencoded, data) {
						t.Errorf("re-encoded stream differs from the capture (%d vs %d bytes)", len(reencoded), len(data))
					}

					w := want[d.label]
					if len(got) != len(w) {
						t.Fatalf("decoded %d messages, the .txt lists %d", len(got), len(w))
					}
					for i := range w {
						if got[i].desc != w[i].desc {
							t.Errorf("#%d:\n got %q\nwant %q", i, got[i].desc, w[i].desc)
						}
						if got[i].size != w[i].size {
							t.Errorf("#%d: %d bytes, want %d", i, got[i].size, w[i].size)
						}
						if w[i].whole && got[i].hex != w[i].hex || !strings.HasPrefix(got[i].hex, w[i].hex) {
							t.Errorf("#%d: bytes differ from the .txt", i)
						}
					}
				})
			}
		})
	}
}

// TestFixtureVerdicts checks that Config.Check decides what SKS decided:
// each side's verdict in the capture is what Check gives when the side's
// own Config (parsed from what it sent) checks the other side's Config.
func TestFixtureVerdicts(t *testing.T) {
	for _, name := range reconFixtures {
		t.Run(name, func(t *testing.T) {
			side := map[string][]item{}
			for _, d := range directions {
				items, err := decodeStream(readShared(t, "fixtures/sks/"+name+d.suffix), wire.Limits{})
				if err != io.EOF {
					t.Fatalf("%s: %v", d.label, err)
				}
				side[d.label] = items
			}
			if len(side["I->A"]) < 2 || len(side["A->I"]) < 2 {
				t.Log("no Config exchange in this capture: SKS closed without answering")
				return
			}
			for _, d := range [][2]string{{"I->A", "A->I"}, {"A->I", "I->A"}} {
				own, other := side[d[0]], side[d[1]]
				local, err := wire.ParseConfig(own[0].msg.(*wire.ConfigMsg))
				if err != nil {
					t.Fatalf("%s: ParseConfig: %v", d[0], err)
				}
				got := local.Check(other[0].msg.(*wire.ConfigMsg))
				if want := own[1].verdict; got != want {
					t.Errorf("%s checking %s's Config: got %+v, SKS sent %+v", d[0], d[1], got, want)
				}
				// And DefaultConfig with the side's port produces its Config bytes.
				def := wire.DefaultConfig()
				def.HTTPPort = local.HTTPPort
				def.MBar = local.MBar
				msg, err := def.Message()
				if err != nil {
					t.Fatal(err)
				}
				if enc, _ := wire.AppendMessage(nil, msg); !bytes.Equal(enc, own[0].raw) {
					t.Errorf("%s: Config.Message:\n got %x\nwant %x", d[0], enc, own[0].raw)
				}
			}
		})
	}
}

// TestFixtureHTTPPorts pins the ports the .txt files name, read through
// ParseConfig (the value SKS's change_port uses for the hashquery fetch).
func TestFixtureHTTPPorts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		initiator int
		acceptor  int
		mbar      int // the initiator's
	}{
		{"recon-config-rejected-mbar", 36371, 37371, 6},
		{"recon-empty-acceptor-905", 23371, 24371, 5},
		{"recon-full-3v3", 21371, 22371, 5},
		{"recon-poly-908v908", 25371, 26371, 5},
		{"recon-rejected-while-busy", 21371, 0, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, d := range directions {
				want := tc.initiator
				if d.label == "A->I" {
					want = tc.acceptor
				}
				items, _ := decodeStream(readShared(t, "fixtures/sks/"+tc.name+d.suffix), wire.Limits{})
				if want == 0 {
					if len(items) != 0 {
						t.Errorf("%s: decoded %d items from an empty capture", d.label, len(items))
					}
					continue
				}
				c, err := wire.ParseConfig(items[0].msg.(*wire.ConfigMsg))
				if err != nil {
					t.Fatal(err)
				}
				if c.HTTPPort != want {
					t.Errorf("%s: http port %d, want %d", d.label, c.HTTPPort, want)
				}
				if d.label == "I->A" && c.MBar != tc.mbar {
					t.Errorf("%s: mbar %d, want %d", d.label, c.MBar, tc.mbar)
				}
				if c.Version != "1.1.6" || c.BitQuantum != 2 || c.Filters != wire.DefaultFilters || c.Extra != nil {
					t.Errorf("%s: unexpected config %+v", d.label, c)
				}
			}
		})
	}
}
