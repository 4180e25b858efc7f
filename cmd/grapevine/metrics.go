package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/recon"
)

// Prometheus metrics of `grapevine serve`, on grapevine_metrics_address
// (off when empty) at /metrics, never on the HKP port. Everything lives in
// the daemon's own registry: no global state, so tests can run several
// daemons in one process.
//
// What is counted where:
//   - HKP requests by op and status, and their duration: hkp.Config.Middleware
//     (metrics.middleware), which sees every request.
//   - Log events by origin and kind: a goroutine that follows the log from
//     the index it had at start (counters count since the process started,
//     as Prometheus counters do).
//   - Everything else is read from the components at scrape time
//     (basedirCollector): log index and bytes, applied index and lag of each
//     projection, key count, keys added and updated, prefix tree elements,
//     mailsync counters.
//   - Go runtime and process (goroutines, fds, RSS, CPU): the client
//     library's collectors.
//
// Not counted: recon sessions and fetches (recon has no counters or report
// hook outside its logger; fetched keys do show up as origin="recon" log
// events), and the outcome of each submission by origin (projections count
// added/updated/unchanged/rejected per apply run but do not keep them).
type metrics struct {
	reg *prometheus.Registry

	httpRequests *prometheus.CounterVec   // op, status
	httpDuration *prometheus.HistogramVec // op
	httpInFlight prometheus.Gauge

	reconSessions *prometheus.CounterVec // peer, role, result
	reconMissing  *prometheus.CounterVec // peer: hashes found missing
	reconFetched  *prometheus.CounterVec // peer, result: keys fetched
}

// hkpOps are the values of the op label of the HTTP metrics; everything
// else is "other", so the label's values are bounded whatever clients send.
var hkpOps = map[string]bool{"get": true, "index": true, "vindex": true, "hget": true, "stats": true}

// newMetrics returns the daemon's metrics on a new registry, with a
// collector that reads b's counters at scrape time. It returns nil when
// sksconf sets no grapevine_metrics_address; a nil *metrics counts
// nothing.
func newMetrics(conf *SKSConf, b *basedir) *metrics {
	if conf.MetricsAddress == "" {
		return nil
	}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "grapevine_http_requests_total",
			Help: "HKP requests answered, by op (get, index, vindex, hget, stats, add, hashquery, other) and HTTP status.",
		}, []string{"op", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grapevine_http_request_duration_seconds",
			Help:    "Time to answer HKP requests, by op.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 180},
		}, []string{"op"}),
		httpInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "grapevine_http_requests_in_flight",
			Help: "HKP requests being answered.",
		}),
	}
	m.reconSessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "grapevine_recon_sessions_total",
		Help: "Recon sessions by peer, our role (initiator: we dialled) and result (ok, incomplete, config, protocol, error).",
	}, []string{"peer", "role", "result"})
	m.reconMissing = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "grapevine_recon_elements_recovered_total",
		Help: "Hashes recon sessions found we lack, by peer.",
	}, []string{"peer"})
	m.reconFetched = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "grapevine_recon_fetched_keys_total",
		Help: "Keys fetched from recon peers by /pks/hashquery, by peer and result (added, unchanged, bad, not_returned, failed_requests).",
	}, []string{"peer", "result"})
	m.reg.MustRegister(m.reconSessions, m.reconMissing, m.reconFetched)
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "grapevine_build_info",
		Help:        "Always 1; the version label says which grapevine runs.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(
		m.httpRequests, m.httpDuration, m.httpInFlight, buildInfo,
		logEventsCollector{b.log},
		newBasedirCollector(b),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Middleware returns the hkp.Config.Middleware that counts and times
// every HKP request, or nil for a nil *metrics.
func (m *metrics) Middleware() func(http.Handler) http.Handler {
	if m == nil {
		return nil
	}
	return m.middleware
}

func (m *metrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := hkpOp(r)
		m.httpInFlight.Inc()
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// A handler that panics has answered nothing we can count; the
			// panic goes on to net/http.
			m.httpInFlight.Dec()
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			m.httpDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
			m.httpRequests.WithLabelValues(op, strconv.Itoa(sw.status)).Inc()
		}()
		next.ServeHTTP(sw, r)
	})
}

// hkpOp names a request for the op label: the op of /pks/lookup (hkp.md
// §3), add, hashquery, stats (/pks/stats too), v2 (/pks/v2/…), vks
// (/vks/v1/…), or other.
func hkpOp(r *http.Request) string {
	switch r.URL.Path {
	case "/pks/lookup":
		return lookupOp(r.URL.RawQuery)
	case "/pks/add":
		return "add"
	case "/pks/hashquery":
		return "hashquery"
	case "/pks/stats":
		return "stats"
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/pks/v2/"):
		return "v2"
	case strings.HasPrefix(r.URL.Path, "/vks/v1/"):
		return "vks"
	}
	return "other"
}

// lookupOp returns the op label of a /pks/lookup query: its first op
// parameter, as url.Values.Get reads it, if that is one of hkpOps, else
// "other". It scans the query instead of parsing it into a map: this runs
// on every request, and the map was most of the middleware's cost.
func lookupOp(raw string) string {
	for raw != "" {
		var piece string
		piece, raw, _ = strings.Cut(raw, "&")
		if strings.Contains(piece, ";") {
			continue // url.ParseQuery drops these
		}
		name, value, _ := strings.Cut(piece, "=")
		if name != "op" {
			if !strings.ContainsAny(name, "%+") {
				continue
			}
			if n, err := url.QueryUnescape(name); err != nil || n != "op" {
				continue
			}
		}
		if strings.ContainsAny(value, "%+") {
			v, err := url.QueryUnescape(value)
			if err != nil {
				continue
			}
			value = v
		}
		for op := range hkpOps {
			if strings.EqualFold(value, op) {
				return op
			}
		}
		return "other"
	}
	return "other"
}

// statusWriter records the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int // 0 until WriteHeader or Write
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// startMetrics serves m on sksconf grapevine_metrics_address and starts
// counting log events. Both stop when the daemon stops. A nil m (no
// address configured) starts nothing. An address that cannot be bound
// stops start-up: the operator asked for metrics.
func startMetrics(ctx context.Context, d *daemon, b *basedir, m *metrics) error {
	if m == nil {
		return nil
	}
	ln, err := net.Listen("tcp", d.conf.MetricsAddress)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "grapevine metrics: /metrics\n")
	})
	if os.Getenv(pprofEnv) != "" {
		mountPprof(mux)
		d.logger.Warn().Str("address", ln.Addr().String()).Msg("profiling endpoints on at /debug/pprof/ (" + pprofEnv + ")")
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.logger.Error().Err(err).Msg("metrics listener failed")
		}
	}()
	d.onStop(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		wg.Wait()
	})
	d.logger.Info().Str("address", ln.Addr().String()).Msg("metrics listening")
	return nil
}

// pprofEnv, set to anything, puts Go's profiling endpoints
// (/debug/pprof/: CPU, heap, block, mutex, goroutines, execution trace) on
// the metrics listener, for the optimisation work in docs/benchmarks.md. Off
// by default: profiles reveal memory contents and cost CPU while taken.
const pprofEnv = "GRAPEVINE_PPROF"

// mountPprof serves net/http/pprof on mux and turns on block and mutex
// sampling (a process-wide setting: the profiles are empty without it).
// One blocking event in 10 µs and one contended lock in 10 are sampled, a
// cost too small to show under load.
func mountPprof(mux *http.ServeMux) {
	runtime.SetBlockProfileRate(10000)
	runtime.SetMutexProfileFraction(10)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// logEventsCollector reports the events the daemon's log appended since it
// started, by origin and kind, from the log's own counters (it used to
// follow the log and decode every event to count it: ≈ 5 % of the
// daemon's CPU in a burst of uploads). Every origin's key submissions are
// reported from 0, so that rate() sees the first one; other kinds once
// they occur.
type logEventsCollector struct{ log *eventlog.Log }

var logEventsDesc = prometheus.NewDesc("grapevine_log_events_total",
	"Events appended to the log since the daemon started, by origin (hkp, recon, mail, import, admin) and kind.",
	[]string{"origin", "kind"}, nil)

func (c logEventsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- logEventsDesc }

func (c logEventsCollector) Collect(ch chan<- prometheus.Metric) {
	for o := eventlog.OriginHKP; o.Valid(); o++ {
		for k := eventlog.KindKeySubmitted; k.Valid(); k++ {
			n := c.log.Appended(o, k)
			if n == 0 && k != eventlog.KindKeySubmitted {
				continue
			}
			ch <- prometheus.MustNewConstMetric(logEventsDesc, prometheus.CounterValue, float64(n), o.String(), k.String())
		}
	}
}

// basedirCollector reads the log's and the projections' counters at
// scrape time. Reads are cheap: atomic counters and a few Pebble gets.
type basedirCollector struct {
	b *basedir

	// Keys added and updated are read from the projections' hourly
	// histogram (the stats page's counters, by receive time); start and
	// base are the hour the collector was made in and that hour's totals
	// then, so the counters start at 0 like the others.
	start                time.Time
	baseAdded, baseUpdtd int64

	logLast, logFirst, logBytes, logAppended, logSyncs *prometheus.Desc
	applied, lag, keys, added, updated, ptree          *prometheus.Desc
	msSent, msFailed, msSkipped, msQueued, msBacklog   *prometheus.Desc
	outcomes                                           *prometheus.Desc
}

func newBasedirCollector(b *basedir) *basedirCollector {
	c := &basedirCollector{
		b:           b,
		start:       time.Now().UTC().Truncate(time.Hour),
		logLast:     prometheus.NewDesc("grapevine_log_last_index", "Index of the last event in the log.", nil, nil),
		logFirst:    prometheus.NewDesc("grapevine_log_first_index", "Index of the first event in the log.", nil, nil),
		logBytes:    prometheus.NewDesc("grapevine_log_bytes", "Size of the log's segment files.", nil, nil),
		logAppended: prometheus.NewDesc("grapevine_log_appended_events_total", "Events appended since the log was opened.", nil, nil),
		logSyncs:    prometheus.NewDesc("grapevine_log_fsyncs_total", "Batches fsynced since the log was opened (group commits).", nil, nil),
		applied:     prometheus.NewDesc("grapevine_projection_applied_index", "Last log index applied to each projection.", []string{"projection"}, nil),
		lag:         prometheus.NewDesc("grapevine_projection_lag_events", "Events in the log not yet applied to each projection.", []string{"projection"}, nil),
		keys:        prometheus.NewDesc("grapevine_keys", "Keys held (the stats page's key count).", nil, nil),
		added:       prometheus.NewDesc("grapevine_keys_added_total", "Keys seen for the first time since the daemon started, all origins.", nil, nil),
		updated:     prometheus.NewDesc("grapevine_keys_updated_total", "Keys that gained packets since the daemon started, all origins.", nil, nil),
		ptree:       prometheus.NewDesc("grapevine_ptree_elements", "Key hashes in the recon prefix tree.", nil, nil),
		msSent:      prometheus.NewDesc("grapevine_mailsync_sent_total", "Mailsync mails handed to sendmail.", nil, nil),
		msFailed:    prometheus.NewDesc("grapevine_mailsync_failed_total", "Mailsync sends that failed.", nil, nil),
		msSkipped:   prometheus.NewDesc("grapevine_mailsync_skipped_total", "Local submissions not mailed because they changed nothing.", nil, nil),
		msQueued:    prometheus.NewDesc("grapevine_mailsync_queued", "Local submissions waiting to be mailed.", nil, nil),
		msBacklog:   prometheus.NewDesc("grapevine_mailsync_backlog_events", "Log index of the newest local submission waiting minus the mailsync cursor.", nil, nil),
		outcomes:    prometheus.NewDesc("grapevine_keys_total", "What applying log events did since the daemon started, by origin (hkp, recon, mail, import, admin) and result (added, updated, unchanged, rejected, refused, deleted).", []string{"origin", "result"}, nil),
	}
	c.baseAdded, c.baseUpdtd, _ = c.keysSinceStart()
	return c
}

func (c *basedirCollector) keysSinceStart() (added, updated int64, err error) {
	bins, err := c.b.store.Histogram("hour", c.start)
	if err != nil {
		return 0, 0, err
	}
	for _, bin := range bins {
		added += bin.New
		updated += bin.Updated
	}
	return added, updated, nil
}

// Describe implements prometheus.Collector.
func (c *basedirCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.logLast, c.logFirst, c.logBytes, c.logAppended, c.logSyncs,
		c.applied, c.lag, c.keys, c.added, c.updated, c.ptree,
		c.msSent, c.msFailed, c.msSkipped, c.msQueued, c.msBacklog, c.outcomes,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A counter that cannot be read
// is reported as an error for that metric; the others are still sent.
func (c *basedirCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	log, store := c.b.log, c.b.store

	last := log.LastIndex()
	gauge(c.logLast, float64(last))
	gauge(c.logFirst, float64(log.FirstIndex()))
	gauge(c.logBytes, float64(log.SizeBytes()))
	ls := log.Stats()
	counter(c.logAppended, float64(ls.Events))
	counter(c.logSyncs, float64(ls.Syncs))

	if applied, err := store.AppliedIndexes(); err != nil {
		ch <- prometheus.NewInvalidMetric(c.applied, err)
	} else {
		for _, p := range projections.Projections {
			a := applied[p]
			gauge(c.applied, float64(a), p)
			lag := uint64(0)
			if last > a {
				lag = uint64(last - a)
			}
			gauge(c.lag, float64(lag), p)
		}
		// The Hockeypuck dataset keeps its own applied index (issue 11).
		hp := store.HockeypuckApplied()
		gauge(c.applied, float64(hp), projections.ProjectionHockeypuck)
		gauge(c.lag, float64(last-min(hp, last)), projections.ProjectionHockeypuck)
	}
	if n, err := store.KeyCount(); err != nil {
		ch <- prometheus.NewInvalidMetric(c.keys, err)
	} else {
		gauge(c.keys, float64(n))
	}
	if added, updated, err := c.keysSinceStart(); err != nil {
		ch <- prometheus.NewInvalidMetric(c.added, err)
	} else {
		counter(c.added, float64(max(added-c.baseAdded, 0)))
		counter(c.updated, float64(max(updated-c.baseUpdtd, 0)))
	}
	gauge(c.ptree, float64(store.PtreeElements()))
	for origin, st := range store.ApplyCounts() {
		o := origin.String()
		for _, r := range []struct {
			result string
			n      int64
		}{{"added", st.Added}, {"updated", st.Updated}, {"unchanged", st.Unchanged}, {"rejected", st.Rejected}, {"refused", st.Refused}, {"deleted", st.Deleted}} {
			ch <- prometheus.MustNewConstMetric(c.outcomes, prometheus.CounterValue, float64(r.n), o, r.result)
		}
	}

	if ms, ok := mailsyncStats(c.b); ok {
		counter(c.msSent, float64(ms.Sent))
		counter(c.msFailed, float64(ms.Failed))
		counter(c.msSkipped, float64(ms.Skipped))
		gauge(c.msQueued, float64(ms.Queued))
		gauge(c.msBacklog, float64(ms.Backlog))
	}
}

// ReconReport counts one recon session (recon.Config.OnReport); a nil
// *metrics counts nothing.
func (m *metrics) ReconReport(rep *recon.Report) {
	if m == nil || rep == nil {
		return
	}
	result := "ok"
	var ce *recon.ConfigError
	switch err := rep.SessionErr; {
	case err == nil:
	case errors.Is(err, recon.ErrIncomplete):
		result = "incomplete"
	case errors.As(err, &ce):
		result = "config"
	case errors.Is(err, recon.ErrProtocol):
		result = "protocol"
	default:
		result = "error"
	}
	m.reconSessions.WithLabelValues(rep.Peer, rep.Role.String(), result).Inc()
	if rep.Session != nil {
		m.reconMissing.WithLabelValues(rep.Peer).Add(float64(len(rep.Session.Missing)))
	}
	f := rep.Fetch
	for _, r := range []struct {
		name string
		n    int
	}{{"added", f.Added}, {"unchanged", f.Unchanged}, {"bad", f.Bad}, {"not_returned", f.NotReturned}, {"failed_requests", f.FailedRequests}} {
		if r.n > 0 {
			m.reconFetched.WithLabelValues(rep.Peer, r.name).Add(float64(r.n))
		}
	}
}
