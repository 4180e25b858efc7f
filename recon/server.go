package recon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/projections/ptree"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// Server runs recon for one keyserver: it accepts sessions from members
// (Serve), starts sessions with a random member on a timer (Gossip) or on
// demand (ReconcileOnce), and fetches what each session finds missing.
//
// All methods are safe for concurrent use. At most
// Config.MaxConcurrentSessions sessions run at once, each with its own
// snapshot of the tree.
type Server struct {
	cfg      Config
	datasets []Dataset // datasets[0] is the default
	members  Members
	fetchers []*fetcher // per dataset; nil: sessions only, nothing is fetched
	log      zerolog.Logger
	slots    chan struct{}

	mu   sync.Mutex
	rng  *rand.Rand
	self []netip.AddrPort
	// learned holds, per peer name, the filters its last Config carried,
	// for peers whose membership entry sets none: the next session we
	// start with it uses the dataset it asked for.
	learned map[string]string

	// dial opens recon connections; tests replace it.
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

// New returns a Server. members supplies the membership (nil: nobody is
// accepted and gossip does nothing). keys and app are used to fetch and
// store missing keys; if either is nil, sessions run and report what is
// missing but nothing is fetched.
//
// If tree has a PtreeConfig() ptree.Config method (PebbleTree does), its
// bitquantum and mbar must equal cfg's.
func New(cfg Config, tree Tree, keys Keys, app Appender, members Members) (*Server, error) {
	return NewServer(cfg, []Dataset{{Name: "sks", Filters: cfg.Filters, Tree: tree, Keys: keys}}, app, members)
}

// NewServer returns a Server that reconciles datasets, the first being the
// default. Each session uses one dataset, chosen by the filters the peer
// wants: those of its membership entry (Peer.Filters) if set; else, for an
// accepted session, those of the peer's Config, which is read before ours
// is sent; else, for a session we start, those the peer sent last time.
// The dataset whose filters that list contains (the most of them) is used,
// else the default. We send the dataset's Filters (or the membership's),
// and check the peer's Config with its rules; when the peer wants a
// dataset we do not serve, the check fails as SKS or Hockeypuck would.
func NewServer(cfg Config, datasets []Dataset, app Appender, members Members) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(datasets) == 0 {
		return nil, errors.New("recon: NewServer needs a Dataset")
	}
	for _, d := range datasets {
		if d.Tree == nil {
			return nil, fmt.Errorf("recon: dataset %q needs a Tree", d.Name)
		}
		if d.Filters == "" {
			return nil, fmt.Errorf("recon: dataset %q needs Filters", d.Name)
		}
		if tc, ok := d.Tree.(interface{ PtreeConfig() ptree.Config }); ok {
			pc := tc.PtreeConfig()
			if pc.BitQuantum != cfg.BitQuantum || pc.MBar != cfg.MBar {
				return nil, fmt.Errorf("recon: prefix tree of %s has bitquantum %d and mbar %d, config says %d and %d",
					d.Name, pc.BitQuantum, pc.MBar, cfg.BitQuantum, cfg.MBar)
			}
		}
	}
	if members == nil {
		members = StaticMembers(nil)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Server{
		cfg:      cfg,
		datasets: slices.Clone(datasets),
		members:  members,
		log:      cfg.Logger.With().Str("component", "recon").Logger(),
		slots:    make(chan struct{}, cfg.MaxConcurrentSessions),
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		self:     slices.Clone(cfg.SelfAddrs),
		learned:  make(map[string]string),
		fetchers: make([]*fetcher, len(datasets)),
	}
	for i, d := range s.datasets {
		if d.Keys != nil && app != nil {
			s.fetchers[i] = newFetcher(&s.cfg, d.Keys, app)
		}
	}
	dial := sourceDialer(cfg.DialTimeout, cfg.DialAddrs)
	s.dial = func(ctx context.Context, addr string) (net.Conn, error) {
		return dial(ctx, "tcp", addr)
	}
	return s, nil
}

// Report says what one session with a peer and the fetch after it did.
type Report struct {
	// Peer is the peer's name (Peer.Name, or the address ReconcileOnce
	// was given); RemoteAddr the address of the connection.
	Peer       string
	RemoteAddr string
	Role       Role
	// Dataset is the name of the dataset the session reconciled.
	Dataset string
	// Session is the session's result; SessionErr why it failed or ended
	// early (see Session.Run).
	Session    *Result
	SessionErr error
	// HTTPAddr is where the missing keys were fetched from (empty if
	// nothing was fetched).
	HTTPAddr string
	Fetch    FetchStats
	FetchErr error
}

// Err returns the report's first error.
func (r *Report) Err() error {
	if r.SessionErr != nil {
		return r.SessionErr
	}
	return r.FetchErr
}

// Serve accepts recon connections on ln until ctx is done, then closes ln,
// waits for its sessions to end (they are cancelled with ctx) and returns
// nil. Connections from addresses of no member are closed without a byte
// (SKS "unauthorized host"), as are connections beyond
// MaxConcurrentSessions (SKS closes incoming connections while busy). Each
// accepted session runs as Acceptor and is followed by a fetch.
//
// ln's address is added to the addresses gossip treats as our own.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil {
		s.mu.Lock()
		s.self = append(s.self, ap)
		s.mu.Unlock()
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("recon accept failed")
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return nil
				}
				continue
			}
			return fmt.Errorf("recon accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.ServeConn(ctx, conn)
		}()
	}
}

// ServeConn runs the Acceptor side of a session on an accepted connection
// and then fetches what it found missing. It checks membership and the
// session limit first, and closes conn in every case. The returned error is
// that of the Report, or ErrNotMember or ErrBusy (then the Report is nil).
func (s *Server) ServeConn(ctx context.Context, conn net.Conn) (*Report, error) {
	remote := conn.RemoteAddr().String()
	var ip netip.Addr
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		ip = ap.Addr()
	}
	peer, ok := memberFor(s.members.Peers(), ip)
	if !ok {
		conn.Close()
		s.log.Warn().Str("remote_addr", remote).Msg("recon attempt from unauthorized host")
		return nil, ErrNotMember
	}
	select {
	case s.slots <- struct{}{}:
	default:
		conn.Close()
		s.log.Info().Str("peer", peer.Name).Str("remote_addr", remote).Msg("recon attempt while busy; closed")
		return nil, ErrBusy
	}
	defer func() { <-s.slots }()
	rep := s.session(ctx, conn, Acceptor, &peer, peer.Name)
	return rep, rep.Err()
}

// ReconcileOnce dials addr ("host:port" of a recon port), runs the
// Initiator side of a session and fetches what it found missing, waiting
// for a free session slot first. If addr is a member's address, the
// member's name and overrides are used; otherwise addr is the peer's name.
// The error is the Report's first error; the Report is nil only if the
// connection could not be made.
//
// NB: as in SKS, the dialling side only answers requests, but it still
// ends with the set of hashes it lacks, and fetches them (spec recon.md
// §1).
func (s *Server) ReconcileOnce(ctx context.Context, addr string) (*Report, error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.slots }()
	peer := s.peerFor(addr)
	return s.dialSession(ctx, peer, addr)
}

// peerFor returns the member that addr names, or a Peer named addr.
func (s *Server) peerFor(addr string) *Peer {
	peers := s.members.Peers()
	for i := range peers {
		if peers[i].Name == addr {
			return &peers[i]
		}
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		for i := range peers {
			if int(ap.Port()) != peers[i].Port {
				continue
			}
			if _, ok := memberFor(peers[i:i+1], ap.Addr()); ok {
				return &peers[i]
			}
		}
	}
	return &Peer{Name: addr}
}

func (s *Server) dialSession(ctx context.Context, peer *Peer, addr string) (*Report, error) {
	dctx, cancel := context.WithTimeout(ctx, min(s.cfg.DialTimeout, s.cfg.ConfigTimeout))
	conn, err := s.dial(dctx, addr)
	cancel()
	if err != nil {
		s.log.Warn().Err(err).Str("peer", peer.Name).Str("addr", addr).Msg("recon connect failed")
		return nil, fmt.Errorf("recon connect %s: %w", addr, err)
	}
	rep := s.session(ctx, conn, Initiator, peer, peer.Name)
	return rep, rep.Err()
}

// session runs one session on conn, then the fetch, and logs a summary.
func (s *Server) session(ctx context.Context, conn net.Conn, role Role, peer *Peer, name string) *Report {
	rep := &Report{Peer: name, RemoteAddr: conn.RemoteAddr().String(), Role: role}
	if s.cfg.OnReport != nil {
		defer s.cfg.OnReport(rep)
	}
	// Choose the dataset (see NewServer).
	var want string
	switch {
	case peer != nil && peer.Filters != "":
		want = peer.Filters
		if role == Acceptor {
			_, conn = peekConfig(conn, s.cfg.ConfigTimeout, s.cfg.Limits)
		}
	case role == Acceptor:
		var cm *wire.ConfigMsg
		if cm, conn = peekConfig(conn, s.cfg.ConfigTimeout, s.cfg.Limits); cm != nil {
			want, _ = cm.Get(wire.KeyFilters)
		}
	default:
		s.mu.Lock()
		want = s.learned[name]
		s.mu.Unlock()
	}
	ds := s.datasetFor(want)
	di := slices.IndexFunc(s.datasets, func(d Dataset) bool { return d.Name == ds.Name })
	rep.Dataset = ds.Name
	sp := Peer{Name: name}
	if peer != nil {
		sp = *peer
	}
	if sp.Filters == "" {
		sp.Filters = ds.Filters
	}
	log := s.log.With().Str("peer", name).Str("remote_addr", rep.RemoteAddr).Str("role", role.String()).Str("dataset", ds.Name).Logger()
	view, err := ds.Tree.Snapshot()
	if err != nil {
		conn.Close()
		rep.Session = &Result{}
		rep.SessionErr = fmt.Errorf("recon snapshot: %w", err)
		log.Error().Err(err).Msg("recon snapshot failed")
		return rep
	}
	cfg := s.cfg
	cfg.Logger = log
	cfg.Filters = sp.Filters
	sess := &Session{Role: role, Config: cfg, Peer: &sp, View: view}
	if ds.HockeypuckRules {
		sess.Check = hockeypuckCheck
	}
	res, err := sess.Run(ctx, conn)
	if res.RemoteFilters != "" && (peer == nil || peer.Filters == "") {
		s.mu.Lock()
		if _, ok := s.learned[name]; ok || len(s.learned) < maxLearned {
			s.learned[name] = res.RemoteFilters
		}
		s.mu.Unlock()
	}
	view.Close()
	rep.Session, rep.SessionErr = res, err
	ev := log.Info()
	if err != nil {
		var ce *ConfigError
		switch {
		case errors.As(err, &ce):
			ev = log.Warn()
		case errors.Is(err, ErrProtocol):
			ev = log.Warn()
		case errors.Is(err, ErrIncomplete):
			ev = log.Info()
		default:
			ev = log.Error()
		}
		ev = ev.Err(err)
	}
	ev.Int("missing", len(res.Missing)).Bool("complete", res.Complete).Bool("truncated", res.Truncated).
		Int("requests", res.Stats.Requests).Int("elements_sent", res.Stats.ElementsSent).
		Int64("bytes_sent", res.Stats.BytesSent).Int64("bytes_received", res.Stats.BytesReceived).
		Int("max_set", res.Stats.MaxSetSize).Dur("took", res.Stats.Took).Msg("recon session done")

	f := s.fetchers[di]
	if len(res.Missing) == 0 || f == nil {
		return rep
	}
	ha, ok := httpAddr(conn.RemoteAddr(), res.Remote.HTTPPort)
	if !ok {
		rep.FetchErr = fmt.Errorf("recon: no HKP address for %s with http port %d", rep.RemoteAddr, res.Remote.HTTPPort)
		log.Warn().Err(rep.FetchErr).Msg("missing keys not fetched")
		return rep
	}
	rep.HTTPAddr = ha.String()
	st, err := f.fetch(ctx, log, name, ha, res.Missing)
	rep.Fetch, rep.FetchErr = st, err
	ev = log.Info()
	if err != nil {
		ev = log.Warn().Err(err)
	}
	ev.Str("http_addr", rep.HTTPAddr).Int("asked", st.Asked).Int("skipped", st.Skipped).
		Int("requests", st.Requests).Int("failed_requests", st.FailedRequests).Int("received", st.Received).
		Int("added", st.Added).Int("unchanged", st.Unchanged).Int("bad", st.Bad).
		Int("not_returned", st.NotReturned).Int("not_in_tree", st.NotInTree).Int("gave_up", st.GaveUp).
		Uint64("index", uint64(st.LastIndex)).Dur("took", st.Took).Msg("recon fetch done")
	return rep
}

// maxLearned bounds the peers whose filters are remembered (ReconcileOnce
// may name any address).
const maxLearned = 4096

// Gossip starts a session with a random member every GossipInterval ±
// GossipJitter, measured from the end of the previous attempt as SKS does,
// until ctx is done; then it returns nil after the running attempt ends.
// Members that are ourselves (SelfAddrs, Serve's listeners) are skipped,
// and so is a round in which all session slots are busy.
func (s *Server) Gossip(ctx context.Context) error {
	for {
		t := time.NewTimer(s.nextGossip())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		s.GossipOnce(ctx)
	}
}

// nextGossip returns the interval until the next gossip attempt.
func (s *Server) nextGossip() time.Duration {
	s.mu.Lock()
	f := 1 + s.cfg.GossipJitter*(2*s.rng.Float64()-1)
	s.mu.Unlock()
	return time.Duration(float64(s.cfg.GossipInterval) * f)
}

// GossipOnce runs one gossip attempt now: it picks a random member that is
// not ourselves and one of its addresses at random (SKS
// Membership.choose), and reconciles with it as Initiator. It returns nil
// if there was nobody to pick or no free slot.
func (s *Server) GossipOnce(ctx context.Context) (*Report, error) {
	peer, addr, ok := s.choose()
	if !ok {
		s.log.Debug().Msg("gossip: no member to reconcile with")
		return nil, nil
	}
	select {
	case s.slots <- struct{}{}:
	default:
		s.log.Debug().Str("peer", peer.Name).Msg("gossip skipped: all session slots busy")
		return nil, nil
	}
	defer func() { <-s.slots }()
	return s.dialSession(ctx, &peer, addr.String())
}

// choose picks a random member and address, skipping our own addresses.
func (s *Server) choose() (Peer, netip.AddrPort, bool) {
	peers := s.members.Peers()
	s.mu.Lock()
	defer s.mu.Unlock()
	type cand struct {
		p     Peer
		addrs []netip.AddrPort
	}
	var cands []cand
	for _, p := range peers {
		if p.Port < 1 || p.Port > 65535 {
			continue
		}
		var addrs []netip.AddrPort
		for _, a := range p.Addrs {
			ap := netip.AddrPortFrom(a.Unmap(), uint16(p.Port))
			if !isSelf(s.self, ap) {
				addrs = append(addrs, ap)
			}
		}
		if len(addrs) > 0 {
			cands = append(cands, cand{p, addrs})
		}
	}
	if len(cands) == 0 {
		return Peer{}, netip.AddrPort{}, false
	}
	c := cands[s.rng.IntN(len(cands))]
	return c.p, c.addrs[s.rng.IntN(len(c.addrs))], true
}
