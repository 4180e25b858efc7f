package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/grapevine-keyserver/grapevine/recon"
)

// startRecon starts the recon listeners (recon_address:recon_port), gossip
// with a random membership peer every gossip_interval (unless dontgossip),
// and the membership reloader: the file is re-read and its names
// re-resolved every membership_reload_interval, when its modification time
// changes, and on SIGHUP (recon.md §10).
func (e *env) startRecon(ctx context.Context, d *daemon, b *basedir, wg *sync.WaitGroup, errc chan<- error) error {
	cfg := reconConfig(d.conf, d.logger)
	cfg.OnReport = d.metrics.ReconReport
	members := &liveMembers{}
	reload := func() {
		ms := readMembership(d.logger, d.paths.Membership)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		peers := resolvePeers(rctx, d.logger, net.DefaultResolver, ms)
		cancel()
		members.set(peers)
		d.mu.Lock()
		d.peers = ms
		d.mu.Unlock()
		d.logger.Info().Int("peers", len(peers)).Msg("membership loaded")
	}
	// The modification time is taken before the first read: an edit that
	// lands between the read and the watcher's start is still noticed.
	loaded := membershipMtime(d.paths.Membership)
	reload()
	// Fetched keys pass the abuse limits; hashes they change are remembered.
	// The file stays open for the daemon's life (the process exit closes it).
	rk, err := newReconKeys(b, b.keyLimits)
	if err != nil {
		return err
	}
	srv, err := recon.NewServer(cfg, reconDatasets(d.conf, b.store, rk), rk, members)
	if err != nil {
		return err
	}
	lns, err := listenAll(d.logger, "recon", d.conf.ReconListenAddrs())
	if err != nil {
		return err
	}
	for _, ln := range lns {
		wg.Add(1)
		go func(ln net.Listener) {
			defer wg.Done()
			if err := srv.Serve(ctx, ln); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("recon on %s: %w", ln.Addr(), err)
			}
		}(ln)
	}
	d.logger.Info().Strs("recon", addrsOf(lns)).Dur("gossip_interval", cfg.GossipInterval).Bool("gossip", !d.conf.DontGossip).Msg("recon listening")
	if !d.conf.DontGossip {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Gossip(ctx); err != nil && ctx.Err() == nil {
				d.logger.Error().Err(err).Msg("gossip stopped")
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		watchMembership(ctx, d, d.hup, loaded, reload)
	}()
	return nil
}

// watchMembership calls reload on SIGHUP, when the membership file's
// modification time changes (checked every 5 s; SKS notices edits by mtime
// too), and every membership_reload_interval.
func watchMembership(ctx context.Context, d *daemon, hup <-chan os.Signal, last time.Time, reload func()) {
	mtime := func() time.Time { return membershipMtime(d.paths.Membership) }
	every := d.conf.MembershipReloadInterval
	if every <= 0 {
		every = 6 * time.Hour
	}
	full := time.NewTicker(every)
	defer full.Stop()
	poll := time.NewTicker(5 * time.Second)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			d.logger.Info().Msg("SIGHUP: reloading membership and configuration")
			last = mtime()
			reload()
			d.reloadConfig()
		case <-full.C:
			last = mtime()
			reload()
		case <-poll.C:
			if m := mtime(); !m.Equal(last) {
				last = m
				reload()
			}
		}
	}
}

// liveMembers is the current membership, replaced as a whole on reload.
type liveMembers struct {
	mu    sync.Mutex
	peers []recon.Peer
}

func (m *liveMembers) set(p []recon.Peer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peers = p
}

// Peers implements recon.Members.
func (m *liveMembers) Peers() []recon.Peer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peers
}

// membershipMtime is the file's modification time, zero if it is missing.
func membershipMtime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}
