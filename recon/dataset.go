package recon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// Dataset is one set of keys a Server reconciles, with the filters string
// that describes it (spec recon.md §4.3). A grapevine node can serve two:
// the SKS dataset ("yminsky.dedup,yminsky.merge") and the Hockeypuck 2.3
// dataset (pgpkey.HockeypuckFilters). Each session uses one, chosen for the
// peer (see Server), so one node reconciles with SKS and Hockeypuck peers
// at once without the permanent differences of recon.md §4.3.
type Dataset struct {
	// Name names the dataset in logs and reports ("sks", "hockeypuck").
	Name string
	// Filters is the filters string the dataset claims, sent in our
	// Config unless the member's membership entry sets its own.
	Filters string
	// HockeypuckRules checks the peer's Config as Hockeypuck >= 2.2 does
	// (conflux recon/peer.go handleConfig: exact version, bitquantum,
	// mbar, then the filters string byte for byte, with its messages)
	// instead of SKS 1.1.6's rules (wire.Config.Check).
	HockeypuckRules bool
	// Tree is the dataset's prefix tree.
	Tree Tree
	// Keys looks fetched keys up in this dataset; nil: sessions run but
	// nothing is fetched. If it implements KeyHasher, a fetched key is
	// known by that hash instead of its SKS hash.
	Keys Keys
}

// KeyHasher is implemented by the Keys of a dataset whose hashes are not
// SKS hashes: KeyHash returns the hash under which a fetched key string is
// known in the dataset, and whether appending it changes anything (it
// replaces Keys.Novel). k is the key as SKS parses it, nil when SKS
// refuses it (a Hockeypuck key left without user IDs by a hard
// revocation, say): such a key is still worth appending for this dataset.
type KeyHasher interface {
	KeyHash(raw []byte, k *pgpkey.Key) (h pgpkey.KeyHash, novel bool, err error)
}

// HockeypuckKeys returns the Keys of the Hockeypuck dataset of s. A key
// fetched from a Hockeypuck peer is worth appending when it changes either
// dataset: the Hockeypuck merge depends on the order keys arrive in, so the
// SKS dataset may hold a key in full that the Hockeypuck dataset lacks.
func HockeypuckKeys(s *projections.Store) Keys { return hockeypuckKeys{s} }

type hockeypuckKeys struct{ s *projections.Store }

func (k hockeypuckKeys) ByHash(h pgpkey.KeyHash) (*projections.Record, error) {
	r, err := k.s.HockeypuckByHash(h)
	if err != nil {
		return nil, err
	}
	return &projections.Record{RID: r.Fingerprint, Hash: r.Hash, Key: r.Key}, nil
}

func (k hockeypuckKeys) Novel(key *pgpkey.Key) (bool, error) {
	if n, err := k.s.Novel(key); err != nil || n {
		return n, err
	}
	return k.s.HockeypuckNovel(key.Marshal())
}

func (k hockeypuckKeys) WaitApplied(ctx context.Context, idx eventlog.Index) error {
	return k.s.WaitHockeypuckApplied(ctx, idx)
}

func (k hockeypuckKeys) KeyHash(raw []byte, key *pgpkey.Key) (pgpkey.KeyHash, bool, error) {
	h, err := projections.HockeypuckHash(raw)
	if err != nil {
		return h, false, err
	}
	if key != nil {
		if n, err := k.s.Novel(key); err != nil || n {
			return h, n, err
		}
	}
	n, err := k.s.HockeypuckNovel(raw)
	return h, n, err
}

// Hockeypuck's Config rejection reasons (conflux recon/peer.go).
const (
	hpMismatchVersion    = "mismatched protocol version"
	hpMismatchBitQuantum = "mismatched bitquantum"
	hpMismatchMBar       = "mismatched mbar"
	hpMismatchFilters    = "mismatched filters"
)

// hockeypuckCheck is Hockeypuck >= 2.2's check of a peer's Config. A
// missing or short integer reads as 0, as conflux's reader leaves it.
func hockeypuckCheck(local wire.Config, remote *wire.ConfigMsg) wire.Verdict {
	get := func(k string) string { v, _ := remote.Get(k); return v }
	num := func(k string) int {
		v := get(k)
		if len(v) != 4 {
			return 0
		}
		return int(binary.BigEndian.Uint32([]byte(v)))
	}
	switch {
	case get(wire.KeyVersion) != local.Version:
		return wire.Verdict{Reason: hpMismatchVersion}
	case num(wire.KeyBitQuantum) != local.BitQuantum:
		return wire.Verdict{Reason: hpMismatchBitQuantum}
	case num(wire.KeyMBar) != local.MBar:
		return wire.Verdict{Reason: hpMismatchMBar}
	case get(wire.KeyFilters) != local.Filters:
		return wire.Verdict{Reason: hpMismatchFilters}
	}
	return wire.Verdict{Passed: true}
}

// datasetFor returns the dataset whose filters filters asks for: the one
// with the most filters all contained in it (so Hockeypuck's list, which
// contains SKS's two, picks the Hockeypuck dataset, even with site filters
// added), else the first, the node's default.
func (s *Server) datasetFor(filters string) *Dataset {
	have := make(map[string]bool)
	for _, f := range wire.SplitFilters(filters) {
		have[f] = true
	}
	var best *Dataset
	bestN := -1
	for i := range s.datasets {
		d := &s.datasets[i]
		fs := wire.SplitFilters(d.Filters)
		all := true
		for _, f := range fs {
			if !have[f] {
				all = false
				break
			}
		}
		if all && len(fs) > bestN {
			best, bestN = d, len(fs)
		}
	}
	if best == nil {
		best = &s.datasets[0]
	}
	return best
}

// peekConfig reads the peer's Config frame from conn before we send ours,
// so that an accepted session can answer from the dataset the peer asks
// for. Both SKS and conflux send their Config without waiting (recon.md
// §4), and a dialling grapevine does too, so this never waits on a peer
// that waits on us. It returns the message (nil if none could be read in
// time) and a connection that gives the Session every byte read here
// first.
func peekConfig(conn net.Conn, timeout time.Duration, lim wire.Limits) (*wire.ConfigMsg, net.Conn) {
	var seen bytes.Buffer
	conn.SetReadDeadline(time.Now().Add(timeout))
	r := wire.NewReader(bufio.NewReader(io.TeeReader(conn, &seen)), lim)
	m, err := r.ReadMessage()
	conn.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: conn, r: io.MultiReader(&seen, conn)}
	if err != nil {
		return nil, pc
	}
	cm, _ := m.(*wire.ConfigMsg)
	return cm, pc
}

// prefixConn replays bytes already read before reading the connection.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }
