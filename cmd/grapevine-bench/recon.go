package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// reconRows measures convergence by recon alone: two grapevine nodes and
// two SKS nodes, each pair built from the same corpus, the second node of
// each pair lacking the newest `diff` keys. The second node dials the
// first (its gossip timer, 1 s), learns what it lacks and fetches it. A
// pair has converged when every missing key is served by the second node.
func reconRows(ctx context.Context, c config, gvDir, skDir, dumpDir string, diff int) ([]row, error) {
	work := filepath.Join(c.work, fmt.Sprintf("recon-%d", diff))
	os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	// The partial corpus: the store as of diff events before the end.
	partial := filepath.Join(work, "partial")
	if _, err := timed(exec.Command(c.grapevine, "dump", "--basedir", gvDir, "--at", fmt.Sprint(c.keys-diff), "--out", partial)); err != nil {
		return nil, fmt.Errorf("dump partial corpus: %w", err)
	}
	missing, err := missingFingerprints(ctx, c.grapevine, gvDir, work, c.keys-diff)
	if err != nil {
		return nil, err
	}

	// grapevine pair.
	gvB := filepath.Join(work, "gvB")
	if _, err := timed(exec.Command(c.grapevine, "import", "--basedir", gvB, partial)); err != nil {
		return nil, fmt.Errorf("grapevine import partial: %w", err)
	}
	p, err := freePorts(4)
	if err != nil {
		return nil, err
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
	if err := writeGV(gvDir, p[0], p[1], p[3], false); err != nil {
		return nil, err
	}
	if err := writeGV(gvB, p[2], p[3], p[1], true); err != nil {
		return nil, err
	}
	abs, _ := filepath.Abs(c.grapevine)
	a, err := startServer(ctx, "grapevine A", exec.Command(abs, "serve", "--basedir", gvDir), filepath.Join(work, "gvA.log"), p[0])
	if err != nil {
		return nil, err
	}
	defer a.stop()
	start := time.Now()
	b, err := startServer(ctx, "grapevine B", exec.Command(abs, "serve", "--basedir", gvB), filepath.Join(work, "gvB.log"), p[2])
	if err != nil {
		return nil, err
	}
	defer b.stop()
	if _, err := waitServed(ctx, b.base, missing, 5*time.Minute); err != nil {
		return nil, fmt.Errorf("grapevine pair: %w", err)
	}
	gvTime := time.Since(start) // from B's start, as for SKS below
	sent, received := sessionBytes(filepath.Join(gvB, "grapevine", "grapevine.log"))
	a.stop()
	b.stop()

	// SKS pair.
	skB := filepath.Join(work, "sksB")
	if _, err := sksBuild(c.sks, skB, partial); err != nil {
		return nil, err
	}
	q, err := freePorts(4)
	if err != nil {
		return nil, err
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
	if err := writeSKS(skDir, q[0], q[1], q[3], false); err != nil {
		return nil, err
	}
	if err := writeSKS(skB, q[2], q[3], q[1], true); err != nil {
		return nil, err
	}
	startSKSPair := func(dir string, hkp, recon int, name string) ([]*server, error) {
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
	sa, err := startSKSPair(skDir, q[0], q[1], "sksA")
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, s := range sa {
			s.stop()
		}
	}()
	start = time.Now()
	sb, err := startSKSPair(skB, q[2], q[3], "sksB")
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, s := range sb {
			s.stop()
		}
	}()
	if _, err := waitServed(ctx, fmt.Sprintf("http://127.0.0.1:%d", q[2]), missing, 5*time.Minute); err != nil {
		return nil, fmt.Errorf("SKS pair: %w", err)
	}
	skTime := time.Since(start)

	perDiff := 0.0
	if diff > 0 {
		perDiff = float64(sent+received) / float64(diff)
	}
	return []row{
		{name: fmt.Sprintf("recon: %d differences, node start to converged (s)", diff), grapevine: gvTime.Seconds(), sk: skTime.Seconds(), prec: 2},
		{name: fmt.Sprintf("recon: %d differences, session bytes per difference", diff), grapevine: perDiff, text: [2]string{fmt.Sprintf("%.0f", perDiff), "not measured"}},
	}, nil
}

// missingFingerprints returns up to 50 fingerprints of keys the store has
// now but did not have after event `after`: a full dump compared with a
// dump as of that index.
func missingFingerprints(ctx context.Context, bin, dir, work string, after int) ([]string, error) {
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
			if len(out) == 50 {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no missing keys between the full and the partial store")
	}
	return out, nil
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

// waitServed polls until every fingerprint is served by base.
func waitServed(ctx context.Context, base string, fprs []string, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	client := &http.Client{Timeout: 5 * time.Second}
	next := 0
	for next < len(fprs) {
		resp, err := client.Get(base + "/pks/lookup?op=get&options=mr&search=0x" + fprs[next])
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				next++
				continue
			}
		}
		if time.Since(start) > limit {
			return 0, fmt.Errorf("%d of %d missing keys served after %v", next, len(fprs), limit)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return time.Since(start), nil
}

// sessionBytes sums the bytes of grapevine's recon sessions from its JSON
// log ("recon session done" lines).
func sessionBytes(logPath string) (sent, received int64) {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, "recon session done") {
			continue
		}
		var v struct {
			Sent     int64 `json:"bytes_sent"`
			Received int64 `json:"bytes_received"`
		}
		if json.Unmarshal([]byte(line), &v) == nil {
			sent += v.Sent
			received += v.Received
		}
	}
	return sent, received
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
