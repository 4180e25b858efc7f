// Command grapevine-bench measures grapevine side by side with a real SKS
// 1.1.6 on the same machine and the same deterministic key corpus, and
// prints one table of medians with the ratio grapevine/SKS per row.
//
//	go run ./cmd/grapevine-bench -keys 100000 -runs 3 [-write docs/benchmarks.md]
//
// Rows measured now: building a keyserver from a dump (grapevine import
// vs sks build + cleandb + pbuild), peak RSS of that, disk size, replay and
// dump throughput, HTTP under wrk (http.go), and recon convergence from the
// session start for 1,000 and 10,000 differences and an empty node
// (recon.go; -recon-only for just those). Every number is the median of
// -runs (recon: -recon-runs) runs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

func main() {
	// On SIGINT/SIGTERM the context ends, run returns and its deferred
	// stops end the servers it started.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "grapevine-bench: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	keys      int
	seed      int64
	runs      int
	work      string
	grapevine string
	sks       string
	write     string

	http          bool
	getAll        bool // also op=get cycling every key's fingerprint
	duration      time.Duration
	uploadKeys    int
	uploadClients int
	uploadLimit   time.Duration

	reconDiffs   []int         // for each, keys the second node of a recon pair lacks
	reconRuns    int           // runs per recon measurement
	reconEmpty   bool          // also an empty node catching up by recon alone
	reconSKS     bool          // also the SKS pairs
	reconOnly    bool          // only the recon rows
	reconProfile string        // directory for CPU profiles of the grapevine nodes
	reconSettle  time.Duration // wait after starting a recon pair before the first session

	getOnly    bool   // only the two op=get rows at 64 connections, grapevine only (getrows.go)
	getBasedir string // -get-only: the imported grapevine basedir (default: -work/gv)
	getCorpus  string // -get-only: the dump directory it was imported from (default: -work's corpus)
	getProfile string // -get-only: directory for profiles and a trace of the last run's every-fingerprint row
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("grapevine-bench", flag.ContinueOnError)
	var c config
	fs.IntVar(&c.keys, "keys", 100000, "corpus size")
	fs.Int64Var(&c.seed, "seed", 1, "corpus seed")
	fs.IntVar(&c.runs, "runs", 3, "runs per measurement (the median is reported)")
	fs.StringVar(&c.work, "work", "", "work directory (default: a temporary directory, removed afterwards)")
	fs.StringVar(&c.grapevine, "grapevine", "bin/grapevine", "grapevine binary")
	fs.StringVar(&c.sks, "sks", "/usr/sbin/sks", "sks binary (Debian package sks)")
	fs.StringVar(&c.write, "write", "", "also write the results as Markdown into this file")
	reconDiff := fs.String("recon-diff", "1000,10000", "also measure recon convergence of a grapevine pair and an SKS pair differing by these many keys (comma-separated; 0 or empty: skip)")
	fs.IntVar(&c.reconRuns, "recon-runs", 3, "runs per recon measurement (the median is reported)")
	fs.BoolVar(&c.reconEmpty, "recon-empty", true, "also measure an empty grapevine node catching up with the full one by recon alone")
	fs.BoolVar(&c.reconSKS, "recon-sks", true, "also measure the SKS pairs for the recon rows")
	fs.BoolVar(&c.reconOnly, "recon-only", false, "measure only the recon rows (one import and one SKS build, reused from -work if there)")
	fs.DurationVar(&c.reconSettle, "recon-settle", 5*time.Second, "let a recon pair settle this long after starting before the measured session")
	fs.StringVar(&c.reconProfile, "recon-profile", "", "write CPU profiles of the grapevine recon nodes into this directory")
	fs.BoolVar(&c.http, "http", true, "also measure HTTP: grapevine serve and sks db side by side under wrk and concurrent /pks/add")
	fs.BoolVar(&c.getAll, "get-all", true, "also measure op=get at 64 connections cycling through every key's fingerprint: answers no cache holds (the 1000 sampled paths fit in any cache)")
	fs.DurationVar(&c.duration, "duration", 15*time.Second, "wrk duration per row and server (default 15s; scaled down for -keys under 100000 unless set)")
	fs.IntVar(&c.uploadKeys, "upload-keys", 5000, "keys of the second corpus (seed+1000) uploaded to each server (default 5000; scaled down for -keys under 100000 unless set)")
	fs.IntVar(&c.uploadClients, "upload-clients", 8, "concurrent /pks/add clients")
	fs.DurationVar(&c.uploadLimit, "upload-limit", 90*time.Second, "stop uploading to a server after this long (keys/s counts the keys done)")
	fs.BoolVar(&c.getOnly, "get-only", false, "measure only op=get at 64 connections, the 1000 sampled fingerprints then every fingerprint, on grapevine alone, restarting it for each of -runs runs (tail latency: p99.9, longest request)")
	fs.StringVar(&c.getBasedir, "get-basedir", "", "with -get-only: an imported grapevine basedir to serve (default: -work/gv)")
	fs.StringVar(&c.getCorpus, "get-corpus", "", "with -get-only: the dump directory that basedir was imported from (default: -work/corpus-KEYS-SEED)")
	fs.StringVar(&c.getProfile, "get-profile", "", "with -get-only: write a CPU profile, an execution trace (first 5 s) and mutex and block profiles of the last run's every-fingerprint row into this directory (that run is then not counted)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.reconOnly {
		c.runs, c.http = 1, false
	}
	if c.keys < 1 || c.runs < 1 || c.reconRuns < 1 || c.duration < time.Second || c.uploadKeys < 1 || c.uploadClients < 1 {
		return errors.New("-keys, -runs, -upload-keys and -upload-clients must be positive, -duration at least 1s")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, f := range strings.Split(*reconDiff, ",") {
		var n int
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if _, err := fmt.Sscan(f, &n); err != nil || n < 0 || (set["recon-diff"] && n >= c.keys) {
			return fmt.Errorf("-recon-diff %q: want numbers from 0 to -keys", *reconDiff)
		}
		if n > 0 && (set["recon-diff"] || n <= c.keys/4) {
			// Small -keys: the default differences that do not fit are
			// left out.
			c.reconDiffs = append(c.reconDiffs, n)
		}
	}
	if c.keys < 100000 {
		// Quick checks: -keys 10000 takes about 2 minutes.
		if !set["duration"] {
			c.duration = max(3*time.Second, c.duration*time.Duration(c.keys)/100000).Round(time.Second)
		}
		if !set["upload-keys"] {
			c.uploadKeys = max(200, c.uploadKeys*c.keys/100000)
		}
	}
	if c.getOnly {
		return runGetOnly(ctx, c, stdout)
	}
	if c.http {
		if _, err := exec.LookPath("wrk"); err != nil {
			return fmt.Errorf("wrk: %w (apt-get install wrk, or -http=false)", err)
		}
	}
	for _, bin := range []string{c.grapevine, c.sks} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s: %w (build grapevine with make build; install sks with apt-get)", bin, err)
		}
	}
	if c.work == "" {
		dir, err := os.MkdirTemp("", "grapevine-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.work = dir
	}
	dumpDir := filepath.Join(c.work, fmt.Sprintf("corpus-%d-%d", c.keys, c.seed))
	if _, err := os.Stat(filepath.Join(dumpDir, "MD5SUMS")); err != nil {
		fmt.Fprintf(os.Stderr, "generating %d keys (seed %d) into %s\n", c.keys, c.seed, dumpDir)
		if err := os.MkdirAll(dumpDir, 0o755); err != nil {
			return err
		}
		if _, err := corpus.GenerateDump(ctx, dumpDir, corpus.Options{N: c.keys, Seed: c.seed}, 15000); err != nil {
			return fmt.Errorf("generate corpus: %w", err)
		}
	}
	dumpBytes := dirSize(dumpDir)
	var rows []row
	var gvImport, skImport, gvReplay, gvDump []measure
	var gvDisk, skDisk int64
	var gvDir, skDir string
	for i := 0; i < c.runs; i++ {
		gvDir = filepath.Join(c.work, "gv")
		skDir = filepath.Join(c.work, "sks")
		if c.reconOnly && exists(filepath.Join(gvDir, "built")) && exists(filepath.Join(skDir, "built")) {
			break
		}
		fmt.Fprintf(os.Stderr, "run %d/%d\n", i+1, c.runs)
		os.RemoveAll(gvDir)
		m, err := timed(exec.Command(c.grapevine, "import", "--basedir", gvDir, dumpDir))
		if err != nil {
			return fmt.Errorf("grapevine import: %w", err)
		}
		gvImport = append(gvImport, m)
		gvDisk = dirSize(gvDir)
		if m, err = timed(exec.Command(c.grapevine, "replay", "--basedir", gvDir)); err != nil {
			return fmt.Errorf("grapevine replay: %w", err)
		}
		gvReplay = append(gvReplay, m)
		out := filepath.Join(c.work, "gvdump")
		os.RemoveAll(out)
		if m, err = timed(exec.Command(c.grapevine, "dump", "--basedir", gvDir, "--out", out)); err != nil {
			return fmt.Errorf("grapevine dump: %w", err)
		}
		m.bytes = dirSize(out)
		gvDump = append(gvDump, m)

		os.RemoveAll(skDir)
		if m, err = sksBuild(c.sks, skDir, dumpDir); err != nil {
			return err
		}
		skImport = append(skImport, m)
		skDisk = dirSize(skDir)
		os.WriteFile(filepath.Join(gvDir, "built"), nil, 0o644)
		os.WriteFile(filepath.Join(skDir, "built"), nil, 0o644)
	}
	if c.reconOnly {
		rows, err := reconRows(ctx, c, gvDir, skDir, dumpDir)
		if err != nil {
			return fmt.Errorf("recon: %w", err)
		}
		fmt.Fprint(stdout, format(c, rows, dumpBytes))
		return nil
	}
	gi, si := median(gvImport), median(skImport)
	rows = append(rows,
		row{name: "build from dump (keys/s)", grapevine: rate(c.keys, gi.wall), sk: rate(c.keys, si.wall), higherBetter: true},
		row{name: "build from dump (s)", grapevine: secs(gi.wall), sk: secs(si.wall)},
		row{name: "peak RSS while building (MiB)", grapevine: mib(gi.maxRSS), sk: mib(si.maxRSS)},
		row{name: "disk after build (MiB)", grapevine: mib(gvDisk), sk: mib(skDisk)},
		row{name: "replay (keys/s)", grapevine: rate(c.keys, median(gvReplay).wall), higherBetter: true},
		row{name: "dump (MB/s)", grapevine: float64(median(gvDump).bytes) / 1e6 / median(gvDump).wall.Seconds(), higherBetter: true},
	)
	hr, err := hockeypuckCatchUp(ctx, c, gvDir)
	if err != nil {
		return fmt.Errorf("hockeypuck catch-up: %w", err)
	}
	rows = append(rows, hr)
	// Recon first: the HTTP rows upload keys into both stores, which would
	// add thousands of differences to the recon pairs built from them.
	var reconRowsOut []row
	if len(c.reconDiffs) > 0 || c.reconEmpty {
		// Convergence by recon alone, on the stores of the last run.
		rr, err := reconRows(ctx, c, gvDir, skDir, dumpDir)
		if err != nil {
			return fmt.Errorf("recon: %w", err)
		}
		reconRowsOut = rr
	}
	if c.http {
		// One HTTP measurement, on the stores of the last run.
		hr, err := httpRows(ctx, c, gvDir, skDir, dumpDir)
		if err != nil {
			return fmt.Errorf("http: %w", err)
		}
		rows = append(rows, hr...)
	}
	rows = append(rows, reconRowsOut...)
	report := format(c, rows, dumpBytes)
	fmt.Fprint(stdout, report)
	if c.write != "" {
		return writeSection(c.write, report)
	}
	return nil
}

type measure struct {
	wall   time.Duration
	maxRSS int64 // bytes
	bytes  int64
}

type row struct {
	name          string
	grapevine, sk float64
	higherBetter  bool
	prec          int       // decimals (default 1)
	text          [2]string // if set, printed instead of the figures (no ratio)
}

// timed runs cmd and reports wall time and the peak RSS of the process
// (and, through RUSAGE_CHILDREN semantics of Wait, its largest child).
func timed(cmd *exec.Cmd) (measure, error) {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	m := measure{wall: time.Since(start)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		m.maxRSS = ru.Maxrss * 1024
	}
	if err != nil {
		return m, fmt.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, tail(stderr.String(), 2000))
	}
	return m, nil
}

// sksBuild builds an SKS database from the dump the way Debian's
// sks_build.sh does: build, cleandb (retried: it sometimes segfaults after
// finishing, sks-peer.md quirk 4), pbuild. Times add up; RSS is the peak.
func sksBuild(sks, dir, dumpDir string) (measure, error) {
	for _, d := range []string{"etc/sks", "var/lib/sks", "var/log/sks", "var/run/sks", "var/spool/sks"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return measure{}, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "etc", "sks"), 0o755); err != nil {
		return measure{}, err
	}
	os.WriteFile(filepath.Join(dir, "etc", "sks", "sksconf"), []byte("hostname: 127.0.0.254\n"), 0o644)
	files, _ := filepath.Glob(filepath.Join(dumpDir, "*.pgp"))
	sort.Strings(files)
	var total measure
	step := func(args ...string) error {
		cmd := exec.Command(sks, append(args, "-basedir", dir, "-stdoutlog")...)
		cmd.Dir = dir
		cmd.Stdout = io.Discard
		m, err := timed(cmd)
		total.wall += m.wall
		total.maxRSS = max(total.maxRSS, m.maxRSS)
		return err
	}
	if err := step(append([]string{"build"}, append(files, "-n", "10", "-cache", "100")...)...); err != nil {
		return total, fmt.Errorf("sks build: %w", err)
	}
	var err error
	for try := 0; try < 3; try++ {
		if err = step("cleandb"); err == nil {
			break
		}
	}
	if err != nil {
		return total, fmt.Errorf("sks cleandb: %w", err)
	}
	if err := step("pbuild", "-cache", "20", "-ptree_cache", "70"); err != nil {
		return total, fmt.Errorf("sks pbuild: %w", err)
	}
	return total, nil
}

func median(ms []measure) measure {
	s := append([]measure(nil), ms...)
	sort.Slice(s, func(i, j int) bool { return s[i].wall < s[j].wall })
	m := s[len(s)/2]
	rss := make([]int64, len(ms))
	for i, x := range ms {
		rss[i] = x.maxRSS
	}
	sort.Slice(rss, func(i, j int) bool { return rss[i] < rss[j] })
	m.maxRSS = rss[len(rss)/2]
	return m
}

func joinInts(ns []int) string {
	var parts []string
	for _, n := range ns {
		parts = append(parts, fmt.Sprint(n))
	}
	return strings.Join(parts, ",")
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }
func secs(d time.Duration) float64        { return d.Seconds() }
func mib(b int64) float64                 { return float64(b) / (1 << 20) }

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func format(c config, rows []row, dumpBytes int64) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "<!-- grapevine-bench:start -->\n")
	fmt.Fprintf(&b, "Measured %s on %s (%d CPUs, %s/%s), corpus %d keys seed %d (%.0f MB of dump files), median of %d runs.\n",
		time.Now().UTC().Format("2006-01-02"), host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, c.keys, c.seed, float64(dumpBytes)/1e6, c.runs)
	switch {
	case c.getOnly:
		fmt.Fprintf(&b, "Command: `go run ./cmd/grapevine-bench -get-only -keys %d -runs %d -duration %s`\n\n", c.keys, c.runs, c.duration)
	case c.reconOnly:
		fmt.Fprintf(&b, "Command: `go run ./cmd/grapevine-bench -keys %d -recon-only -recon-runs %d -recon-diff %s -recon-empty=%v`\n\n", c.keys, c.reconRuns, joinInts(c.reconDiffs), c.reconEmpty)
	case c.http:
		fmt.Fprintf(&b, "Command: `go run ./cmd/grapevine-bench -keys %d -runs %d -duration %s -upload-keys %d`\n\n", c.keys, c.runs, c.duration, c.uploadKeys)
	default:
		fmt.Fprintf(&b, "Command: `go run ./cmd/grapevine-bench -keys %d -runs %d -http=false`\n\n", c.keys, c.runs)
	}
	fmt.Fprintf(&b, "| measurement | grapevine | SKS 1.1.6 | grapevine/SKS |\n|---|---:|---:|---:|\n")
	for _, r := range rows {
		if r.text[0] != "" {
			fmt.Fprintf(&b, "| %s | %s | %s | — |\n", r.name, r.text[0], r.text[1])
			continue
		}
		prec := r.prec
		switch {
		case prec == 0:
			prec = 1
		case prec < 0:
			prec = 0
		}
		ratio := "—"
		sk := "—"
		if r.sk > 0 {
			ratio = fmt.Sprintf("%.2f×", r.grapevine/r.sk)
			sk = fmt.Sprintf("%.*f", prec, r.sk)
		}
		fmt.Fprintf(&b, "| %s | %.*f | %s | %s |\n", r.name, prec, r.grapevine, sk, ratio)
	}
	fmt.Fprintf(&b, "<!-- grapevine-bench:end -->\n")
	return b.String()
}

// writeSection replaces the generated section of a Markdown file (between
// the start/end markers), or appends it.
func writeSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	i := strings.Index(s, "<!-- grapevine-bench:start -->")
	j := strings.Index(s, "<!-- grapevine-bench:end -->")
	if i >= 0 && j > i {
		s = s[:i] + section + s[j+len("<!-- grapevine-bench:end -->\n"):]
	} else {
		s += "\n" + section
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
