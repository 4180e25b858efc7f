package recon_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// capture is one side of a recorded SKS 1.1.6 session
// (shared/fixtures/sks/recon-*.{initiator,acceptor}.bin): its Config, its
// verdict and then its frames.
type capture struct {
	raw     []byte
	config  *wire.ConfigMsg
	verdict *wire.Verdict
	frames  []wire.Message
}

func readCapture(tb testing.TB, name string) *capture {
	tb.Helper()
	raw := readShared(tb, "fixtures/sks/"+name)
	c := &capture{raw: raw}
	r := wire.NewReader(bytes.NewReader(raw), wire.Limits{})
	m, err := r.ReadMessage()
	if err == io.EOF {
		return c
	}
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	c.config = m.(*wire.ConfigMsg)
	v, err := r.ReadVerdict()
	if err == io.EOF {
		return c
	}
	if err != nil {
		tb.Fatalf("%s: verdict: %v", name, err)
	}
	c.verdict = &v
	for {
		m, err := r.ReadMessage()
		if err == io.EOF {
			return c
		}
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		c.frames = append(c.frames, m)
	}
}

// configFor returns an SKS-mode Config that sends what c's Config says.
func (c *capture) configFor(tb testing.TB) recon.Config {
	tb.Helper()
	wc, err := wire.ParseConfig(c.config)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := sksConfig(tb)
	cfg.HTTPPort, cfg.MBar, cfg.BitQuantum, cfg.Filters, cfg.Version = wc.HTTPPort, wc.MBar, wc.BitQuantum, wc.Filters, wc.Version
	return cfg
}

func encode(tb testing.TB, msgs ...wire.Message) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = wire.AppendMessage(b, m); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}

func encodeVerdict(tb testing.TB, v wire.Verdict) []byte {
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	if err := wire.WriteVerdict(w, v); err != nil {
		tb.Fatal(err)
	}
	w.Flush()
	return buf.Bytes()
}

// replayResponder plays a recorded SKS responder (initiator) on conn: it
// sends the recorded Config, reads ours, sends the recorded verdict, then
// answers each request with the next recorded reply, buffered until Flush,
// as SKS server.ml does. It returns every byte our side sent.
func replayResponder(tb testing.TB, conn net.Conn, c *capture) []byte {
	var got bytes.Buffer
	r := wire.NewReader(io.TeeReader(conn, &got), wire.Limits{})
	out := make(chan []byte, 8)
	writerDone := make(chan struct{})
	go func() { // one writer, so that writes keep their order
		defer close(writerDone)
		for b := range out {
			if _, err := conn.Write(b); err != nil {
				return
			}
		}
	}()
	defer func() {
		close(out)
		conn.Close()
		<-writerDone
	}()
	out <- encode(tb, c.config)
	if _, err := r.ReadMessage(); err != nil {
		return got.Bytes()
	}
	if c.verdict == nil {
		io.Copy(io.Discard, io.TeeReader(conn, &got))
		return got.Bytes()
	}
	out <- encodeVerdict(tb, *c.verdict)
	if _, err := r.ReadVerdict(); err != nil {
		return got.Bytes()
	}
	replies := slices.Clone(c.frames)
	var pending []wire.Message
	for {
		m, err := r.ReadMessage()
		if err != nil {
			break
		}
		switch m.(type) {
		case *wire.ReconRqstPoly, *wire.ReconRqstFull:
			if len(replies) == 0 {
				tb.Errorf("request %T beyond the recorded replies", m)
				return got.Bytes()
			}
			pending = append(pending, replies[0])
			replies = replies[1:]
		case *wire.Flush:
			out <- encode(tb, pending...)
			pending = nil
		case *wire.Done:
			io.Copy(io.Discard, io.TeeReader(conn, &got))
			return got.Bytes()
		}
	}
	return got.Bytes()
}

// replayRequester plays a recorded SKS requester (acceptor): it writes all
// its recorded bytes, Config first, and reads everything our side sends
// until we close.
func replayRequester(conn net.Conn, c *capture) []byte {
	go conn.Write(c.raw)
	got, _ := io.ReadAll(conn)
	conn.Close()
	return got
}

// replayCases gives, per capture, the sets both SKS servers held.
func replayTrees(tb testing.TB) map[string][2][]pgpkey.KeyHash {
	deb := hashesFromTSV(tb, "fixtures/sks/debian-keyring-2022.12.24.sks-hashes.tsv", "sks_hash", "")
	a := hashesFromTSV(tb, "fixtures/sks/test-keys/test-keys.tsv", "sks_hash", "keys-a.pgp")
	b := hashesFromTSV(tb, "fixtures/sks/test-keys/test-keys.tsv", "sks_hash", "keys-b.pgp")
	if len(deb) != 905 || len(a) != 3 || len(b) != 3 {
		tb.Fatalf("fixture hashes: %d debian, %d keys-a, %d keys-b", len(deb), len(a), len(b))
	}
	// [initiator's set, acceptor's set], as each .txt describes.
	return map[string][2][]pgpkey.KeyHash{
		"recon-full-3v3":             {a, b},
		"recon-poly-908v908":         {slices.Concat(deb, a), slices.Concat(deb, b)},
		"recon-empty-acceptor-905":   {deb, nil},
		"recon-config-rejected-mbar": {a, b},
		"recon-rejected-while-busy":  {a, b},
	}
}

// TestReplaySKSCaptures plays each recorded SKS side against our session
// holding the other side's set, and requires our side to send exactly the
// bytes the other SKS sent: Config, verdict, requests or answers, Flush
// placement and Done.
func TestReplaySKSCaptures(t *testing.T) {
	trees := replayTrees(t)
	for _, name := range []string{"recon-full-3v3", "recon-poly-908v908", "recon-empty-acceptor-905", "recon-config-rejected-mbar", "recon-rejected-while-busy"} {
		sets := trees[name]
		ini, acc := readCapture(t, name+".initiator.bin"), readCapture(t, name+".acceptor.bin")
		iniTree, accTree := buildTree(t, sets[0]), buildTree(t, sets[1])
		// We play the initiator: SKS's acceptor bytes are replayed to us.
		t.Run(name+"/we-initiate", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ours, theirs := net.Pipe()
				v, _ := iniTree.Snapshot()
				s := &recon.Session{Role: recon.Initiator, Config: ini.configFor(t), View: v}
				done := make(chan struct{})
				var res *recon.Result
				var err error
				go func() {
					defer close(done)
					res, err = s.Run(t.Context(), ours)
				}()
				got := replayRequester(theirs, acc)
				<-done
				if !bytes.Equal(got, ini.raw) {
					t.Errorf("we sent\n%x\nSKS sent\n%x", got, ini.raw)
				}
				checkReplayResult(t, name, res, err, sets[1], sets[0])
			})
		})
		if name == "recon-rejected-while-busy" {
			continue // the busy SKS acceptor sent nothing; there is no acceptor behaviour to compare
		}
		t.Run(name+"/we-accept", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ours, theirs := net.Pipe()
				v, _ := accTree.Snapshot()
				s := &recon.Session{Role: recon.Acceptor, Config: acc.configFor(t), View: v}
				done := make(chan struct{})
				var res *recon.Result
				var err error
				go func() {
					defer close(done)
					res, err = s.Run(t.Context(), ours)
				}()
				got := replayResponder(t, theirs, ini)
				<-done
				if !bytes.Equal(got, acc.raw) {
					t.Errorf("we sent\n%x\nSKS sent\n%x", got, acc.raw)
				}
				checkReplayResult(t, name, res, err, sets[0], sets[1])
			})
		})
	}
}

func checkReplayResult(t *testing.T, name string, res *recon.Result, err error, peerSet, ourSet []pgpkey.KeyHash) {
	t.Helper()
	switch name {
	case "recon-config-rejected-mbar":
		var ce *recon.ConfigError
		if !errors.As(err, &ce) || ce.Reason != "mbar values do not match" {
			t.Errorf("err %v, want a config rejection for mbar", err)
		}
	case "recon-rejected-while-busy":
		if !errors.Is(err, recon.ErrIncomplete) {
			t.Errorf("err %v, want ErrIncomplete", err)
		}
	default:
		if err != nil {
			t.Fatalf("session: %v", err)
		}
		if got, want := res.Missing, minus(peerSet, ourSet); !equalHashes(got, want) {
			t.Errorf("missing %s, want %s", describeHashes(got), describeHashes(want))
		}
	}
}
