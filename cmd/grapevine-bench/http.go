package main

// The HTTP rows: grapevine serve and sks db run side by side on loopback,
// on the stores the last run built, and answer the same lookups (wrk) and
// uploads (Go clients).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

// server is one keyserver under test: a process we started, and where it
// answers HKP.
type server struct {
	name string
	cmd  *exec.Cmd
	base string // http://127.0.0.1:PORT
	// metrics is where a profiled grapevine serves /debug/pprof/, or "".
	metrics string
	done    chan struct{}
	log     *os.File
}

// stop ends the process we started, by its PID: SIGTERM (both servers
// close their databases cleanly on it), SIGKILL after 20 s.
func (s *server) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
	default:
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			fmt.Fprintf(os.Stderr, "%s (pid %d) did not stop within 20 s; killing it\n", s.name, s.cmd.Process.Pid)
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.log != nil {
		s.log.Close()
	}
}

// freePorts returns n free TCP ports on 127.0.0.1, distinct from every
// port it returned before in this process. They are taken below the
// kernel's ephemeral range (ip_local_port_range, 32768 and up by default):
// a port the kernel picked for a listener on port 0 and that was then
// closed could be given to an outgoing connection (recon's hashqueries,
// wrk) before the server meant for it binds it — a 10,000-difference
// recon run failed with "bind: address already in use" that way.
func freePorts(n int) ([]int, error) {
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 20000 {
			return nil, fmt.Errorf("no free port on 127.0.0.1 in %d..%d", portBase, portLimit)
		}
		p := int(nextPort.Add(1))
		if p >= portLimit {
			// Wrap (a very long run): ports returned long ago are free again.
			nextPort.CompareAndSwap(int32(p), portBase)
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // taken by someone else
		}
		ln.Close()
		ports = append(ports, p)
	}
	return ports, nil
}

// The ports freePorts hands out, below the default ephemeral range.
const portBase, portLimit = 20000, 32000

// nextPort is the last port freePorts considered; it starts at a random
// place so that two benches at once seldom try the same ports.
var nextPort = func() *atomic.Int32 {
	var p atomic.Int32
	p.Store(int32(portBase + rand.IntN(portLimit-portBase)))
	return &p
}()

// startServer starts cmd (its output going to logPath) and waits until
// GET /pks/lookup?op=stats answers 200 on hkpPort.
func startServer(ctx context.Context, name string, cmd *exec.Cmd, logPath string, hkpPort int) (*server, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Stdin = nil
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", hkpPort), done: make(chan struct{}), log: lf}
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(180 * time.Second)
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := client.Get(s.base + "/pks/lookup?op=stats")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.done:
			lf.Close()
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s exited before answering HKP: %v\n%s", name, cmd.ProcessState, tail(string(b), 2000))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s did not answer op=stats on port %d within 180 s (log: %s)", name, hkpPort, logPath)
		}
	}
}

// startGrapevine runs grapevine serve on the imported basedir, recon
// listening but never gossiping.
func startGrapevine(ctx context.Context, bin, dir string) (*server, error) {
	return startGrapevineProfiled(ctx, bin, dir, filepath.Join(filepath.Dir(dir), "gv-serve.log"), false)
}

// startGrapevineProfiled is startGrapevine; with profile the daemon also
// serves /metrics and /debug/pprof/ (GRAPEVINE_PPROF) on a free loopback
// port, which the server's metrics field then names.
func startGrapevineProfiled(ctx context.Context, bin, dir, logPath string, profile bool) (*server, error) {
	p, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("hostname: 127.0.0.254\nhkp_address: 127.0.0.1\nhkp_port: %d\nrecon_address: 127.0.0.1\nrecon_port: %d\ndontgossip:\n", p[0], p[1])
	if profile {
		conf += fmt.Sprintf("grapevine_metrics_address: 127.0.0.1:%d\n", p[2])
	}
	if err := os.WriteFile(filepath.Join(dir, "sksconf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	abs, _ := filepath.Abs(bin)
	cmd := exec.Command(abs, "serve", "--basedir", dir)
	cmd.Dir = dir
	if profile {
		cmd.Env = append(os.Environ(), "GRAPEVINE_PPROF=1")
	}
	s, err := startServer(ctx, "grapevine serve", cmd, logPath, p[0])
	if err == nil && profile {
		s.metrics = fmt.Sprintf("http://127.0.0.1:%d", p[2])
	}
	return s, err
}

// startSKS runs sks db on the built SKS basedir (sks-peer.md: the sksconf
// in the file wins over the command line; hostname must not be the bind
// address). sks recon is not started: lookups and adds are sks db's.
func startSKS(ctx context.Context, bin, dir string) (*server, error) {
	p, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("hostname: 127.0.0.254\nnodename: grapevine-bench\nhkp_address: 127.0.0.1\nhkp_port: %d\nrecon_address: 127.0.0.1\nrecon_port: %d\ndisable_mailsync:\nsendmail_cmd: /bin/true\ndontgossip:\n", p[0], p[1])
	if err := os.WriteFile(filepath.Join(dir, "etc", "sks", "sksconf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "db", "-basedir", dir, "-stdoutlog")
	cmd.Dir = dir
	return startServer(ctx, "sks db", cmd, filepath.Join(filepath.Dir(dir), "sks-db.log"), p[0])
}

// queries are the lookup paths, one list per kind, sampled from the corpus.
type queries struct {
	fingerprints, emails, words []string
	// allFingerprints is a get path for every sampled-from key.
	allFingerprints []string
}

var emailRE = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`)

// sampleQueries reads the dump files and picks about n fingerprints,
// e-mail addresses and words, spread evenly over the corpus. Only keys SKS
// can hold (SKSCompatible) count; words are ASCII, at least 4 letters and
// carried by 1 to 50 keys, so that both servers answer them under their
// 500-match limit and split them alike.
func sampleQueries(dumpDir string, n int) (queries, error) {
	files, err := filepath.Glob(filepath.Join(dumpDir, corpus.DumpPrefix+"-*.pgp"))
	if err != nil || len(files) == 0 {
		return queries{}, fmt.Errorf("no dump files in %s", dumpDir)
	}
	sort.Strings(files)
	var fprs, emails []string
	wordKeys := make(map[string]int)
	seenEmail := make(map[string]bool)
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return queries{}, err
		}
		r := pgpkey.NewReader(fh)
		for {
			raw, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var pe *pgpkey.ParseError
				if errors.As(err, &pe) {
					continue
				}
				fh.Close()
				return queries{}, err
			}
			k, err := pgpkey.Canonicalize(raw.Packets)
			if err != nil || !k.SKSCompatible() {
				continue
			}
			fprs = append(fprs, "0x"+k.Fingerprint().String())
			words := make(map[string]bool)
			for _, uid := range k.UserIDs() {
				if e := emailRE.FindString(uid); e != "" && !seenEmail[strings.ToLower(e)] {
					seenEmail[strings.ToLower(e)] = true
					emails = append(emails, e)
				}
				for _, w := range asciiWords(uid) {
					words[w] = true
				}
			}
			for w := range words {
				wordKeys[w]++
			}
		}
		fh.Close()
	}
	var words []string
	for w, c := range wordKeys {
		if len(w) >= 4 && c <= 50 {
			words = append(words, w)
		}
	}
	sort.Strings(words)
	// Hash order rather than sorted order, so that a thread's run of
	// requests does not walk the alphabet.
	sort.Slice(words, func(i, j int) bool { return mix(words[i]) < mix(words[j]) })
	pick := func(s []string, prefix string) []string {
		step := max(1, len(s)/n)
		var out []string
		for i := 0; i < len(s) && len(out) < n; i += step {
			out = append(out, prefix+url.QueryEscape(s[i]))
		}
		return out
	}
	q := queries{
		fingerprints: pick(fprs, "/pks/lookup?op=get&options=mr&search="),
		emails:       pick(emails, "/pks/lookup?op=index&options=mr&search="),
		words:        pick(words, "/pks/lookup?op=index&options=mr&search="),
	}
	for _, f := range fprs {
		q.allFingerprints = append(q.allFingerprints, "/pks/lookup?op=get&options=mr&search="+url.QueryEscape(f))
	}
	if len(q.fingerprints) == 0 || len(q.emails) == 0 || len(q.words) == 0 {
		return q, errors.New("corpus too small to sample queries from")
	}
	return q, nil
}

// asciiWords splits s into lower-case runs of ASCII letters, the part of
// the word syntax on which SKS and grapevine agree (projections.Words).
func asciiWords(s string) []string {
	var out []string
	start := -1
	for i := 0; i <= len(s); i++ {
		letter := i < len(s) && (s[i]|0x20 >= 'a' && s[i]|0x20 <= 'z')
		if i < len(s) && s[i] >= 0x80 {
			start = -2 // a non-ASCII byte spoils the word
			continue
		}
		if letter {
			if start == -1 {
				start = i
			}
			continue
		}
		if start >= 0 {
			out = append(out, strings.ToLower(s[start:i]))
		}
		start = -1
	}
	return out
}

func mix(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// wrkResult is one wrk run.
type wrkResult struct {
	rps           float64
	p50, p99, max time.Duration
	p999          time.Duration // 99.9th percentile (the script's done line)
	errors        int64
	requests      int64
}

const wrkScript = `local paths = {}
for line in io.lines(%q) do paths[#paths + 1] = line end
local n = 0
function setup(thread) n = n + 1; thread:set("id", n) end
local i = 0
function init(args) i = ((id or 1) * 7919) %% #paths end
function request()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
function done(summary, latency, requests)
  io.write(string.format("tail latency (us): p99.9 %%d max %%d\n", latency:percentile(99.9), latency.max))
end
`

// settle waits (at most settleLimit) until no server uses CPU, so that a
// row measures one server without the other still working off the row
// before: SKS answers one request at a time and keeps answering requests
// queued at 64 connections after wrk has gone. It says on stderr how long
// it waited, when it did.
func settle(ctx context.Context, servers []*server) {
	start := time.Now()
	quiet := 0
	prev := cpuTime(servers)
	for quiet < settleQuietPolls && time.Since(start) < settleLimit && ctx.Err() == nil {
		time.Sleep(settlePoll)
		cur := cpuTime(servers)
		if cur-prev <= settleIdleCPU {
			quiet++
		} else {
			quiet = 0
		}
		prev = cur
	}
	if waited := time.Since(start); waited > time.Duration(settleQuietPolls+1)*settlePoll {
		fmt.Fprintf(os.Stderr, "      waited %v for the servers to go idle\n", waited.Round(10*time.Millisecond))
	}
}

// A server is idle when it used at most 10 ms of CPU (one clock tick) in
// each of 3 polls of 200 ms.
const (
	settlePoll       = 200 * time.Millisecond
	settleQuietPolls = 3
	settleIdleCPU    = 10 * time.Millisecond
	settleLimit      = 60 * time.Second
)

// runWrk runs wrk against base with the paths in pathsFile.
func runWrk(ctx context.Context, work, base string, paths []string, conns int, d time.Duration) (wrkResult, error) {
	pf := filepath.Join(work, "wrk-paths.txt")
	if err := os.WriteFile(pf, []byte(strings.Join(paths, "\n")+"\n"), 0o644); err != nil {
		return wrkResult{}, err
	}
	sf := filepath.Join(work, "wrk.lua")
	if err := os.WriteFile(sf, []byte(fmt.Sprintf(wrkScript, pf)), 0o644); err != nil {
		return wrkResult{}, err
	}
	threads := min(conns, 2)
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns),
		"-d", fmt.Sprintf("%ds", int(d.Seconds())), "--timeout", "60s", "--latency", "-s", sf, base)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return wrkResult{}, ctx.Err()
		}
		return wrkResult{}, fmt.Errorf("wrk: %v\n%s%s", err, out.String(), stderr.String())
	}
	return parseWrk(out.String())
}

var (
	wrkLatencyRE = regexp.MustCompile(`(?m)^\s+Latency\s+(\S+)\s+(\S+)\s+(\S+)`)
	wrkPctRE     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+(\S+)`)
	wrkRPSRE     = regexp.MustCompile(`(?m)^Requests/sec:\s+([\d.]+)`)
	wrkReqRE     = regexp.MustCompile(`(?m)^\s+(\d+) requests in`)
	wrkSockRE    = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xxRE  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkTailRE    = regexp.MustCompile(`(?m)^tail latency \(us\): p99\.9 (\d+) max (\d+)`)
)

// parseWrk reads wrk --latency output. Errors are socket errors plus
// responses with a status over 399 (what wrk counts as Non-2xx or 3xx).
func parseWrk(s string) (wrkResult, error) {
	var r wrkResult
	m := wrkLatencyRE.FindStringSubmatch(s)
	rp := wrkRPSRE.FindStringSubmatch(s)
	if m == nil || rp == nil {
		return r, fmt.Errorf("cannot parse wrk output:\n%s", s)
	}
	r.max = parseWrkDuration(m[3])
	r.rps, _ = strconv.ParseFloat(rp[1], 64)
	for _, p := range wrkPctRE.FindAllStringSubmatch(s, -1) {
		if p[1] == "50" {
			r.p50 = parseWrkDuration(p[2])
		} else {
			r.p99 = parseWrkDuration(p[2])
		}
	}
	if q := wrkReqRE.FindStringSubmatch(s); q != nil {
		r.requests, _ = strconv.ParseInt(q[1], 10, 64)
	}
	if e := wrkSockRE.FindStringSubmatch(s); e != nil {
		for _, x := range e[1:] {
			n, _ := strconv.ParseInt(x, 10, 64)
			r.errors += n
		}
	}
	if e := wrkNon2xxRE.FindStringSubmatch(s); e != nil {
		n, _ := strconv.ParseInt(e[1], 10, 64)
		r.errors += n
	}
	if t := wrkTailRE.FindStringSubmatch(s); t != nil {
		// Whole microseconds: more exact than the rounded Latency line.
		p, _ := strconv.ParseInt(t[1], 10, 64)
		m, _ := strconv.ParseInt(t[2], 10, 64)
		r.p999, r.max = time.Duration(p)*time.Microsecond, time.Duration(m)*time.Microsecond
	}
	return r, nil
}

// parseWrkDuration parses wrk's "1.23ms", "456.00us", "2.01s", "1.50m".
func parseWrkDuration(s string) time.Duration {
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		return 0
	}
	v, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0
	}
	unit := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}[s[i:]]
	return time.Duration(v * unit)
}

// httpRows starts both servers on the stores of the last run, measures
// lookups and uploads, stops the servers and returns the rows.
func httpRows(ctx context.Context, c config, gvDir, skDir, dumpDir string) (rows []row, err error) {
	fmt.Fprintf(os.Stderr, "http: sampling queries from the corpus\n")
	q, err := sampleQueries(dumpDir, 1000)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "http: generating the upload corpus (%d keys, seed %d)\n", c.uploadKeys, c.seed+1000)
	var buf bytes.Buffer
	if _, err := corpus.Generate(ctx, &buf, corpus.Options{N: c.uploadKeys, Seed: c.seed + 1000}); err != nil {
		return nil, fmt.Errorf("generate upload corpus: %w", err)
	}
	bodies, err := corpus.UploadBodies(buf.Bytes())
	if err != nil {
		return nil, err
	}

	gv, err := startGrapevine(ctx, c.grapevine, gvDir)
	if err != nil {
		return nil, err
	}
	defer gv.stop()
	// Normally level already (hockeypuckCatchUp ran first); never measure
	// lookups while it catches up.
	if _, err := waitApplied(ctx, c.grapevine, gvDir, 15*time.Minute, time.Second); err != nil {
		return nil, err
	}
	sk, err := startSKS(ctx, c.sks, skDir)
	if err != nil {
		return nil, err
	}
	defer sk.stop()
	fmt.Fprintf(os.Stderr, "http: grapevine serve pid %d at %s, sks db pid %d at %s\n", gv.cmd.Process.Pid, gv.base, sk.cmd.Process.Pid, sk.base)

	servers := []*server{gv, sk}
	var stall [2]time.Duration
	kinds := []struct {
		name  string
		paths []string
	}{
		{"get by fingerprint", q.fingerprints},
		{"index by e-mail", q.emails},
		{"index by word", q.words},
	}
	for _, k := range kinds {
		for _, conns := range []int{1, 16, 64} {
			var res [2]wrkResult
			for i, s := range servers {
				fmt.Fprintf(os.Stderr, "http: %s, %d conns, %s (%d paths, %s)\n", k.name, conns, s.name, len(k.paths), c.duration)
				settle(ctx, servers)
				r, err := runWrk(ctx, filepath.Dir(gvDir), s.base, k.paths, conns, c.duration)
				if err != nil {
					return nil, err
				}
				res[i] = r
				stall[i] = max(stall[i], r.max)
				fmt.Fprintf(os.Stderr, "      %.0f req/s, p50 %v, p99 %v, max %v, %d errors of %d\n", r.rps, r.p50, r.p99, r.max, r.errors, r.requests)
			}
			name := fmt.Sprintf("HTTP %s, %d conn", k.name, conns)
			rows = append(rows,
				row{name: name + " (req/s)", grapevine: res[0].rps, sk: res[1].rps, higherBetter: true},
				row{name: name + " p50 (ms)", grapevine: ms(res[0].p50), sk: ms(res[1].p50), prec: 2},
				row{name: name + " p99 (ms)", grapevine: ms(res[0].p99), sk: ms(res[1].p99), prec: 2},
				row{name: name + " errors (of requests)", text: [2]string{
					fmt.Sprintf("%d of %d", res[0].errors, res[0].requests),
					fmt.Sprintf("%d of %d", res[1].errors, res[1].requests)}},
			)
		}
	}
	if c.getAll {
		// Every key once before any repeats: what a cache of recent
		// answers cannot serve.
		var res [2]wrkResult
		for i, s := range servers {
			fmt.Fprintf(os.Stderr, "http: get by fingerprint, every key, 64 conns, %s (%d paths, %s)\n", s.name, len(q.allFingerprints), c.duration)
			settle(ctx, servers)
			r, err := runWrk(ctx, filepath.Dir(gvDir), s.base, q.allFingerprints, 64, c.duration)
			if err != nil {
				return nil, err
			}
			res[i] = r
			stall[i] = max(stall[i], r.max)
			fmt.Fprintf(os.Stderr, "      %.0f req/s, p50 %v, p99 %v, max %v, %d errors of %d\n", r.rps, r.p50, r.p99, r.max, r.errors, r.requests)
		}
		name := "HTTP get by fingerprint, all keys cycled, 64 conn"
		rows = append(rows,
			row{name: name + " (req/s)", grapevine: res[0].rps, sk: res[1].rps, higherBetter: true},
			row{name: name + " p99 (ms)", grapevine: ms(res[0].p99), sk: ms(res[1].p99), prec: 2},
		)
	}
	var up [2]corpus.UploadResult
	var gvApplied time.Duration
	for i, s := range servers {
		fmt.Fprintf(os.Stderr, "http: /pks/add of %d keys from %d clients to %s\n", len(bodies), c.uploadClients, s.name)
		// As before every wrk row: a server still busy with the row
		// before would be measured beside that work.
		settle(ctx, servers)
		if d, err := dirtyPages(); err == nil {
			// Other files' data still to be written delays the log's
			// fsyncs (docs/benchmarks.md, "Uploads (issue 4)"): say how
			// much there was.
			fmt.Fprintf(os.Stderr, "      dirty or under writeback before the burst: %d MiB\n", d>>20)
		}
		upCtx, cancel := context.WithTimeout(ctx, c.uploadLimit)
		up[i] = corpus.Upload(upCtx, s.base, bodies, c.uploadClients)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		stall[i] = max(stall[i], up[i].Max)
		fmt.Fprintf(os.Stderr, "      %d keys in %v (%.1f keys/s), %d errors, longest %v\n", up[i].Keys, up[i].Wall.Round(time.Millisecond), rate(up[i].Keys, up[i].Wall), up[i].Errors, up[i].Max)
		fmt.Fprintf(os.Stderr, "      answers per 250 ms: %v\n", up[i].Timeline(250*time.Millisecond))
		if s == gv {
			// Every upload is durable when answered; the projections
			// apply it a moment later, and the Hockeypuck dataset defers
			// its signature checks until the burst ends. Wait for all of
			// it, so that SKS is not measured beside that work, and
			// report the burst including it.
			catchUp, err := waitApplied(ctx, c.grapevine, gvDir, 15*time.Minute, 250*time.Millisecond)
			if err != nil {
				return nil, err
			}
			gvApplied = up[i].Wall + catchUp
			fmt.Fprintf(os.Stderr, "      every projection applied %v after the last answer\n", catchUp.Round(time.Millisecond))
		}
	}
	rows = append(rows,
		row{name: fmt.Sprintf("HTTP /pks/add, %d clients (keys/s)", c.uploadClients), grapevine: rate(up[0].Keys, up[0].Wall), sk: rate(up[1].Keys, up[1].Wall), higherBetter: true},
		row{name: fmt.Sprintf("HTTP /pks/add, %d clients, until every projection applied them (keys/s)", c.uploadClients), grapevine: rate(up[0].Keys, gvApplied), sk: rate(up[1].Keys, up[1].Wall), higherBetter: true},
		row{name: fmt.Sprintf("HTTP /pks/add, %d clients errors (of keys)", c.uploadClients), text: [2]string{
			fmt.Sprintf("%d of %d", up[0].Errors, up[0].Keys), fmt.Sprintf("%d of %d", up[1].Errors, up[1].Keys)}},
		row{name: "HTTP longest single request (ms)", grapevine: ms(stall[0]), sk: ms(stall[1])},
	)
	for _, s := range servers {
		if err := checkAlive(s); err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// dirtyPages returns the bytes of file data the kernel holds dirty or is
// writing back (/proc/meminfo's Dirty and Writeback; Linux only).
func dirtyPages() (int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	return parseDirty(string(b))
}

// parseDirty sums the Dirty and Writeback lines of a /proc/meminfo text.
func parseDirty(meminfo string) (int64, error) {
	var total int64
	seen := 0
	for _, line := range strings.Split(meminfo, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && (f[0] == "Dirty:" || f[0] == "Writeback:") && f[2] == "kB" {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: %q: %w", line, err)
			}
			total += n << 10
			seen++
		}
	}
	if seen != 2 {
		return 0, errors.New("/proc/meminfo: no Dirty and Writeback lines")
	}
	return total, nil
}

func checkAlive(s *server) error {
	select {
	case <-s.done:
		return fmt.Errorf("%s died during the measurement (%v); see %s", s.name, s.cmd.ProcessState, s.log.Name())
	default:
		return nil
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// waitApplied waits until every projection of the grapevine daemon serving
// dir — the Hockeypuck dataset among them, which follows the log in the
// background checking every self-signature, and defers its work while
// uploads arrive — has applied the whole log, and returns how long that
// took. It asks `grapevine stats` every poll. Measuring before would time
// the daemon's start-up or catch-up work, not its steady state, and would
// give that work's CPU to whatever is measured next.
func waitApplied(ctx context.Context, bin, dir string, limit, poll time.Duration) (time.Duration, error) {
	start := time.Now()
	abs, _ := filepath.Abs(bin)
	for {
		out, err := exec.CommandContext(ctx, abs, "stats", "--basedir", dir).Output()
		if err == nil && allApplied(string(out)) {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("%s: the projections did not catch up within %v (last stats error: %v)", dir, limit, err)
		}
		select {
		case <-time.After(poll):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// allApplied reports whether every applied_* line of `grapevine stats`
// output equals its log_offset line.
func allApplied(stats string) bool {
	offset, applied := "", 0
	var values []string
	for _, l := range strings.Split(stats, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch {
		case k == "log_offset":
			offset = v
		case strings.HasPrefix(k, "applied_"):
			values = append(values, v)
			applied++
		}
	}
	if offset == "" || applied == 0 {
		return false
	}
	for _, v := range values {
		if v != offset {
			return false
		}
	}
	return true
}

// hockeypuckCatchUp starts grapevine serve on a freshly imported store and
// returns how long it takes to bring its Hockeypuck dataset up to the log
// (the import builds the SKS projections only). It runs before the recon
// and HTTP rows, which would otherwise do this work in their first minute.
func hockeypuckCatchUp(ctx context.Context, c config, gvDir string) (row, error) {
	gv, err := startGrapevine(ctx, c.grapevine, gvDir)
	if err != nil {
		return row{}, err
	}
	defer gv.stop()
	wait, err := waitApplied(ctx, c.grapevine, gvDir, 15*time.Minute, time.Second)
	if err != nil {
		return row{}, err
	}
	fmt.Fprintf(os.Stderr, "grapevine's Hockeypuck dataset caught up %v after serve started\n", wait.Round(time.Second))
	return row{name: "Hockeypuck dataset caught up after serve starts on the imported store (s)", grapevine: wait.Seconds()}, nil
}
