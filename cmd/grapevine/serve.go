package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
)

// serveCmd runs the daemon: it catches the projections up with the log,
// then serves HKP (and recon) where sksconf says, until SIGINT or SIGTERM.
//
// Start-up policy: a projection behind the log catches up BEFORE the
// listeners open (with progress), so the daemon never answers from a stale
// index; the catch-up of an interrupted import or a fresh replay is the only
// long one, and it logs its progress.
// storeCloseTimeout bounds how long a stopping daemon waits for the
// projections to flush and close (basedir.closeStore).
const storeCloseTimeout = 15 * time.Second

func (e *env) serveCmd(ctx context.Context, args []string) (err error) {
	fs := e.newFlagSet("serve", "[--basedir DIR]")
	basedirFlag := fs.String("basedir", ".", "base directory (as in SKS); sksconf, membership and mailsync are read from it")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("serve: unexpected argument %q", rest[0])
	}
	conf, paths, notices, err := LoadSKSConf(*basedirFlag)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	if err := conf.Validate(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	logger, closeLog, err := e.newDaemonLogger(conf)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer closeLog()
	// The level is process-wide, so SIGHUP can change it (reload.go).
	logger = logger.Level(zerolog.TraceLevel)
	zerolog.SetGlobalLevel(levelFor(conf.DebugLevel))
	for _, n := range notices {
		logger.Info().Str("sksconf", n.String()).Msg("option accepted but not used")
	}
	_, _, stopGCFloor := tuneGC(os.Getenv, logger)
	defer stopGCFloor()
	tuneProcs(os.Getenv, conf.BackgroundNice, logger)
	d := &daemon{conf: conf, logger: logger, paths: paths, hup: make(chan os.Signal, 1)}
	// Registered before any port opens, so that a SIGHUP sent once the
	// daemon answers always reaches the reloader (serve_recon.go).
	signal.Notify(d.hup, syscall.SIGHUP)
	defer signal.Stop(d.hup)
	d.peers, d.mailsync = readMembership(logger, paths.Membership), readMailsync(logger, paths.Mailsync)

	b, err := openBasedirWith(conf.Basedir, logger, true, func(c *projections.Config) {
		c.BackgroundNice = conf.BackgroundNice
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	// A stopping daemon must not hang on projections it cannot flush
	// (basedir.closeStore); the error makes the exit status non-zero.
	b.storeCloseTimeout = storeCloseTimeout
	defer func() {
		if cerr := b.Close(); cerr != nil {
			logger.Error().Err(cerr).Msg("closing the basedir")
			if err == nil {
				err = fmt.Errorf("serve: %w", cerr)
			}
		}
	}()
	if err := b.catchUp(ctx, e.stderr, "catching up with the log"); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	d.b = b

	metrics := newMetrics(conf, b)
	d.metrics = metrics
	hcfg := hkpConfig(conf, logger, metrics)
	hsrv, err := hkp.New(hcfg, b.store, b.log, d)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	d.hkp = hsrv
	if err := startMetrics(ctx, d, b, metrics); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	hkpListeners, err := listenAll(logger, "hkp", conf.HKPListenAddrs())
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}

	// Everything below stops when ctx is done: listeners first (the HKP
	// servers drain in-flight requests), then the runner, then the store
	// and the log (deferred Close).
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	var runner sync.WaitGroup
	runner.Add(1)
	go func() {
		defer runner.Done()
		b.store.Follow(runCtx, b.log)
	}()

	var wg sync.WaitGroup
	errc := make(chan error, len(hkpListeners)+4)
	for _, ln := range hkpListeners {
		wg.Add(1)
		go func(ln net.Listener) {
			defer wg.Done()
			if err := hsrv.Serve(ctx, ln); err != nil {
				errc <- fmt.Errorf("hkp on %s: %w", ln.Addr(), err)
			}
		}(ln)
	}
	stopAdmin, err := serveAdmin(ctx, b)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	d.onStop(stopAdmin)
	if err := e.startRecon(ctx, d, b, &wg, errc); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	startMailsync(ctx, d, b)
	logger.Info().Str("version", version).Uint64("log_index", uint64(b.log.LastIndex())).
		Strs("hkp", addrsOf(hkpListeners)).Msg("serving")

	var firstErr error
	select {
	case <-ctx.Done():
	case firstErr = <-errc:
		logger.Error().Err(firstErr).Msg("listener failed; shutting down")
	}
	d.stop()
	wg.Wait()
	cancelRun()
	runner.Wait()
	logger.Info().Uint64("applied", uint64(b.store.Applied())).Msg("stopped")
	return firstErr
}

// daemon holds what the running server shares between its parts.
type daemon struct {
	conf    *SKSConf
	paths   SKSPaths
	metrics *metrics
	b       *basedir
	hup     chan os.Signal // SIGHUP: reload membership and configuration
	hkp     *hkp.Server
	logger  zerolog.Logger

	mu       sync.Mutex
	peers    []Member
	mailsync []string
	stopFns  []func()
}

func (d *daemon) onStop(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stopFns = append(d.stopFns, fn)
}

func (d *daemon) stop() {
	d.mu.Lock()
	fns := d.stopFns
	d.stopFns = nil
	d.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// GossipPeers lists the membership entries as written ("host port").
func (d *daemon) GossipPeers() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, len(d.peers))
	for i, m := range d.peers {
		out[i] = m.String()
	}
	return out
}

// MailsyncStatus sums up the outgoing mail queue for the stats page.
func (d *daemon) MailsyncStatus() string {
	if d.b == nil {
		return ""
	}
	st, ok := mailsyncStats(d.b)
	if !ok {
		return ""
	}
	line := fmt.Sprintf("%d sent, %d failed, %d waiting", st.Sent, st.Failed, st.Queued)
	if st.LastError != "" {
		line += fmt.Sprintf("; last failure at %s: %s", st.LastErrorTime.UTC().Format("2006-01-02 15:04:05 UTC"), st.LastError)
	}
	return line
}

// MailsyncPeers lists the mailsync addresses.
func (d *daemon) MailsyncPeers() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.mailsync...)
}

// readMailsync reads the mailsync file. Like SKS, bad lines are logged and
// skipped, and a missing file means no partners.
func readMailsync(logger zerolog.Logger, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			logger.Warn().Err(err).Msg("mailsync not read")
		}
		return nil
	}
	defer f.Close()
	mailsync, err := ParseMailsync(f, path)
	if err != nil {
		logger.Warn().Err(err).Msg("mailsync lines skipped")
	}
	return mailsync
}

// listenAll binds every address. As SKS, it fails only if none can be
// bound. IPv4 and IPv6 addresses get separate sockets (tcp4/tcp6, so "::"
// is IPv6-only as in SKS and does not collide with "0.0.0.0").
func listenAll(logger zerolog.Logger, what string, addrs []string) ([]net.Listener, error) {
	var lns []net.Listener
	var errs []error
	for _, a := range addrs {
		network := "tcp"
		if host, _, err := net.SplitHostPort(a); err == nil {
			if ip := net.ParseIP(host); ip != nil {
				if ip.To4() != nil {
					network = "tcp4"
				} else {
					network = "tcp6"
				}
			}
		}
		ln, err := net.Listen(network, a)
		if err != nil {
			logger.Warn().Err(err).Str("address", a).Msg(what + " address not bound")
			errs = append(errs, err)
			continue
		}
		lns = append(lns, ln)
	}
	if len(lns) == 0 {
		return nil, fmt.Errorf("%s: no address could be bound: %w", what, errors.Join(errs...))
	}
	return lns, nil
}

func addrsOf(lns []net.Listener) []string {
	out := make([]string, len(lns))
	for i, ln := range lns {
		out[i] = ln.Addr().String()
	}
	return out
}

// levelFor maps SKS's debuglevel (0 start-up, 1-2 errors, 3 normal,
// 4+ per request; config.md §3.2) to zerolog levels.
func levelFor(debuglevel int) zerolog.Level {
	switch {
	case debuglevel <= 2:
		return zerolog.WarnLevel
	case debuglevel == 3:
		return zerolog.InfoLevel
	default:
		return zerolog.DebugLevel
	}
}

// hkpConfig is the HKP server's configuration from sksconf (also used when
// SIGHUP reloads it).
func hkpConfig(conf *SKSConf, logger zerolog.Logger, metrics *metrics) hkp.Config {
	hcfg := hkp.DefaultConfig()
	hcfg.Logger = logger
	hcfg.ServerHeader = "grapevine/" + version
	hcfg.Software = "grapevine"
	hcfg.Hostname = conf.Hostname
	hcfg.Nodename = conf.Nodename
	hcfg.Contact = conf.ServerContact
	hcfg.HTTPPort = conf.HKPPort
	hcfg.ReconPort = conf.ReconPort
	hcfg.DebugLevel = conf.DebugLevel
	hcfg.MaxMatches = conf.MaxMatches
	hcfg.MaxInternalMatches = conf.MaxInternalMatches
	hcfg.MaxPostBytes = conf.MaxPostBytes
	hcfg.KeyLimits = conf.keyLimits()
	hcfg.AccessLog = conf.AccessLog
	hcfg.DisableFrontEnd = conf.NoHTTPFrontEnd
	hcfg.RateLimit = conf.RateLimit
	hcfg.RateBurst = conf.RateBurst
	hcfg.TrustedProxies = conf.TrustedProxies
	hcfg.HashqueryDataset = hashqueryDataset(conf) // grapevine_recon_mode
	hcfg.Middleware = metrics.Middleware()
	if conf.WserverTimeout > 0 {
		hcfg.WriteTimeout = conf.WserverTimeout
	}
	return hcfg
}
