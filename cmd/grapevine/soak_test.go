package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
	"github.com/grapevine-keyserver/grapevine/testdata/testenv"
)

// soakCorpus returns a corpus file of n keys. The 100k-key file of the long
// variant takes minutes to generate, so it is kept in the temp directory
// under a name that says what it holds (the corpus is deterministic) and
// reused; GRAPEVINE_SOAK_CORPUS names another file to use instead.
func soakCorpus(t *testing.T, n int, mix corpus.Mix, name string) string {
	t.Helper()
	if p := os.Getenv("GRAPEVINE_SOAK_CORPUS"); p != "" && soak() {
		return p
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("grapevine-soak-%s-%d-seed31.pgp", name, n))
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		return path
	}
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	f, err := os.Create(tmp)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	bw := bufio.NewWriterSize(f, 1<<20)
	_, err = corpus.Generate(context.Background(), bw, corpus.Options{N: n, Seed: 31, Mix: mix})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d keys in %v: %s", n, time.Since(start).Round(time.Second), path)
	return path
}

// soakTargets are what the load asks for: fingerprints, e-mail addresses
// and the binary of some keys of the store.
type soakTargets struct {
	fprs, emails []string
	keys         [][]byte
}

func readSoakTargets(t *testing.T, path string) soakTargets {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st soakTargets
	r := pgpkey.NewReader(bufio.NewReaderSize(f, 1<<20))
	for {
		raw, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			continue
		}
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			continue
		}
		st.fprs = append(st.fprs, k.Fingerprint().String())
		for _, g := range k.UIDs {
			uid := string(g.Packet.Body)
			if i, j := strings.IndexByte(uid, '<'), strings.IndexByte(uid, '>'); i >= 0 && j > i+1 {
				st.emails = append(st.emails, uid[i+1:j])
				break
			}
		}
		if len(st.keys) < 2000 && len(raw.Raw) < 64<<10 {
			st.keys = append(st.keys, raw.Raw)
		}
	}
	if len(st.fprs) == 0 || len(st.emails) == 0 {
		t.Fatalf("%s: no keys or no e-mail addresses", path)
	}
	return st
}

// processMetrics reads the daemon's own gauges from its Prometheus
// endpoint.
type processMetrics struct {
	goroutines, fds int
	rss             int64
	lag             float64 // events behind, summed over the projections
}

func readProcessMetrics(url string) (processMetrics, error) {
	var m processMetrics
	resp, err := http.Get(url)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	found := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			m.goroutines, found = int(v), found+1
		case "process_open_fds":
			m.fds, found = int(v), found+1
		case "process_resident_memory_bytes":
			m.rss, found = int64(v), found+1
		}
		if strings.HasPrefix(name, "grapevine_projection_lag_events{") {
			m.lag += v
		}
	}
	if found != 3 {
		return m, fmt.Errorf("metrics: found %d of go_goroutines, process_open_fds, process_resident_memory_bytes", found)
	}
	return m, sc.Err()
}

// TestSoak runs mixed HKP load (get, index, vindex, search by e-mail,
// misses, uploads of new and of stored keys) from 64 clients against a
// daemon (a child process) holding a generated store, and checks through
// its metrics endpoint that it stays healthy: no 5xx, no transport error,
// RSS bounded (the last third of the run peaks at most 25% + 64 MiB above
// the first third), and goroutines and open files back to their level
// before the load once it stops. Default: 3,000 Ed25519 keys for 20 s;
// GRAPEVINE_SOAK=1 (make soak): 100,000 keys of the default mix for 10
// minutes.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: not with -short")
	}
	n, dur, clients := 3000, 20*time.Second, 64
	mix := corpus.Mix{Ed25519: 1, RSA2048: 1, P384: 0.3, ExpiringKeys: 0.15, RevokedUserIDs: 0.1, Certified: 0.5, MaxCertifications: 50}
	name := "ed25519"
	if soak() {
		n, dur, mix, name = 100_000, 10*time.Minute, corpus.DefaultMix(), "default"
	}
	path := soakCorpus(t, n, mix, name)
	targets := readSoakTargets(t, path)

	metricsPort := testenv.FreePort(t)
	d := newChildDaemon(t, fmt.Sprintf("grapevine_metrics_address: 127.0.0.1:%d", metricsPort))
	start := time.Now()
	mustRun(t, "import", "--basedir", d.dir, path)
	t.Logf("store of %d keys built in %v", len(targets.fprs), time.Since(start).Round(time.Millisecond))
	d.start()
	d.waitServing()
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	// After an import, serve brings the Hockeypuck dataset up to the log in
	// the background (a signature check per self-signature): that warm-up
	// would count as growth. Start the load once every projection is level.
	before, err := readProcessMetrics(metricsURL)
	for deadline := time.Now().Add(5 * time.Minute); err == nil && before.lag > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		before, err = readProcessMetrics(metricsURL)
	}
	if err != nil {
		t.Fatal(err)
	}
	if before.lag > 0 {
		t.Fatalf("the projections are still %v events behind after 5 minutes", before.lag)
	}

	type opStats struct{ n, s2xx, s4xx, s5xx, errs atomic.Int64 }
	ops := []string{"get", "index", "vindex", "email", "miss", "add-new", "add-stored", "stats"}
	counts := make(map[string]*opStats, len(ops))
	for _, o := range ops {
		counts[o] = &opStats{}
	}
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []string
		newKeys  atomic.Int64
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for !stop.Load() {
				var op string
				var req *http.Request
				switch p := rng.Intn(100); {
				case p < 35:
					op = "get"
					req, _ = http.NewRequest("GET", d.url+"/pks/lookup?op=get&options=mr&search=0x"+targets.fprs[rng.Intn(len(targets.fprs))], nil)
				case p < 55:
					op = "index"
					fpr := targets.fprs[rng.Intn(len(targets.fprs))]
					req, _ = http.NewRequest("GET", d.url+"/pks/lookup?op=index&options=mr&search=0x"+fpr[len(fpr)-16:], nil)
				case p < 65:
					op = "vindex"
					req, _ = http.NewRequest("GET", d.url+"/pks/lookup?op=vindex&fingerprint=on&search=0x"+targets.fprs[rng.Intn(len(targets.fprs))], nil)
				case p < 80:
					op = "email"
					req, _ = http.NewRequest("GET", d.url+"/pks/lookup?op=index&options=mr&exact=on&search="+targets.emails[rng.Intn(len(targets.emails))], nil)
				case p < 85:
					op = "miss"
					req, _ = http.NewRequest("GET", fmt.Sprintf("%s/pks/lookup?op=get&search=0x%016X", d.url, rng.Uint64()), nil)
				case p < 92:
					op = "add-new"
					key, _ := newUploadKey(t, int(newKeys.Add(1))+1_000_000)
					if key == nil {
						return
					}
					req, _ = http.NewRequest("POST", d.url+"/pks/add", bytes.NewReader(key))
					req.Header.Set("Content-Type", "application/pgp-keys")
				case p < 97:
					op = "add-stored"
					req, _ = http.NewRequest("POST", d.url+"/pks/add", bytes.NewReader(targets.keys[rng.Intn(len(targets.keys))]))
					req.Header.Set("Content-Type", "application/pgp-keys")
				default:
					op = "stats"
					req, _ = http.NewRequest("GET", d.url+"/pks/lookup?op=stats", nil)
				}
				st := counts[op]
				st.n.Add(1)
				resp, err := client.Do(req)
				if err != nil {
					st.errs.Add(1)
					fail("%s: %v", op, err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode >= 500:
					st.s5xx.Add(1)
					fail("%s %s: %d %.200s", op, req.URL.RawQuery, resp.StatusCode, body)
				case resp.StatusCode >= 400:
					st.s4xx.Add(1)
					if op != "miss" && op != "email" {
						fail("%s %s: %d %.200s", op, req.URL.RawQuery, resp.StatusCode, body)
					}
				default:
					st.s2xx.Add(1)
				}
			}
		}(int64(c) + time.Now().UnixNano())
	}

	// Sample the daemon's gauges while the load runs.
	var samples []processMetrics
	tick := time.NewTicker(max(dur/60, 500*time.Millisecond))
	end := time.After(dur)
sampling:
	for {
		select {
		case <-tick.C:
			m, err := readProcessMetrics(metricsURL)
			if err != nil {
				t.Errorf("metrics during the load: %v", err)
				break sampling
			}
			samples = append(samples, m)
		case <-end:
			break sampling
		case err := <-d.done:
			d.cmd = nil
			t.Fatalf("the daemon exited under load: %v\n%s", err, d.stderr.String())
		}
	}
	tick.Stop()
	stop.Store(true)
	wg.Wait()
	tr.CloseIdleConnections()

	var total, s5xx, errs int64
	var line []string
	for _, o := range ops {
		st := counts[o]
		total += st.n.Load()
		s5xx += st.s5xx.Load()
		errs += st.errs.Load()
		line = append(line, fmt.Sprintf("%s %d (2xx %d, 4xx %d)", o, st.n.Load(), st.s2xx.Load(), st.s4xx.Load()))
	}
	t.Logf("%d requests in %v from %d clients, %.0f/s: %s", total, dur, clients, float64(total)/dur.Seconds(), strings.Join(line, "; "))
	if s5xx > 0 || errs > 0 || len(failures) > 0 {
		t.Errorf("%d answers 5xx, %d transport errors; first failures:\n%s", s5xx, errs, strings.Join(failures, "\n"))
	}

	// RSS: the last third of the run peaks at most 25% + 64 MiB above the
	// first third; a leak grows it steadily.
	if len(samples) >= 6 {
		third := len(samples) / 3
		var first, last int64
		maxG, maxFD := 0, 0
		for i, m := range samples {
			if i < third {
				first = max(first, m.rss)
			}
			if i >= len(samples)-third {
				last = max(last, m.rss)
			}
			maxG, maxFD = max(maxG, m.goroutines), max(maxFD, m.fds)
		}
		t.Logf("RSS peak %d MiB in the first third, %d MiB in the last; goroutines ≤ %d, open files ≤ %d under load (before: %d goroutines, %d files, %d MiB)",
			first>>20, last>>20, maxG, maxFD, before.goroutines, before.fds, before.rss>>20)
		if last > first+first/4+64<<20 {
			t.Errorf("RSS grew from a peak of %d MiB to %d MiB over the run", first>>20, last>>20)
		}
	} else {
		t.Errorf("only %d metric samples", len(samples))
	}

	// Goroutines and files come back once the clients are gone: the
	// server's per-connection goroutines end when the connections close.
	var after processMetrics
	deadline := time.Now().Add(30 * time.Second)
	for {
		after, err = readProcessMetrics(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		if after.goroutines <= before.goroutines+10 && after.fds <= before.fds+10 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after the load: %d goroutines (before %d), %d open files (before %d): a leak",
				after.goroutines, before.goroutines, after.fds, before.fds)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("after the load: %d goroutines, %d open files, %d MiB RSS", after.goroutines, after.fds, after.rss>>20)

	// Everything uploaded is there, once.
	d.stop()
	st := statsOf(t, d.dir)
	if st["applied_keys"] != st["log_offset"] {
		t.Errorf("applied_keys %s, log_offset %s", st["applied_keys"], st["log_offset"])
	}
	if got, want := st["keys"], strconv.Itoa(len(targets.fprs)+int(counts["add-new"].s2xx.Load())); got != want {
		t.Errorf("store holds %s keys, want %s (the store plus every new key answered 200)", got, want)
	}
}
