package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// reconRun is one convergence measurement of a pair.
type reconRun struct {
	took    time.Duration // session start to the last sampled key served
	bytes   int64         // recon bytes of the first session, both ways, Config included
	maxRSS  int64         // peak RSS of the node that caught up
	maxSet  int           // largest element set in one message (grapevine's log)
	session time.Duration // the first session alone (grapevine's log)
	cpu     time.Duration // CPU time of both nodes from the session start to converged
}

// reconRows measures convergence by recon alone, for each difference in
// c.reconDiffs: a grapevine pair and an SKS pair, each built from the same
// corpus, the second node (B) of each pair lacking the newest `diff` keys.
// B gossips every second and dials A through a counting TCP proxy; the
// clock starts when the proxy accepts B's first connection (the session
// start) and stops when every sampled missing key is served by B. The
// proxy also counts the first session's bytes, the same way for both.
// With c.reconEmpty, an empty grapevine node catches up with the full one.
func reconRows(ctx context.Context, c config, gvDir, skDir, dumpDir string) ([]row, error) {
	var rows []row
	for _, diff := range c.reconDiffs {
		rr, err := reconDiffRows(ctx, c, gvDir, skDir, diff)
		if err != nil {
			return nil, fmt.Errorf("%d differences: %w", diff, err)
		}
		rows = append(rows, rr...)
	}
	if c.reconEmpty {
		rr, err := reconEmptyRows(ctx, c, gvDir, dumpDir)
		if err != nil {
			return nil, fmt.Errorf("empty node: %w", err)
		}
		rows = append(rows, rr...)
	}
	return rows, nil
}

func reconDiffRows(ctx context.Context, c config, gvDir, skDir string, diff int) ([]row, error) {
	work := filepath.Join(c.work, fmt.Sprintf("recon-%d", diff))
	gvTemplate := filepath.Join(work, "gvB-template")
	skTemplate := filepath.Join(work, "sksB-template")
	// With -recon-only the partial stores of an earlier run in -work are
	// reused (A's store is the same unless its marker was removed).
	reuse := c.reconOnly && exists(filepath.Join(gvTemplate, "built")) && (!c.reconSKS || exists(filepath.Join(skTemplate, "built")))
	if !reuse {
		os.RemoveAll(work)
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	missing, err := missingFingerprints(c.grapevine, gvDir, work, c.keys-diff)
	if err != nil {
		return nil, err
	}
	if !reuse {
		// The partial corpus: the store as of diff events before the end.
		partial := filepath.Join(work, "partial")
		if _, err := timed(exec.Command(c.grapevine, "dump", "--basedir", gvDir, "--at", fmt.Sprint(c.keys-diff), "--out", partial)); err != nil {
			return nil, fmt.Errorf("dump partial corpus: %w", err)
		}
		if _, err := timed(exec.Command(c.grapevine, "import", "--basedir", gvTemplate, partial)); err != nil {
			return nil, fmt.Errorf("grapevine import partial: %w", err)
		}
		os.WriteFile(filepath.Join(gvTemplate, "built"), nil, 0o644)
		if c.reconSKS {
			if _, err := sksBuild(c.sks, skTemplate, partial); err != nil {
				return nil, err
			}
			os.WriteFile(filepath.Join(skTemplate, "built"), nil, 0o644)
		}
	}

	var gv, sk []reconRun
	for i := 0; i < c.reconRuns; i++ {
		fmt.Fprintf(os.Stderr, "recon %d differences: run %d/%d\n", diff, i+1, c.reconRuns)
		r, err := gvPair(ctx, c, gvDir, gvTemplate, filepath.Join(work, fmt.Sprintf("gv-%d", i)), missing)
		if err != nil {
			return nil, fmt.Errorf("grapevine pair: %w", err)
		}
		gv = append(gv, r)
		if c.reconSKS {
			r, err = sksPair(ctx, c, skDir, skTemplate, filepath.Join(work, fmt.Sprintf("sks-%d", i)), missing)
			if err != nil {
				return nil, fmt.Errorf("SKS pair: %w", err)
			}
			sk = append(sk, r)
		}
	}
	g, s := medianRecon(gv), medianRecon(sk)
	fmt.Fprintf(os.Stderr, "recon %d differences: grapevine %v, SKS %v\n", diff, runsString(gv), runsString(sk))
	gvPer, skPer := float64(g.bytes)/float64(diff), float64(s.bytes)/float64(diff)
	return []row{
		{name: fmt.Sprintf("recon: %d differences, session start to converged (s)", diff), grapevine: g.took.Seconds(), sk: s.took.Seconds(), prec: 2},
		{name: fmt.Sprintf("recon: %d differences, CPU of both nodes, session start to converged (s)", diff), grapevine: g.cpu.Seconds(), sk: s.cpu.Seconds(), prec: 2},
		{name: fmt.Sprintf("recon: %d differences, session bytes per difference", diff), grapevine: gvPer, sk: skPer, prec: -1},
		{name: fmt.Sprintf("recon: %d differences, largest message (elements)", diff), text: [2]string{fmt.Sprint(g.maxSet), "—"}},
	}, nil
}

// reconEmptyRows measures an empty grapevine node catching up with the
// full one by recon alone: time from the first session's start, peak RSS,
// and the largest message. SKS is not measured: it recovers at most a few
// thousand differences per round (recon.md §8.6), hours for 100k keys.
func reconEmptyRows(ctx context.Context, c config, gvDir, dumpDir string) ([]row, error) {
	work := filepath.Join(c.work, "recon-empty")
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	all, err := dumpFingerprints(c.grapevine, gvDir, filepath.Join(work, "fpr-all"), "")
	if err != nil {
		return nil, err
	}
	sample := spread(all, 200)
	var runs []reconRun
	for i := 0; i < c.reconRuns; i++ {
		fmt.Fprintf(os.Stderr, "recon empty node: run %d/%d\n", i+1, c.reconRuns)
		r, err := gvPair(ctx, c, gvDir, "", filepath.Join(work, fmt.Sprintf("gv-%d", i)), sample)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	g := medianRecon(runs)
	fmt.Fprintf(os.Stderr, "recon empty node: grapevine %v\n", runsString(runs))
	return []row{
		{name: fmt.Sprintf("recon: empty node catches up with %d keys (s)", c.keys), grapevine: g.took.Seconds(), text: [2]string{fmt.Sprintf("%.1f", g.took.Seconds()), "not measured (a few thousand keys per round)"}},
		{name: "recon: empty node catching up, CPU of both nodes (s)", text: [2]string{fmt.Sprintf("%.1f", g.cpu.Seconds()), "—"}},
		{name: "recon: empty node catching up, peak RSS (MiB)", text: [2]string{fmt.Sprintf("%.0f", mib(g.maxRSS)), "—"}},
		{name: "recon: empty node catching up, largest message (elements)", text: [2]string{fmt.Sprint(g.maxSet), "—"}},
	}, nil
}

// gvPair runs grapevine A on aDir (never gossiping) and B on a copy of
// template (empty if ""), B gossiping every second to A through a
// counting proxy, until B serves every fingerprint in want.
func gvPair(ctx context.Context, c config, aDir, template, work string, want []string) (reconRun, error) {
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return reconRun{}, err
	}
	bDir := filepath.Join(work, "B")
	if template != "" {
		if out, err := exec.Command("cp", "-a", template, bDir).CombinedOutput(); err != nil {
			return reconRun{}, fmt.Errorf("copy %s: %v: %s", template, err, out)
		}
	} else if err := os.MkdirAll(bDir, 0o755); err != nil {
		return reconRun{}, err
	}
	p, err := freePorts(4)
	if err != nil {
		return reconRun{}, err
	}
	aHKP, aRecon, bHKP, bRecon := p[0], p[1], p[2], p[3]
	tapPort, err := freePorts(1)
	if err != nil {
		return reconRun{}, err
	}
	writeGV := func(dir string, hkp, recon, peer int, gossip bool) error {
		conf := fmt.Sprintf("hostname: 127.0.0.254\nhkp_address: 127.0.0.1\nhkp_port: %d\nrecon_address: 127.0.0.1\nrecon_port: %d\n", hkp, recon)
		if gossip {
			conf += "grapevine_gossip_interval_seconds: 1\n"
		} else {
			conf += "dontgossip:\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "sksconf"), []byte(conf), 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "membership"), []byte(fmt.Sprintf("127.0.0.1 %d\n", peer)), 0o644)
	}
	if err := writeGV(aDir, aHKP, aRecon, bRecon, false); err != nil {
		return reconRun{}, err
	}
	if err := writeGV(bDir, bHKP, bRecon, tapPort[0], true); err != nil {
		return reconRun{}, err
	}
	abs, _ := filepath.Abs(c.grapevine)
	cmdA := exec.Command(abs, "serve", "--basedir", aDir)
	cmdB := exec.Command(abs, "serve", "--basedir", bDir)
	if c.reconProfile != "" {
		os.MkdirAll(c.reconProfile, 0o755)
		cmdA.Env = append(os.Environ(), "GRAPEVINE_CPUPROFILE="+filepath.Join(c.reconProfile, filepath.Base(filepath.Dir(work))+"-"+filepath.Base(work)+"-A.pprof"))
		cmdB.Env = append(os.Environ(), "GRAPEVINE_CPUPROFILE="+filepath.Join(c.reconProfile, filepath.Base(filepath.Dir(work))+"-"+filepath.Base(work)+"-B.pprof"))
	}
	var aLogStart int64 // A's basedir is reused: read only this run's lines
	if fi, err := os.Stat(filepath.Join(aDir, "grapevine", "grapevine.log")); err == nil {
		aLogStart = fi.Size()
	}
	a, err := startServer(ctx, "grapevine A", cmdA, filepath.Join(work, "A.log"), aHKP)
	if err != nil {
		return reconRun{}, err
	}
	defer a.stop()
	b, err := startServer(ctx, "grapevine B", cmdB, filepath.Join(work, "B.log"), bHKP)
	if err != nil {
		return reconRun{}, err
	}
	defer b.stop()
	// Both nodes first bring their Hockeypuck datasets up to their logs
	// (start-up work after an import), so the session measures recon.
	for _, dir := range []string{aDir, bDir} {
		if _, err := waitApplied(ctx, c.grapevine, dir, 15*time.Minute, time.Second); err != nil {
			return reconRun{}, err
		}
	}
	tp, err := settleAndTap(ctx, c, tapPort[0], aRecon, []*server{a, b})
	if err != nil {
		return reconRun{}, err
	}
	defer tp.close()
	end, err := waitServed(ctx, b.base, want, 5*time.Minute)
	if err != nil {
		return reconRun{}, err
	}
	cpu := tp.cpuSinceStart()
	b.stop()
	a.stop()
	r := reconRun{took: end.Sub(tp.start()), bytes: tp.firstBytes(), maxRSS: peakRSS(b), cpu: cpu}
	r.maxSet, r.session = sessionLog(filepath.Join(bDir, "grapevine", "grapevine.log"), 0)
	aSet, _ := sessionLog(filepath.Join(aDir, "grapevine", "grapevine.log"), aLogStart)
	r.maxSet = max(r.maxSet, aSet)
	return r, nil
}

// sksPair does for SKS what gvPair does for grapevine.
func sksPair(ctx context.Context, c config, aDir, template, work string, want []string) (reconRun, error) {
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return reconRun{}, err
	}
	bDir := filepath.Join(work, "B")
	if out, err := exec.Command("cp", "-a", template, bDir).CombinedOutput(); err != nil {
		return reconRun{}, fmt.Errorf("copy %s: %v: %s", template, err, out)
	}
	q, err := freePorts(4)
	if err != nil {
		return reconRun{}, err
	}
	aHKP, aRecon, bHKP, bRecon := q[0], q[1], q[2], q[3]
	tapPort, err := freePorts(1)
	if err != nil {
		return reconRun{}, err
	}
	writeSKS := func(dir string, hkp, recon, peer int, gossip bool) error {
		conf := fmt.Sprintf("hostname: 127.0.0.254\nnodename: bench\nhkp_address: 127.0.0.1\nhkp_port: %d\nrecon_address: 127.0.0.1\nrecon_port: %d\ndisable_mailsync:\nsendmail_cmd: /bin/true\n", hkp, recon)
		if gossip {
			conf += "gossip_interval: 0.0166667\n" // 1 s, in minutes
		} else {
			conf += "dontgossip:\n"
		}
		if err := os.WriteFile(filepath.Join(dir, "etc", "sks", "sksconf"), []byte(conf), 0o644); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "etc", "sks", "membership"), []byte(fmt.Sprintf("127.0.0.1 %d\n", peer)), 0o644)
	}
	if err := writeSKS(aDir, aHKP, aRecon, bRecon, false); err != nil {
		return reconRun{}, err
	}
	if err := writeSKS(bDir, bHKP, bRecon, tapPort[0], true); err != nil {
		return reconRun{}, err
	}
	startSKS := func(dir string, hkp, recon int, name string) ([]*server, error) {
		db := exec.Command(c.sks, "db", "-basedir", dir, "-stdoutlog")
		db.Dir = dir
		sdb, err := startServer(ctx, name+" db", db, filepath.Join(work, name+"-db.log"), hkp)
		if err != nil {
			return nil, err
		}
		rc := exec.Command(c.sks, "recon", "-basedir", dir, "-stdoutlog")
		rc.Dir = dir
		srec, err := startProcess(rc, filepath.Join(work, name+"-recon.log"), name+" recon")
		if err != nil {
			sdb.stop()
			return nil, err
		}
		if err := waitListening(ctx, recon, 60*time.Second); err != nil {
			sdb.stop()
			srec.stop()
			return nil, fmt.Errorf("%s recon: %w", name, err)
		}
		return []*server{sdb, srec}, nil
	}
	sa, err := startSKS(aDir, aHKP, aRecon, "sksA")
	if err != nil {
		return reconRun{}, err
	}
	defer stopAll(sa)
	sb, err := startSKS(bDir, bHKP, bRecon, "sksB")
	if err != nil {
		return reconRun{}, err
	}
	defer stopAll(sb)
	tp, err := settleAndTap(ctx, c, tapPort[0], aRecon, append(append([]*server(nil), sa...), sb...))
	if err != nil {
		return reconRun{}, err
	}
	defer tp.close()
	end, err := waitServed(ctx, fmt.Sprintf("http://127.0.0.1:%d", bHKP), want, 5*time.Minute)
	if err != nil {
		return reconRun{}, err
	}
	cpu := tp.cpuSinceStart()
	stopAll(sb)
	stopAll(sa)
	return reconRun{took: end.Sub(tp.start()), bytes: tp.firstBytes(), cpu: cpu}, nil
}

// settleAndTap waits c.reconSettle, so that both nodes have finished
// starting (pebble compactions, caches), then opens the proxy B gossips
// to: B's gossip attempts failed until now, and its next one is the
// session measured.
func settleAndTap(ctx context.Context, c config, port, aRecon int, procs []*server) (*tap, error) {
	select {
	case <-time.After(c.reconSettle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return newTap(ctx, port, fmt.Sprintf("127.0.0.1:%d", aRecon), procs)
}

func stopAll(ss []*server) {
	for _, s := range ss {
		s.stop()
	}
}

// peakRSS is the peak RSS of a stopped server's process.
func peakRSS(s *server) int64 {
	if s.cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := s.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss * 1024
	}
	return 0
}

func medianRecon(rs []reconRun) reconRun {
	if len(rs) == 0 {
		return reconRun{}
	}
	pick := func(less func(a, b reconRun) bool) reconRun {
		s := append([]reconRun(nil), rs...)
		sort.Slice(s, func(i, j int) bool { return less(s[i], s[j]) })
		return s[len(s)/2]
	}
	m := pick(func(a, b reconRun) bool { return a.took < b.took })
	m.bytes = pick(func(a, b reconRun) bool { return a.bytes < b.bytes }).bytes
	m.maxRSS = pick(func(a, b reconRun) bool { return a.maxRSS < b.maxRSS }).maxRSS
	m.session = pick(func(a, b reconRun) bool { return a.session < b.session }).session
	m.cpu = pick(func(a, b reconRun) bool { return a.cpu < b.cpu }).cpu
	for _, r := range rs {
		m.maxSet = max(m.maxSet, r.maxSet)
	}
	return m
}

func runsString(rs []reconRun) string {
	var parts []string
	for _, r := range rs {
		s := fmt.Sprintf("%.2fs/cpu %.2fs/%dB", r.took.Seconds(), r.cpu.Seconds(), r.bytes)
		if r.session > 0 {
			s += fmt.Sprintf("/session %.2fs", r.session.Seconds())
		}
		if r.maxRSS > 0 {
			s += fmt.Sprintf("/%.0fMiB", mib(r.maxRSS))
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// spread returns up to n elements of s, evenly spaced.
func spread(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	out := make([]string, 0, n)
	for i := 0; i < n; i++ {
		out = append(out, s[i*len(s)/n])
	}
	return out
}

// missingFingerprints returns up to 200 fingerprints, spread evenly, of
// keys the store has now but did not have after event `after`: a full
// dump compared with a dump as of that index.
func missingFingerprints(bin, dir, work string, after int) ([]string, error) {
	all, err := dumpFingerprints(bin, dir, filepath.Join(work, "fpr-all"), "")
	if err != nil {
		return nil, err
	}
	some, err := dumpFingerprints(bin, dir, filepath.Join(work, "fpr-part"), fmt.Sprint(after))
	if err != nil {
		return nil, err
	}
	have := make(map[string]bool, len(some))
	for _, f := range some {
		have[f] = true
	}
	var out []string
	for _, f := range all {
		if !have[f] {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no missing keys between the full and the partial store")
	}
	return spread(out, 200), nil
}

func dumpFingerprints(bin, dir, out, at string) ([]string, error) {
	args := []string{"dump", "--basedir", dir, "--out", out}
	if at != "" {
		args = append(args, "--at", at)
	}
	if _, err := timed(exec.Command(bin, args...)); err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	qs, err := sampleQueries(out, 1<<30)
	if err != nil {
		return nil, err
	}
	var fprs []string
	for _, p := range qs.fingerprints {
		if i := strings.Index(p, "search=0x"); i >= 0 {
			fprs = append(fprs, p[i+len("search=0x"):])
		}
	}
	return fprs, nil
}

// waitServed polls until every fingerprint is served by base and returns
// the time the last one was.
func waitServed(ctx context.Context, base string, fprs []string, limit time.Duration) (time.Time, error) {
	start := time.Now()
	client := &http.Client{Timeout: 5 * time.Second}
	next := 0
	for next < len(fprs) {
		resp, err := client.Get(base + "/pks/lookup?op=get&options=mr&search=0x" + fprs[next])
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				next++
				continue
			}
		}
		if time.Since(start) > limit {
			return time.Time{}, fmt.Errorf("%d of %d sampled missing keys served after %v", next, len(fprs), limit)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return time.Now(), nil
}

// sessionLog reads grapevine's JSON log from offset on: the largest
// element set of any session and the duration of the first session with
// differences.
func sessionLog(logPath string, offset int64) (maxSet int, first time.Duration) {
	data, err := os.ReadFile(logPath)
	if err != nil || offset > int64(len(data)) {
		return 0, 0
	}
	for _, line := range strings.Split(string(data[offset:]), "\n") {
		if !strings.Contains(line, "recon session done") {
			continue
		}
		var v struct {
			MaxSet  int     `json:"max_set"`
			Missing int     `json:"missing"`
			Took    float64 `json:"took"` // zerolog: milliseconds
		}
		if json.Unmarshal([]byte(line), &v) == nil {
			maxSet = max(maxSet, v.MaxSet)
			if first == 0 && v.Missing > 0 {
				first = time.Duration(v.Took * float64(time.Millisecond))
			}
		}
	}
	return maxSet, first
}

// tap is a TCP proxy in front of a recon port: it notes when it accepted
// its first connection and counts that connection's bytes both ways.
type tap struct {
	ln     net.Listener
	target string
	port   int
	wg     sync.WaitGroup

	mu      sync.Mutex
	first   time.Time
	nconn   int
	counted int64
	procs   []*server     // whose CPU time is read at the first connection
	cpu0    time.Duration // their CPU time then
}

// newTap listens on port (0: any) and relays to target. Until it is
// created, connections to a chosen port are refused, as a peer that is
// down refuses them.
func newTap(ctx context.Context, port int, target string, procs []*server) (*tap, error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	t := &tap{ln: ln, target: target, port: ln.Addr().(*net.TCPAddr).Port, procs: procs}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.mu.Lock()
			if t.nconn == 0 {
				t.first = time.Now()
				t.cpu0 = cpuTime(t.procs)
			}
			t.nconn++
			firstConn := t.nconn == 1
			t.mu.Unlock()
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				t.relay(ctx, c, firstConn)
			}()
		}
	}()
	return t, nil
}

func (t *tap) relay(ctx context.Context, c net.Conn, count bool) {
	defer c.Close()
	var d net.Dialer
	u, err := d.DialContext(ctx, "tcp", t.target)
	if err != nil {
		return
	}
	defer u.Close()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		n, _ := io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		if count {
			t.mu.Lock()
			t.counted += n
			t.mu.Unlock()
		}
	}
	wg.Add(2)
	go pipe(u, c)
	go pipe(c, u)
	wg.Wait()
}

// cpuSinceStart is the CPU time its processes used since the first
// connection.
func (t *tap) cpuSinceStart() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return cpuTime(t.procs) - t.cpu0
}

// cpuTime sums user and system CPU time of running processes from
// /proc/PID/stat (clock ticks of 10 ms).
func cpuTime(procs []*server) time.Duration {
	var ticks int64
	for _, s := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 12 {
			var u, k int64
			fmt.Sscan(f[11], &u)
			fmt.Sscan(f[12], &k)
			ticks += u + k
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

func (t *tap) start() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.first
}

func (t *tap) firstBytes() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counted
}

func (t *tap) close() {
	t.ln.Close()
}

// startProcess starts a background process (sks recon) with its output in
// logPath.
func startProcess(cmd *exec.Cmd, logPath, name string) (*server, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, done: make(chan struct{}), log: lf}
	go func() { cmd.Wait(); close(s.done) }()
	return s, nil
}

func waitListening(ctx context.Context, port int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d not listening after %v", port, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
