package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon"
	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// The stores recon uses, checked at compile time.
var (
	_ recon.Keys     = (*projections.Store)(nil)
	_ recon.Appender = (*eventlog.Log)(nil)
)

// reconCmd runs one recon session with a peer now, as the side that dials
// (SKS's initiator, which only answers requests), then fetches what the
// session found missing, appends it to the log, waits until it is applied
// and prints what happened.
//
// It takes the basedir's lock, so it cannot run next to `grapevine serve`
// on the same basedir; it serves no HKP either, so the peer cannot fetch
// from us what it lacks (it will try, at our advertised HKP port).
func (e *env) reconCmd(ctx context.Context, args []string) error {
	fs := e.newFlagSet("recon", "--peer HOST:PORT [--basedir DIR]")
	basedirFlag := fs.String("basedir", ".", "base directory (as in SKS); sksconf and membership are read from it")
	peerFlag := fs.String("peer", "", "the peer's recon address, HOST:PORT (port: its recon port, normally 11370)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("recon: unexpected argument %q", rest[0])
	}
	if *peerFlag == "" {
		fs.Usage()
		return usagef("recon: --peer HOST:PORT is required")
	}
	host, port, err := net.SplitHostPort(*peerFlag)
	if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
		return usagef("recon: --peer %q: want HOST:PORT with a port from 1 to 65535", *peerFlag)
	}
	conf, paths, _, err := LoadSKSConf(*basedirFlag)
	if err != nil {
		return fmt.Errorf("recon: %w", err)
	}
	if err := conf.Validate(); err != nil {
		return fmt.Errorf("recon: %w", err)
	}
	logger := newLogger(e.stderr).Level(levelFor(conf.DebugLevel))
	b, err := openBasedir(conf.Basedir, logger, true)
	if err != nil {
		return fmt.Errorf("recon: %w", err)
	}
	defer b.Close()
	if err := b.catchUp(ctx, e.stderr, "catching up with the log"); err != nil {
		return fmt.Errorf("recon: %w", err)
	}

	// Fetched keys are applied as they arrive, as in the daemon.
	runCtx, stopRunner := context.WithCancel(context.WithoutCancel(ctx))
	var runner sync.WaitGroup
	runner.Add(1)
	go func() {
		defer runner.Done()
		b.store.Follow(runCtx, b.log)
	}()
	defer func() {
		stopRunner()
		runner.Wait()
	}()

	cfg := reconConfig(conf, logger)
	members := readMembership(logger, paths.Membership)
	peers := resolvePeers(ctx, logger, net.DefaultResolver, members)
	// Fetched keys pass the abuse limits; hashes they change are remembered.
	rk, err := newReconKeys(b, b.keyLimits)
	if err != nil {
		return err
	}
	defer rk.Close()
	srv, err := recon.NewServer(cfg, reconDatasets(conf, b.store, rk), rk, recon.StaticMembers(peers))
	if err != nil {
		return fmt.Errorf("recon: %w", err)
	}
	rep, err := srv.ReconcileOnce(ctx, *peerFlag)
	if rep == nil {
		return fmt.Errorf("recon: %w", err)
	}
	printReport(e.stdout, rep, cfg.HTTPPort)

	// Make sure everything appended is applied before the store closes.
	stopRunner()
	runner.Wait()
	if err := b.catchUp(context.WithoutCancel(ctx), e.stderr, "applying fetched keys"); err != nil {
		return fmt.Errorf("recon: %w", err)
	}
	if n := rep.Fetch.Added; n > 0 {
		fmt.Fprintf(e.stdout, "applied up to log index %d\n", b.store.Applied())
	}
	if err := rep.Err(); err != nil {
		return fmt.Errorf("recon with %s: %w", *peerFlag, err)
	}
	return nil
}

// grapevine_recon_mode values.
const (
	ReconModeBoth       = "both"
	ReconModeSKS        = "sks"
	ReconModeHockeypuck = "hockeypuck"
)

// reconDatasets returns the datasets recon serves in conf's
// grapevine_recon_mode, the default first: the SKS dataset (SKS 1.1.6's
// filters and rules) and the Hockeypuck 2.3 dataset (its filters, its
// Config rules, its hashes; projections/hockeypuck.go). sksKeys is the SKS
// dataset's Keys and rk.Hockeypuck() the Hockeypuck dataset's: the store
// behind the abuse limits (limits.go).
func reconDatasets(conf *SKSConf, store *projections.Store, rk *reconKeys) []recon.Dataset {
	sks := recon.Dataset{Name: "sks", Filters: wire.DefaultFilters,
		Tree: recon.PebbleTree(store.DB(), store.PtreeConfig()), Keys: rk}
	hp := recon.Dataset{Name: "hockeypuck", Filters: pgpkey.HockeypuckFilters, HockeypuckRules: true,
		Tree: recon.PebbleTree(store.DB(), store.HockeypuckPtreeConfig()), Keys: rk.Hockeypuck()}
	switch conf.ReconMode {
	case ReconModeSKS:
		return []recon.Dataset{sks}
	case ReconModeHockeypuck:
		return []recon.Dataset{hp}
	}
	return []recon.Dataset{sks, hp}
}

// hashqueryDataset is the hkp.Config.HashqueryDataset of conf's recon mode.
func hashqueryDataset(conf *SKSConf) string {
	switch conf.ReconMode {
	case ReconModeSKS:
		return hkp.DatasetSKS
	case ReconModeHockeypuck:
		return hkp.DatasetHockeypuck
	}
	return ""
}

// printReport prints a session's outcome as a few plain lines.
func printReport(w io.Writer, rep *recon.Report, ourHTTPPort int) {
	res := rep.Session
	state := "complete"
	if !res.Complete {
		state = "failed"
		if errors.Is(rep.SessionErr, recon.ErrIncomplete) {
			state = "ended early (keeping what was found)"
		}
	}
	fmt.Fprintf(w, "recon with %s (%s, we dialled, %s dataset): session %s in %v, %d requests answered\n",
		rep.Peer, rep.RemoteAddr, rep.Dataset, state, res.Stats.Took.Round(time.Millisecond), res.Stats.Requests)
	if rep.SessionErr != nil && !res.Complete {
		fmt.Fprintf(w, "session error: %v\n", rep.SessionErr)
	}
	fmt.Fprintf(w, "we lack %d keys", len(res.Missing))
	if res.Truncated {
		fmt.Fprint(w, " (capped: more remain for the next session)")
	}
	fmt.Fprintf(w, "; we told the peer of %d it lacks (it fetches them from our HKP port %d)\n", res.Stats.ElementsSent, ourHTTPPort)
	if rep.HTTPAddr == "" {
		return
	}
	st := rep.Fetch
	fmt.Fprintf(w, "fetched from %s in %v: %d asked (%d skipped), %d added, %d unchanged, %d bad, %d not returned, %d failed requests",
		rep.HTTPAddr, st.Took.Round(time.Millisecond), st.Asked, st.Skipped, st.Added, st.Unchanged, st.Bad, st.NotReturned, st.FailedRequests)
	if st.GaveUp > 0 {
		fmt.Fprintf(w, ", %d given up", st.GaveUp)
	}
	fmt.Fprintln(w)
	if rep.FetchErr != nil {
		fmt.Fprintf(w, "fetch error: %v\n", rep.FetchErr)
	}
}

// reconConfig returns the recon settings sksconf gives (spec config.md
// §3.5, recon.md §9). `grapevine serve` uses it too.
func reconConfig(conf *SKSConf, logger zerolog.Logger) recon.Config {
	cfg := recon.DefaultConfig()
	cfg.Logger = logger
	cfg.HTTPPort = conf.HKPPort
	cfg.BitQuantum = conf.BitQuantum
	cfg.MBar = conf.MBar
	cfg.ReconThreshMult = conf.ReconThreshMult
	cfg.MaxOutstandingRequests = conf.MaxOutstandingReconRequests
	cfg.FetchBatch = conf.HTTPFetchSize
	if conf.ReconciliationConfigTimeout > 0 {
		cfg.ConfigTimeout = conf.ReconciliationConfigTimeout
	}
	if conf.ReconciliationTimeout > 0 {
		cfg.SessionTimeout = conf.ReconciliationTimeout
	}
	if conf.MissingKeysTimeout > 0 {
		cfg.FetchTimeout = conf.MissingKeysTimeout
	}
	if conf.GossipInterval > 0 {
		cfg.GossipInterval = conf.GossipInterval
	}
	// SKS binds outgoing recon and hashquery sockets to recon_address,
	// because peers check the source IP (recon.md §10.1). We bind to the
	// first specific recon_address of the target's family; with only
	// wildcard addresses the system chooses.
	for _, a := range conf.ReconAddress {
		if ip, err := netip.ParseAddr(a); err == nil && !ip.IsUnspecified() {
			cfg.DialAddrs = append(cfg.DialAddrs, ip)
		}
	}
	// Our own recon addresses, so gossip skips us: hostname's addresses at
	// the recon port, as SKS resolves hostname (Serve adds its listeners).
	if ip, err := netip.ParseAddr(conf.Hostname); err == nil {
		cfg.SelfAddrs = append(cfg.SelfAddrs, netip.AddrPortFrom(ip.Unmap(), uint16(conf.ReconPort)))
	} else if conf.Hostname != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ips, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", conf.Hostname)
		cancel()
		for _, ip := range ips {
			cfg.SelfAddrs = append(cfg.SelfAddrs, netip.AddrPortFrom(ip.Unmap(), uint16(conf.ReconPort)))
		}
	}
	return cfg
}

// readMembership reads the membership file. Like SKS, bad lines are logged
// and skipped, and a missing file means no members.
func readMembership(logger zerolog.Logger, path string) []Member {
	f, err := os.Open(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			logger.Warn().Err(err).Msg("membership not read")
		}
		return nil
	}
	defer f.Close()
	members, err := ParseMembership(f, path)
	if err != nil {
		logger.Warn().Err(err).Msg("membership lines skipped")
	}
	return members
}

// resolvePeers resolves members into recon peers. A member whose host does
// not resolve is kept without addresses (it is retried at the next
// resolution; SKS does the same). `grapevine serve` should call it again
// periodically (recon.md §10.3) and hand recon a Members that returns the
// latest result.
func resolvePeers(ctx context.Context, logger zerolog.Logger, resolver MemberResolver, members []Member) []recon.Peer {
	rms, err := ResolveMembers(ctx, resolver, members)
	if err != nil {
		logger.Warn().Err(err).Msg("membership hosts not resolved")
	}
	peers := make([]recon.Peer, 0, len(rms))
	for _, rm := range rms {
		peers = append(peers, recon.Peer{
			Name:     net.JoinHostPort(rm.Host, strconv.Itoa(rm.Port)),
			Addrs:    rm.Addrs,
			Port:     rm.Port,
			Filters:  rm.Filters,
			HTTPPort: rm.HTTPPort,
		})
	}
	return peers
}
