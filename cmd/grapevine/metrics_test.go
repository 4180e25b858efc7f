package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// sample is one parsed sample: its labels and value (a histogram's
// sample count).
type sample struct {
	labels map[string]string
	value  float64
}

// scrape fetches the daemon's metrics and parses them with the Prometheus
// text parser.
func scrape(t *testing.T, metricsURL string) map[string][]sample {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d", metricsURL, resp.StatusCode)
	}
	var p expfmt.TextParser
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", metricsURL, err)
	}
	out := make(map[string][]sample, len(mfs))
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := sample{labels: map[string]string{}}
			for _, lp := range m.GetLabel() {
				s.labels[lp.GetName()] = lp.GetValue()
			}
			switch {
			case m.Counter != nil:
				s.value = m.Counter.GetValue()
			case m.Gauge != nil:
				s.value = m.Gauge.GetValue()
			case m.Histogram != nil:
				s.value = float64(m.Histogram.GetSampleCount())
			case m.Untyped != nil:
				s.value = m.Untyped.GetValue()
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

// metricValue returns the value of the first sample of family name whose
// labels include labels (name, value pairs), and whether there is one.
func metricValue(mfs map[string][]sample, name string, labels ...string) (float64, bool) {
next:
	for _, s := range mfs[name] {
		for i := 0; i+1 < len(labels); i += 2 {
			if v, ok := s.labels[labels[i]]; !ok || v != labels[i+1] {
				continue next
			}
		}
		return s.value, true
	}
	return 0, false
}

func hkpGet(t *testing.T, base, query string) int {
	t.Helper()
	resp, err := http.Get(base + "/pks/lookup?" + query)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDaemonMetrics runs the daemon with grapevine_metrics_address, uploads
// and looks up keys, and checks the scraped counters.
func TestDaemonMetrics(t *testing.T) {
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base, _ := startDaemon(t, "grapevine_metrics_address: "+metricsAddr)
	metricsURL := "http://" + metricsAddr + "/metrics"

	uploadFixture(t, base, "keys-a.pgp") // 3 new keys: 3 events
	uploadFixture(t, base, "grace.pgp")  // 1 new key
	uploadFixture(t, base, "keys-a.pgp") // nothing new: no event, still 200
	resp, err := http.PostForm(base+"/pks/add", url.Values{"keytext": {"not a key"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	badAddStatus := fmt.Sprint(resp.StatusCode)

	alice := "0x3B03A965A519A6CAE8B09425CED1786732CA2E5C"
	for _, c := range []struct {
		query string
		want  int
	}{
		{"op=get&search=" + alice, 200},
		{"op=get&options=mr&search=" + alice, 200},
		{"op=get&search=0xDEADBEEFDEADBEEF", 404},
		{"op=index&options=mr&search=alice", 200},
		{"op=vindex&search=bob", 200},
		{"op=stats", 200},
		{"op=stats&options=mr", 200},
	} {
		if got := hkpGet(t, base, c.query); got != c.want {
			t.Errorf("%s: status %d, want %d", c.query, got, c.want)
		}
	}
	if resp, err := http.Get(base + "/pks/health"); err == nil {
		resp.Body.Close()
	}

	// Wait for the projections to apply everything (lag 0), then check.
	var mfs map[string][]sample
	deadline := time.Now().Add(10 * time.Second)
	for {
		mfs = scrape(t, metricsURL)
		lag, ok := metricValue(mfs, "grapevine_projection_lag_events", "projection", "keys")
		hpLag, hpOK := metricValue(mfs, "grapevine_projection_lag_events", "projection", "hockeypuck")
		// The mailsync sender starts after HKP answers: wait for it too.
		_, mailsync := metricValue(mfs, "grapevine_mailsync_sent_total")
		if ok && lag == 0 && hpOK && hpLag == 0 && mailsync {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projection lag still %v (found %v) after 10 s", lag, ok)
		}
		time.Sleep(20 * time.Millisecond)
	}

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"grapevine_http_requests_total", []string{"op", "add", "status", "200"}, 3},
		{"grapevine_http_requests_total", []string{"op", "add", "status", badAddStatus}, 1},
		{"grapevine_http_requests_total", []string{"op", "get", "status", "200"}, 2},
		{"grapevine_http_requests_total", []string{"op", "get", "status", "404"}, 1},
		{"grapevine_http_requests_total", []string{"op", "index", "status", "200"}, 1},
		{"grapevine_http_requests_total", []string{"op", "vindex", "status", "200"}, 1},
		{"grapevine_http_requests_total", []string{"op", "stats", "status", "200"}, 2},
		{"grapevine_http_request_duration_seconds", []string{"op", "get"}, 3},
		{"grapevine_http_request_duration_seconds", []string{"op", "add"}, 4},
		{"grapevine_http_requests_in_flight", nil, 0},
		{"grapevine_log_events_total", []string{"origin", "hkp", "kind", "key_submitted"}, 4},
		{"grapevine_log_events_total", []string{"origin", "recon", "kind", "key_submitted"}, 0},
		{"grapevine_log_last_index", nil, 4},
		{"grapevine_log_appended_events_total", nil, 4},
		{"grapevine_keys", nil, 4},
		{"grapevine_keys_added_total", nil, 4},
		{"grapevine_keys_updated_total", nil, 0},
		{"grapevine_keys_total", []string{"origin", "hkp", "result", "added"}, 4},
		{"grapevine_keys_total", []string{"origin", "hkp", "result", "rejected"}, 0},
		{"grapevine_ptree_elements", nil, 4},
		{"grapevine_projection_applied_index", []string{"projection", "keys"}, 4},
		{"grapevine_projection_applied_index", []string{"projection", "hockeypuck"}, 4},
		{"grapevine_build_info", []string{"version", version}, 1},
	} {
		got, ok := metricValue(mfs, c.name, c.labels...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// The health check and anything unknown are "other"; /metrics is not
	// an HKP op.
	if got, _ := metricValue(mfs, "grapevine_http_requests_total", "op", "other"); got < 1 {
		t.Errorf("op=other requests = %v, want >= 1 (the start-up health checks)", got)
	}
	if len(mfs["grapevine_projection_lag_events"]) < 2 {
		t.Errorf("lag of %d projections, want one per projection", len(mfs["grapevine_projection_lag_events"]))
	}
	for _, s := range mfs["grapevine_projection_lag_events"] {
		if s.value != 0 {
			t.Errorf("grapevine_projection_lag_events%v = %v after settling, want 0", s.labels, s.value)
		}
	}
	// Runtime and process collectors, for leak checks.
	for _, name := range []string{"go_goroutines", "process_open_fds", "process_resident_memory_bytes"} {
		if v, ok := metricValue(mfs, name); !ok || v <= 0 {
			t.Errorf("%s = %v (present %v), want > 0", name, v, ok)
		}
	}
	if _, ok := metricValue(mfs, "grapevine_mailsync_sent_total"); !ok {
		t.Errorf("grapevine_mailsync_sent_total missing (mailsync runs by default)")
	}

	// Metrics are served on the metrics address only, not on the HKP port.
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 || bytes.Contains(body, []byte("grapevine_http_requests_total")) {
		t.Errorf("HKP port answers /metrics: %d\n%s", resp.StatusCode, body)
	}
}

// TestDaemonMetricsOff: without grapevine_metrics_address nothing listens
// and the daemon serves as before.
func TestDaemonMetricsOff(t *testing.T) {
	base, dir := startDaemon(t)
	uploadFixture(t, base, "grace.pgp")
	logText, err := os.ReadFile(dir + "/" + daemonLogFile)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(logText, []byte("metrics listening")) {
		t.Errorf("metrics listener started without grapevine_metrics_address:\n%s", logText)
	}
}

func TestHKPOp(t *testing.T) {
	for _, c := range []struct{ target, want string }{
		{"/pks/lookup?op=get&search=0x1234", "get"},
		{"/pks/lookup?op=GET&search=0x1234", "get"},
		{"/pks/lookup?search=x&op=index", "index"},
		{"/pks/lookup?op=vindex&search=x", "vindex"},
		{"/pks/lookup?op=hget&search=00", "hget"},
		{"/pks/lookup?op=stats", "stats"},
		{"/pks/stats", "stats"},
		{"/pks/lookup?op=x-whatever", "other"},
		{"/pks/lookup?op=get&op=index", "get"},
		{"/pks/lookup?search=x&%6Fp=G%45T", "get"},
		{"/pks/lookup?op=%zz&op=get", "get"},
		{"/pks/lookup?op;x=1&op=vindex", "vindex"},
		{"/pks/lookup?op=", "other"},
		{"/pks/lookup?op=getx", "other"},
		{"/pks/lookup?opx=get", "other"},
		{"/pks/lookup", "other"},
		{"/pks/add", "add"},
		{"/pks/hashquery", "hashquery"},
		{"/pks/health", "other"},
		{"/", "other"},
		{"/index.html", "other"},
		{"/pks/v2/certs/by-keyid/0123456789ABCDEF", "v2"},
		{"/pks/v2/certs", "v2"},
		{"/vks/v1/by-email/a@b.example", "vks"},
		{"/pks/v2", "other"},
	} {
		r, err := http.NewRequest("GET", "http://keys.test"+c.target, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := hkpOp(r); got != c.want {
			t.Errorf("hkpOp(%s) = %q, want %q", c.target, got, c.want)
		}
	}
}

// TestDaemonPprof: GRAPEVINE_PPROF puts the profiling endpoints on the
// metrics listener; without it they are not there, and never on HKP.
func TestDaemonPprof(t *testing.T) {
	get := func(u string) int {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	t.Run("off", func(t *testing.T) {
		metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		startDaemon(t, "grapevine_metrics_address: "+metricsAddr)
		if got := get("http://" + metricsAddr + "/debug/pprof/goroutine?debug=1"); got != http.StatusNotFound {
			t.Errorf("pprof without %s: status %d, want 404", pprofEnv, got)
		}
	})
	t.Run("on", func(t *testing.T) {
		t.Setenv(pprofEnv, "1")
		metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		base, _ := startDaemon(t, "grapevine_metrics_address: "+metricsAddr)
		for _, p := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/block?debug=1", "/debug/pprof/mutex?debug=1"} {
			if got := get("http://" + metricsAddr + p); got != http.StatusOK {
				t.Errorf("%s with %s: status %d, want 200", p, pprofEnv, got)
			}
		}
		if got := get(base + "/debug/pprof/"); got == http.StatusOK {
			t.Errorf("HKP port answers /debug/pprof/ with 200")
		}
	})
}
