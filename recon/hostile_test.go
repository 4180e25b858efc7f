package recon_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/grapevine-keyserver/grapevine/recon"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// peerOpening is a well-behaved opening by a peer: SKS's Config (in SKS's
// key order) and "passed".
func peerOpening(tb testing.TB) []byte {
	msg, err := wire.DefaultConfig().Message()
	if err != nil {
		tb.Fatal(err)
	}
	return append(encode(tb, msg), encodeVerdict(tb, wire.Verdict{Passed: true})...)
}

// runAgainst runs our session in role against a scripted peer, which
// writes script (then stops writing but stays connected unless closeAfter)
// and reads everything we send. It returns our result and error.
func runAgainst(t *testing.T, cfg recon.Config, tree recon.Tree, role recon.Role, script []byte, closeAfter bool) (*recon.Result, error, []byte) {
	ours, theirs := net.Pipe()
	v, _ := tree.Snapshot()
	s := &recon.Session{Role: role, Config: cfg, View: v}
	var wg sync.WaitGroup
	var got []byte
	wg.Add(2)
	go func() {
		defer wg.Done()
		got, _ = io.ReadAll(theirs)
	}()
	go func() {
		defer wg.Done()
		theirs.Write(script)
		if closeAfter {
			theirs.Close()
		}
	}()
	res, err := s.Run(t.Context(), ours)
	theirs.Close()
	wg.Wait()
	return res, err, got
}

func elementFrame(tb testing.TB, typ wire.MsgType, els ...wire.Element) []byte {
	switch typ {
	case wire.MsgElements:
		return encode(tb, &wire.Elements{Set: els})
	case wire.MsgFullElements:
		return encode(tb, &wire.FullElements{Set: els})
	}
	tb.Fatalf("elementFrame %s", typ)
	return nil
}

// TestHostilePeers: every misbehaviour ends the session with a bounded
// wait and a clear error; protocol violations yield nothing to fetch.
func TestHostilePeers(t *testing.T) {
	tree := buildTree(t, randomHashes(rand.New(rand.NewPCG(20, 20)), 400))
	var pMinus1 wire.Element // p itself: not a field element
	copy(pMinus1[:], []byte{0x1b, 0x43, 0xa5, 0x30, 0xd9, 0x85, 0x1f, 0xc9, 0xdf, 0x1f, 0x8b, 0x87, 0xe4, 0x10, 0x1d, 0x8f, 0x01})
	var big wire.Element // 2^128: a field element but no key hash
	big[16] = 1
	var ok wire.Element
	ok[0] = 0x42

	huge := binary.BigEndian.AppendUint32(nil, 0xffffffff)
	cases := []struct {
		name   string
		role   recon.Role
		script func(tb testing.TB) []byte
		close  bool
		want   error // errors.Is target; nil means "a *ConfigError"
		text   string
	}{
		{"absurd-frame-length", recon.Initiator, func(tb testing.TB) []byte { return append(peerOpening(tb), append(huge, 2)...) }, false, recon.ErrProtocol, "limit"},
		{"absurd-config-length", recon.Initiator, func(tb testing.TB) []byte { return append(huge, 10) }, false, recon.ErrProtocol, "limit"},
		{"absurd-set-count", recon.Acceptor, func(tb testing.TB) []byte {
			b := binary.BigEndian.AppendUint32(nil, 5)
			b = append(b, byte(wire.MsgElements))
			b = binary.BigEndian.AppendUint32(b, 0x7fffffff)
			return append(peerOpening(tb), b...)
		}, false, recon.ErrProtocol, "count"},
		{"absurd-verdict-length", recon.Initiator, func(tb testing.TB) []byte {
			return append(peerOpening(tb)[:130], huge...)
		}, false, recon.ErrProtocol, "limit"},
		{"silent-peer", recon.Initiator, func(tb testing.TB) []byte { return nil }, false, recon.ErrIncomplete, "timeout"},
		{"stalls-after-opening", recon.Initiator, func(tb testing.TB) []byte { return peerOpening(tb) }, false, recon.ErrIncomplete, "timeout"},
		{"stalls-mid-frame", recon.Acceptor, func(tb testing.TB) []byte {
			return append(peerOpening(tb), 0, 0, 0, 40, byte(wire.MsgElements), 0, 0)
		}, false, recon.ErrIncomplete, "timeout"},
		{"eof-mid-frame", recon.Acceptor, func(tb testing.TB) []byte {
			return append(peerOpening(tb), 0, 0, 0, 40, byte(wire.MsgElements), 0, 0)
		}, true, recon.ErrIncomplete, ""}, // EOF, or our verdict's write to the closed pipe
		{"bogus-element-in-reply", recon.Acceptor, func(tb testing.TB) []byte {
			return append(peerOpening(tb), elementFrame(tb, wire.MsgElements, ok, pMinus1)...)
		}, false, recon.ErrProtocol, "not below p"},
		{"bogus-sample", recon.Initiator, func(tb testing.TB) []byte {
			s := []wire.Element{ok, ok, ok, ok, ok, pMinus1}
			return append(peerOpening(tb), encode(tb, &wire.ReconRqstPoly{Samples: s, Size: 3})...)
		}, false, recon.ErrProtocol, "not below p"},
		{"wrong-sample-count", recon.Initiator, func(tb testing.TB) []byte {
			return append(peerOpening(tb), encode(tb, &wire.ReconRqstPoly{Samples: []wire.Element{ok}, Size: 3})...)
		}, false, recon.ErrProtocol, "samples"},
		{"prefix-not-multiple-of-bitquantum", recon.Initiator, func(tb testing.TB) []byte {
			p, _ := wire.ParsePrefix("1")
			return append(peerOpening(tb), encode(tb, &wire.ReconRqstFull{Prefix: p})...)
		}, false, recon.ErrProtocol, "prefix"},
		{"unknown-type", recon.Initiator, func(tb testing.TB) []byte { return append(peerOpening(tb), 0, 0, 0, 1, 99) }, false, recon.ErrProtocol, "message code"},
		{"dbrqst", recon.Initiator, func(tb testing.TB) []byte {
			return append(peerOpening(tb), encode(tb, &wire.DbRqst{Data: "x"})...)
		}, false, recon.ErrProtocol, "DbRqst"},
		{"config-again", recon.Acceptor, func(tb testing.TB) []byte {
			return append(peerOpening(tb), peerOpening(tb)[:130]...)
		}, false, recon.ErrProtocol, "Config"},
		{"error-message", recon.Acceptor, func(tb testing.TB) []byte {
			return append(peerOpening(tb), encode(tb, &wire.ErrorMsg{Text: "go away"})...)
		}, false, recon.ErrProtocol, "go away"},
		{"no-config-first", recon.Initiator, func(tb testing.TB) []byte { return encode(tb, &wire.Done{}) }, false, recon.ErrProtocol, "expected Config"},
		{"bad-verdict", recon.Initiator, func(tb testing.TB) []byte {
			b := peerOpening(tb)[:130]
			return append(b, encodeVerdict(tb, wire.Verdict{Passed: true})[:4]...)
		}, true, recon.ErrIncomplete, ""}, // EOF, or our verdict's write to the closed pipe
		{"verdict-garbage", recon.Initiator, func(tb testing.TB) []byte {
			b := peerOpening(tb)[:130]
			return append(b, 0, 0, 0, 3, 'y', 'e', 's')
		}, false, recon.ErrProtocol, "confirmation"},
		{"rejected-by-peer", recon.Initiator, func(tb testing.TB) []byte {
			b := peerOpening(tb)[:130]
			return append(b, encodeVerdict(tb, wire.Verdict{Reason: "no thanks"})...)
		}, false, nil, "no thanks"},
		{"syncfail-for-leaf", recon.Acceptor, func(tb testing.TB) []byte {
			return append(peerOpening(tb), encode(tb, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{}, &wire.SyncFail{})...)
		}, false, recon.ErrProtocol, "leaf"},
	}
	for _, tc := range cases {
		for _, mode := range []string{"sks", "bounded"} {
			if tc.name == "syncfail-for-leaf" && mode == "bounded" {
				continue // bounded mode recurses below its leaves instead
			}
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					cfg := testConfig(t)
					if mode == "sks" {
						cfg = sksConfig(t)
					}
					start := time.Now()
					res, err, _ := runAgainst(t, cfg, tree, tc.role, tc.script(t), tc.close)
					if tc.want == nil {
						var ce *recon.ConfigError
						if !errors.As(err, &ce) {
							t.Fatalf("err %v, want a *ConfigError", err)
						}
					} else if !errors.Is(err, tc.want) {
						t.Fatalf("err %v, want %v", err, tc.want)
					}
					if !strings.Contains(err.Error(), tc.text) {
						t.Errorf("err %q does not mention %q", err, tc.text)
					}
					if errors.Is(err, recon.ErrProtocol) && len(res.Missing) != 0 {
						t.Errorf("protocol violation left %d hashes to fetch", len(res.Missing))
					}
					if took := time.Since(start); took > cfg.ConfigTimeout+cfg.ReadTimeout+2*time.Second {
						t.Errorf("session took %v", took)
					}
				})
			})
		}
	}
}

// TestHostileNotKeyHashes: elements of 2^128 and more are field elements
// but no key hashes; they are counted and not fetched, and the session
// carries on.
func TestHostileNotKeyHashes(t *testing.T) {
	tree := buildTree(t, nil)
	synctest.Test(t, func(t *testing.T) {
		var big, good wire.Element
		big[16] = 1
		good[0] = 7
		// We are the acceptor with an empty tree: one request (root), whose
		// reply is this Elements; then Done.
		script := append(peerOpening(t), elementFrame(t, wire.MsgElements, big, good)...)
		res, err, _ := runAgainst(t, sksConfig(t), tree, recon.Acceptor, script, false)
		if err != nil {
			t.Fatal(err)
		}
		if res.NotKeyHashes != 1 || len(res.Missing) != 1 || res.Missing[0][0] != 7 {
			t.Errorf("not key hashes %d, missing %v", res.NotKeyHashes, res.Missing)
		}
	})
}

// TestHostileNodeNotFound: a request below one of our leaves gets SKS's
// Error text; the session ends early and keeps what it collected (§8.3,
// §8.4).
func TestHostileNodeNotFound(t *testing.T) {
	tree := buildTree(t, randomHashes(rand.New(rand.NewPCG(21, 21)), 10)) // root is a leaf
	synctest.Test(t, func(t *testing.T) {
		var e wire.Element
		e[0] = 0x99
		p, _ := wire.ParsePrefix("0110")
		script := append(peerOpening(t), encode(t, &wire.Elements{Set: []wire.Element{e}}, &wire.ReconRqstFull{Prefix: p})...)
		res, err, got := runAgainst(t, sksConfig(t), tree, recon.Initiator, script, false)
		if !errors.Is(err, recon.ErrIncomplete) {
			t.Fatalf("err %v, want ErrIncomplete", err)
		}
		if len(res.Missing) != 1 {
			t.Errorf("missing %d, want the 1 collected before", len(res.Missing))
		}
		want := "server should never received request for non-existant node (ReconRqst_Full)"
		if !bytes.Contains(got, []byte(want)) {
			t.Errorf("no Error %q sent", want)
		}
	})
}

// TestHostileFloodWithoutReading: a requester that sends requests and
// Flushes but never reads our replies cannot make us buffer without
// bound: our write times out and the session ends.
func TestHostileFloodWithoutReading(t *testing.T) {
	tree := buildTree(t, randomHashes(rand.New(rand.NewPCG(22, 22)), 3000))
	synctest.Test(t, func(t *testing.T) {
		cfg := sksConfig(t)
		ours, theirs := net.Pipe()
		v, _ := tree.Snapshot()
		s := &recon.Session{Role: recon.Initiator, Config: cfg, View: v}
		done := make(chan error, 1)
		go func() {
			_, err := s.Run(t.Context(), ours)
			done <- err
		}()
		// Read only our Config and verdict, then flood.
		go func() {
			theirs.Write(peerOpening(t))
			req := encode(t, &wire.ReconRqstFull{}, &wire.Flush{}) // root, empty: we answer with all 3000
			for {
				if _, err := theirs.Write(req); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 140)
		io.ReadFull(theirs, buf)
		err := <-done
		if !errors.Is(err, recon.ErrIncomplete) || !strings.Contains(err.Error(), "write") {
			t.Errorf("err %v, want a write timeout", err)
		}
		theirs.Close()
	})
}

// FuzzSession feeds arbitrary bytes to a session in either role, as the
// peer's whole side of the conversation. The session must end (within its
// timeouts) without panicking, and never report hashes to fetch after a
// protocol violation. Seeds are the SKS captures and the hostile scripts.
func FuzzSession(f *testing.F) {
	for _, name := range []string{"recon-full-3v3", "recon-poly-908v908", "recon-empty-acceptor-905", "recon-config-rejected-mbar"} {
		for _, side := range []string{".initiator.bin", ".acceptor.bin"} {
			if b := sharedFileOrNil(f, "fixtures/sks/"+name+side); b != nil {
				f.Add(side == ".acceptor.bin", b)
			}
		}
	}
	op := peerOpening(f)
	f.Add(true, append(op, 0, 0, 0, 5, 2, 0, 0, 0, 0))
	f.Add(false, append(op, encode(f, &wire.ReconRqstFull{}, &wire.Flush{}, &wire.Done{})...))
	f.Add(false, append(op, encode(f, &wire.ReconRqstPoly{Size: 1000, Samples: make([]wire.Element, 6)}, &wire.Flush{})...))
	f.Add(true, append(op, encode(f, &wire.SyncFail{}, &wire.FullElements{}, &wire.Elements{})...))
	tree := buildTree(f, randomHashes(rand.New(rand.NewPCG(23, 23)), 700))
	f.Fuzz(func(t *testing.T, weInitiate bool, data []byte) {
		synctest.Test(t, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Logger = cfg.Logger.Level(5) // quiet
			cfg.Limits = wire.Limits{MaxFrameBytes: 1 << 20, MaxSetFrameBytes: 1 << 20, MaxStringBytes: 4096}
			role := recon.Acceptor
			if weInitiate {
				role = recon.Initiator
			}
			res, err, _ := runAgainst(t, cfg, tree, role, data, true)
			if res == nil {
				t.Fatal("nil result")
			}
			if errors.Is(err, recon.ErrProtocol) && len(res.Missing) != 0 {
				t.Fatalf("protocol violation (%v) left %d hashes to fetch", err, len(res.Missing))
			}
		})
	})
}
