package recon

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// Config configures recon sessions, gossip and key fetching. Build it with
// DefaultConfig and change fields before New; Validate says which field is
// unusable. Unless a field says otherwise, zero is not a valid value.
type Config struct {
	// Version, Filters, BitQuantum and MBar are sent in our Config message
	// (spec recon.md §4.1). Version must be "1.1.6": Hockeypuck >= 2.2
	// accepts nothing else (§4.2). BitQuantum and MBar must match the
	// local prefix tree. A Peer may override Filters (§4.3).
	Version    string
	Filters    string
	BitQuantum int
	MBar       int

	// HTTPPort is our HKP port, advertised as "http port" so that peers
	// fetch what they lack from us with /pks/hashquery (§11.1). A Peer may
	// override it (for example behind port forwarding).
	HTTPPort int

	// ReconThreshMult × MBar is the node size below which SKS answers
	// with whole element lists instead of recursing: the Full/Poly and
	// FullElements/SyncFail threshold of spec recon.md §7 (SKS 30 × 5 = 150).
	ReconThreshMult int

	// MaxOutstandingRequests is how many requests the requester keeps in
	// flight before it sends Flush and waits (§7, §8.1; SKS 100).
	MaxOutstandingRequests int

	// MaxMessageElements bounds message sizes in large differences
	// (spec recon.md §8.6). When positive:
	//   - as requester we summarise every node with ReconRqst_Poly, never
	//     ReconRqst_Full, whose reply (all the peer's elements under the
	//     prefix) is unbounded; a SyncFail for one of our leaves recurses
	//     into its children computed from the leaf's elements;
	//   - as requester we split the Elements we send after FullElements
	//     into messages of at most this many elements;
	//   - as responder, when a ReconRqst_Poly fails to decode for a
	//     remote node of more than this many elements, we answer SyncFail
	//     instead of FullElements, even for a leaf, so the peer recurses
	//     instead of sending all of it in one Elements message (SKS and
	//     conflux send Poly only for internal nodes, so SyncFail is always
	//     legal for them).
	// An empty node then catches up with a full one in messages of at most
	// about max(MaxMessageElements, ReconThreshMult×MBar) elements. The one
	// reply that stays unbounded is our Elements answer to a peer's
	// ReconRqst_Full, which SKS sends for its small nodes.
	// Zero means SKS 1.1.6's exact behaviour in both roles (client.ml,
	// server.ml).
	MaxMessageElements int

	// MaxMissing caps the hashes one session collects for fetching
	// (§8.6: SKS has no cap, old conflux 15000). Beyond it the requester
	// stops recursing and ends the session; the responder keeps answering
	// but collects no more. The rest is found in later rounds.
	MaxMissing int

	// ConfigTimeout bounds connecting plus the Config exchange (SKS
	// reconciliation_config_timeout, §9).
	ConfigTimeout time.Duration
	// SessionTimeout bounds a whole session after the Config exchange
	// (SKS reconciliation_timeout, §9). When it fires, what was collected
	// so far is still fetched, as in SKS (§8.4).
	SessionTimeout time.Duration
	// ReadTimeout bounds the wait for each message and WriteTimeout each
	// write to the socket; SKS has neither, Hockeypuck uses 300 s (§9).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// DialTimeout bounds a TCP connect to a peer (§9: 30 s).
	DialTimeout time.Duration

	// GossipInterval is the time from the end of one gossip attempt to the
	// start of the next, ± GossipJitter × GossipInterval (SKS 60 s ± 5 %,
	// repeat_forever ~jitter:0.1, §10.1). GossipJitter is in [0, 1).
	GossipInterval time.Duration
	GossipJitter   float64

	// MaxConcurrentSessions bounds the sessions (with their fetches) that
	// run at once, incoming and outgoing together. A connection that
	// arrives when all are busy is closed at once, as SKS closes incoming
	// connections while it is busy (§10.1). SKS runs one at a time; every
	// session reads its own snapshot of the tree, so more are safe (§10.3).
	MaxConcurrentSessions int

	// FetchBatch is the largest number of hashes asked for in one
	// /pks/hashquery request (SKS http_fetch_size 100, §11.2). Batches
	// start at this size, halve after a failed request (down to 1) and
	// double again after each success, up to this cap.
	FetchBatch int
	// FetchTimeout bounds one hashquery request, response included (SKS
	// missing_keys_timeout 180 s, §9).
	FetchTimeout time.Duration
	// MaxFetchFailures is how many hashquery requests in a row may fail
	// before the rest of a round's fetch is given up (the peer is down).
	MaxFetchFailures int
	// ApplyWait bounds how long a fetch waits for the projections to
	// apply the keys it appended, to learn which requested hashes did not
	// end up in the tree (§11.5 hazard 2).
	ApplyWait time.Duration

	// NegativeTTL is how long a hash that a peer advertised but that
	// yielded nothing new (not returned, a key whose canonical hash
	// differs, a key we already hold, or a failed fetch) is not asked for
	// again from that peer. NegativeMax bounds how many such hashes are
	// remembered; the oldest are forgotten first (§11.5).
	NegativeTTL time.Duration
	NegativeMax int

	// Limits bound what is read from peers, recon messages and hashquery
	// responses alike; a zero field means wire.DefaultLimits' value.
	// DefaultConfig lowers MaxSetFrameBytes and MaxElements to 32 MiB
	// (about 2 million elements): with MaxMessageElements no honest peer
	// sends sets of more than a few thousand. With MaxMessageElements 0
	// a nearly empty node receives every element of a full peer in one
	// Elements message, ~17 bytes per key: spec recon.md §8.6 asks for
	// 256 MiB then (wire.DefaultLimits).
	Limits wire.Limits

	// DialAddrs are the source addresses of outgoing recon and hashquery
	// connections, at most one per address family: a connection to an
	// IPv4 peer binds the IPv4 one, to an IPv6 peer the IPv6 one (SKS binds
	// them to recon_address, because peers check the source IP; §10.1).
	// A family without an address lets the system choose.
	DialAddrs []netip.Addr

	// SelfAddrs are our own recon addresses. Gossip never picks a member
	// whose address and port are one of them (SKS skips members that
	// resolve to its own hostname, §10.1). Serve adds its listener's
	// address. NB: SKS compares the IP only, which makes two servers on
	// one IP skip each other; grapevine compares IP and port.
	SelfAddrs []netip.AddrPort

	// Seed seeds gossip partner choice and jitter; 0 seeds from the
	// system's randomness.
	Seed uint64

	// OnReport, when not nil, is called with the report of every session
	// (incoming, gossip and ReconcileOnce) after its fetch, e.g. to count
	// sessions and fetched keys in metrics. It must not block.
	OnReport func(*Report)

	// Logger receives session summaries and anomalies. Default zerolog.Nop().
	Logger zerolog.Logger
}

// DefaultConfig returns the configuration grapevine runs with. Each value
// cites where it comes from.
func DefaultConfig() Config {
	return Config{
		Version:                wire.Version,           // "1.1.6": SKS common.ml; Hockeypuck >= 2.2 needs exactly this (recon.md §4.2)
		Filters:                wire.DefaultFilters,    // "yminsky.dedup,yminsky.merge": SKS after cleandb, Hockeypuck <= 2.1 (§4.3)
		BitQuantum:             wire.DefaultBitQuantum, // 2: SKS settings.ml (§5.1)
		MBar:                   wire.DefaultMBar,       // 5: SKS settings.ml (§5.1)
		HTTPPort:               wire.DefaultHTTPPort,   // 11371: recon port + 1 (§11.1)
		ReconThreshMult:        30,                     // SKS recon_thresh_mult: threshold 150 (§7)
		MaxOutstandingRequests: 100,                    // SKS max_outstanding_recon_requests (§7)
		MaxMessageElements:     1000,                   // grapevine: ~17 KB messages in large differences (§8.6)
		MaxMissing:             250_000,                // grapevine: bounded memory per session (§8.6); ~10 MB
		ConfigTimeout:          45 * time.Second,       // SKS reconciliation_config_timeout (§9)
		SessionTimeout:         time.Hour,              // SKS reconciliation_timeout (§9)
		ReadTimeout:            300 * time.Second,      // Hockeypuck's per-message read deadline (§9)
		WriteTimeout:           300 * time.Second,      // same bound for writes
		DialTimeout:            30 * time.Second,       // Hockeypuck's dial timeout (§9)
		GossipInterval:         60 * time.Second,       // SKS gossip_interval (§10.1)
		GossipJitter:           0.05,                   // SKS repeat_forever ~jitter:0.1, i.e. ± 5 % (§10.1)
		MaxConcurrentSessions:  4,                      // grapevine: SKS runs 1; snapshots make more safe (§5.7, §10.3)
		FetchBatch:             100,                    // SKS http_fetch_size (§11.2)
		FetchTimeout:           180 * time.Second,      // SKS missing_keys_timeout (§9)
		MaxFetchFailures:       8,                      // grapevine: enough for 100 → 1 halving, then give up
		ApplyWait:              30 * time.Second,       // grapevine: the runner applies a batch in well under a second
		NegativeTTL:            6 * time.Hour,          // grapevine: stops refetch loops (§11.5) while letting a fixed peer retry
		NegativeMax:            100_000,                // grapevine: ~6 MB
		Limits: wire.Limits{ // wire.DefaultLimits, but sets of at most 32 MiB (see the field)
			MaxSetFrameBytes: 32 << 20,
			MaxElements:      32 << 20 / wire.ElementSize,
		},
		Logger: zerolog.Nop(),
	}
}

// reconThreshold is the Full/Poly and FullElements/SyncFail threshold.
func (c *Config) reconThreshold() int { return c.ReconThreshMult * c.MBar }

// ConfigValidationError names the Config field Validate rejected.
type ConfigValidationError struct {
	Field  string
	Value  any
	Reason string
}

func (e *ConfigValidationError) Error() string {
	return fmt.Sprintf("recon: config %s = %v: %s", e.Field, e.Value, e.Reason)
}

// Validate reports the first unusable field as a *ConfigValidationError.
func (c *Config) Validate() error {
	bad := func(field string, v any, reason string) error {
		return &ConfigValidationError{Field: field, Value: v, Reason: reason}
	}
	wc := c.wireConfig(nil)
	if err := wc.Validate(); err != nil {
		return err
	}
	switch {
	case c.Filters == "":
		return bad("Filters", c.Filters, "must not be empty")
	case c.MBar < 1 || c.MBar > 254:
		return bad("MBar", c.MBar, "must be 1..254")
	case c.BitQuantum < 1 || c.BitQuantum > 8:
		return bad("BitQuantum", c.BitQuantum, "must be 1..8")
	case c.ReconThreshMult < 1:
		return bad("ReconThreshMult", c.ReconThreshMult, "must be positive")
	case c.MaxOutstandingRequests < 1:
		return bad("MaxOutstandingRequests", c.MaxOutstandingRequests, "must be positive")
	case c.MaxMessageElements < 0:
		return bad("MaxMessageElements", c.MaxMessageElements, "must not be negative")
	case c.MaxMissing < 1:
		return bad("MaxMissing", c.MaxMissing, "must be positive")
	case c.ConfigTimeout <= 0:
		return bad("ConfigTimeout", c.ConfigTimeout, "must be positive")
	case c.SessionTimeout <= 0:
		return bad("SessionTimeout", c.SessionTimeout, "must be positive")
	case c.ReadTimeout <= 0:
		return bad("ReadTimeout", c.ReadTimeout, "must be positive")
	case c.WriteTimeout <= 0:
		return bad("WriteTimeout", c.WriteTimeout, "must be positive")
	case c.DialTimeout <= 0:
		return bad("DialTimeout", c.DialTimeout, "must be positive")
	case c.GossipInterval <= 0:
		return bad("GossipInterval", c.GossipInterval, "must be positive")
	case c.GossipJitter < 0 || c.GossipJitter >= 1:
		return bad("GossipJitter", c.GossipJitter, "must be in [0, 1)")
	case c.MaxConcurrentSessions < 1:
		return bad("MaxConcurrentSessions", c.MaxConcurrentSessions, "must be positive")
	case c.FetchBatch < 1 || c.FetchBatch > 100_000:
		return bad("FetchBatch", c.FetchBatch, "must be 1..100000")
	case c.FetchTimeout <= 0:
		return bad("FetchTimeout", c.FetchTimeout, "must be positive")
	case c.MaxFetchFailures < 1:
		return bad("MaxFetchFailures", c.MaxFetchFailures, "must be positive")
	case c.ApplyWait <= 0:
		return bad("ApplyWait", c.ApplyWait, "must be positive")
	case c.NegativeTTL < 0:
		return bad("NegativeTTL", c.NegativeTTL, "must not be negative")
	case c.NegativeMax < 0:
		return bad("NegativeMax", c.NegativeMax, "must not be negative")
	}
	return nil
}

// wireConfig returns the Config message values we send to peer p (nil: no
// per-peer overrides).
func (c *Config) wireConfig(p *Peer) wire.Config {
	wc := wire.Config{
		Version:    c.Version,
		HTTPPort:   c.HTTPPort,
		BitQuantum: c.BitQuantum,
		MBar:       c.MBar,
		Filters:    c.Filters,
	}
	if p != nil {
		if p.Filters != "" {
			wc.Filters = p.Filters
		}
		if p.HTTPPort != 0 {
			wc.HTTPPort = p.HTTPPort
		}
	}
	return wc
}
