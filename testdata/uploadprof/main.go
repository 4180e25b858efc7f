// Command uploadprof measures the CPU an upload costs (issue 4,
// docs/benchmarks.md "Uploads"): it starts grapevine serve on a copy of an
// imported basedir (with GRAPEVINE_PPROF=1 and a metrics listener),
// uploads -warm keys, waits for both projections, then uploads -n fresh
// keys of a second corpus (seed 1001) from -c clients, one armored key per
// POST /pks/add, and prints the daemon's utime+stime per key (until both
// projections have applied the last upload), the client's, and fsyncs per
// key; -prof writes a CPU profile of the daemon (-profsec seconds from the
// first upload), -clientprof one of its own upload clients. Wall-clock keys/s is
// printed too but means little on a loaded machine; so are the daemon's
// minor page faults per key during the burst (fresh memory: the heap
// growing).
//
// To upload in the state grapevine-bench uploads in — after minutes of
// lookups, then 15 s idle while SKS is measured, with no warm-up — use
// -warm 0 -getwarm 15s -getpaths WORK/wrk-paths.txt. -warmidle idles after
// the warm-up uploads, -timeline prints the burst's progress, -trace and
// -allocprof capture the daemon's execution trace and allocations, -perf a
// profile of the whole machine (the kernel's share). The file systems are
// synced before the burst unless -sync=false: a store copied just before
// would otherwise still be written back during it.
//
//	go run ./testdata/uploadprof -bin ./grapevine -dir store -mkstore 20000
//	go run ./testdata/uploadprof -bin ./grapevine -dir store -prof cpu.prof
//
// It writes sksconf into -dir and adds keys to it: run it on a copy.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

func main() {
	bin := flag.String("bin", "./grapevine", "")
	dir := flag.String("dir", "", "basedir (imported)")
	mk := flag.Int("mkstore", 0, "generate+import a store of N keys into dir and exit")
	n := flag.Int("n", 3000, "keys to upload")
	off := flag.Int("off", 0, "skip keys of the upload corpus")
	clients := flag.Int("c", 8, "")
	prof := flag.String("prof", "", "write CPU profile here")
	profSec := flag.Int("profsec", 30, "seconds the CPU profile covers from the first upload (less than the burst to leave the Hockeypuck dataset's catch-up out)")
	warm := flag.Int("warm", 500, "keys uploaded before measuring")
	traceFile := flag.String("trace", "", "write an execution trace of the daemon here, -tracesec long, starting -traceafter after the burst starts")
	traceSec := flag.Int("tracesec", 1, "seconds the -trace covers")
	traceAfter := flag.Duration("traceafter", 0, "start the -trace this long after the burst starts")
	preread := flag.Bool("preread", false, "read every file of the store's Pebble directory just before the burst: pages the machine reclaimed while they sat idle (this VM's DAMON pages out page cache idle for a minute) are cached again")
	syncFirst := flag.Bool("sync", true, "sync(2) the file systems just before the burst, so that no other file's data is still being written back during it: ext4 then makes the log's fsyncs wait for that data (a store copied just before, 531 MB, cost the bench's-state burst 20-25 %: docs/benchmarks.md, session 19); -sync=false measures with it")
	timeline := flag.Duration("timeline", 0, "print the answers that arrived in each interval of this length during the burst")
	warmIdle := flag.Duration("warmidle", 0, "idle this long after the warm-up uploads (and the projections' catch-up) before the burst")
	getWarm := flag.Duration("getwarm", 0, "before the warm-up uploads, request the -getpaths (16 connections) for this long and then idle -getidle: the state grapevine-bench uploads in, after its lookup rows")
	getPaths := flag.String("getpaths", "", "with -getwarm: a file of request paths, one per line (grapevine-bench leaves its every-key row's in WORK/wrk-paths.txt)")
	getIdle := flag.Duration("getidle", 15*time.Second, "idle time after -getwarm (grapevine-bench measures SKS's row meanwhile)")
	allocProf := flag.String("allocprof", "", "write the daemon's allocation profile before the burst to FILE.before and after it to FILE.after (go tool pprof -diff_base FILE.before ... FILE.after)")
	clientProf := flag.String("clientprof", "", "write a CPU profile of this client's burst here")
	perfFile := flag.String("perf", "", "write a system-wide perf profile (perf record -a -g) of the first -profsec seconds of the burst here: the kernel's share (loopback TCP, fsync, page faults) that the daemon's pprof profile cannot split")
	perfEvent := flag.String("perfevent", "cpu-clock", "the event -perf samples (page-faults: every page fault, with its call stack)")
	flag.Parse()
	ctx := context.Background()
	if *mk > 0 {
		dump := *dir + ".dump"
		if err := os.MkdirAll(dump, 0o755); err != nil {
			log.Fatal(err)
		}
		if _, err := corpus.GenerateDump(ctx, dump, corpus.Options{N: *mk, Seed: 1}, 15000); err != nil {
			log.Fatal(err)
		}
		c := exec.Command(*bin, "import", "--basedir", *dir, dump)
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		if err := c.Run(); err != nil {
			log.Fatal(err)
		}
		return
	}
	var buf bytes.Buffer
	if _, err := corpus.Generate(ctx, &buf, corpus.Options{N: *off + *warm + *n, Seed: 1001}); err != nil {
		log.Fatal(err)
	}
	bodies, err := corpus.UploadBodies(buf.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	var paths []string
	if *getWarm > 0 {
		b, err := os.ReadFile(*getPaths)
		if err != nil {
			log.Fatal(err)
		}
		paths = strings.Fields(string(b))
		if len(paths) == 0 {
			log.Fatalf("-getpaths %s: no paths", *getPaths)
		}
	}
	bodies = bodies[*off:]
	p := freePorts(3)
	conf := fmt.Sprintf("hostname: 127.0.0.254\nhkp_address: 127.0.0.1\nhkp_port: %d\nrecon_address: 127.0.0.1\nrecon_port: %d\ndontgossip:\ngrapevine_metrics_address: 127.0.0.1:%d\n", p[0], p[1], p[2])
	if err := os.WriteFile(filepath.Join(*dir, "sksconf"), []byte(conf), 0o644); err != nil {
		log.Fatal(err)
	}
	abs, _ := filepath.Abs(*bin)
	cmd := exec.Command(abs, "serve", "--basedir", *dir)
	cmd.Dir = *dir
	cmd.Env = append(os.Environ(), "GRAPEVINE_PPROF=1")
	lf, err := os.Create(*dir + ".serve.log")
	if err != nil {
		log.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	pid := cmd.Process.Pid
	base := fmt.Sprintf("http://127.0.0.1:%d", p[0])
	mbase := fmt.Sprintf("http://127.0.0.1:%d", p[2])
	for {
		m := metrics(mbase)
		if m != nil && m[`grapevine_projection_lag_events{projection="hockeypuck"}`] == 0 && m[`grapevine_projection_lag_events{projection="sks"}`] == 0 {
			if _, err := http.Get(base + "/pks/lookup?op=stats"); err == nil {
				break
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	if *getWarm > 0 {
		n, errs := lookups(base, paths, 16, *getWarm)
		fmt.Printf("get warm-up: %d lookups, %d not 200, then %v idle\n", n, errs, *getIdle)
		time.Sleep(*getIdle)
	}
	corpus.Upload(context.Background(), base, bodies[:*warm], *clients)
	bodies = bodies[*warm:]
	for {
		m := metrics(mbase)
		if m[`grapevine_projection_lag_events{projection="hockeypuck"}`] == 0 && m[`grapevine_projection_lag_events{projection="sks"}`] == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(1*time.Second + *warmIdle)
	if *syncFirst {
		syscall.Sync()
	}
	if *preread {
		files, _ := filepath.Glob(filepath.Join(*dir, "grapevine", "db", "*"))
		var n int64
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				n += int64(len(b))
			}
		}
		fmt.Printf("preread %d files, %d MB\n", len(files), n>>20)
	}
	m0 := metrics(mbase)
	if *allocProf != "" {
		saveProfile(mbase+"/debug/pprof/allocs", *allocProf+".before")
	}
	p0 := readProcCounters(pid)
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	profDone := make(chan []byte, 1)
	if *prof != "" {
		go func() {
			resp, err := http.Get(mbase + "/debug/pprof/profile?seconds=" + strconv.Itoa(*profSec))
			if err != nil {
				log.Print(err)
				profDone <- nil
				return
			}
			b, _ := io.ReadAll(resp.Body)
			profDone <- b
		}()
		time.Sleep(200 * time.Millisecond)
	}
	if *clientProf != "" {
		f, err := os.Create(*clientProf)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
	}
	var perfCmd *exec.Cmd
	if *perfFile != "" {
		perfCmd = exec.Command("perf", "record", "-q", "-a", "-g", "-e", *perfEvent, "-o", *perfFile, "--", "sleep", strconv.Itoa(*profSec))
		perfCmd.Stderr = os.Stderr
		if err := perfCmd.Start(); err != nil {
			log.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // perf's own start-up
	}
	traceDone := make(chan struct{})
	if *traceFile != "" {
		go func() {
			defer close(traceDone)
			time.Sleep(*traceAfter)
			saveProfile(mbase+"/debug/pprof/trace?seconds="+strconv.Itoa(*traceSec), *traceFile)
		}()
	} else {
		close(traceDone)
	}
	start := time.Now()
	up := corpus.Upload(context.Background(), base, bodies, *clients)
	if *timeline > 0 {
		fmt.Printf("timeline (answers per %v): %v\n", *timeline, up.Timeline(*timeline))
	}
	if *clientProf != "" {
		pprof.StopCPUProfile()
	}
	keys, errs := up.Keys, up.Errors
	wall := time.Since(start)
	p1 := readProcCounters(pid)
	if *allocProf != "" {
		saveProfile(mbase+"/debug/pprof/allocs", *allocProf+".after")
	}
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	// wait for projections to finish the async work
	for {
		m := metrics(mbase)
		if m[`grapevine_projection_lag_events{projection="hockeypuck"}`] == 0 && m[`grapevine_projection_lag_events{projection="sks"}`] == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c2 := readProcCounters(pid).cpu
	c0, c1 := p0.cpu, p1.cpu
	m1 := metrics(mbase)
	cl := (tv(ru1.Utime) + tv(ru1.Stime)) - (tv(ru0.Utime) + tv(ru0.Stime))
	fs := m1["grapevine_log_fsyncs_total"] - m0["grapevine_log_fsyncs_total"]
	ev := m1["grapevine_log_appended_events_total"] - m0["grapevine_log_appended_events_total"]
	fmt.Printf("keys %d errors %d wall %.2fs keys/s %.0f | server CPU during %.0f us/key, incl. catch-up %.0f us/key, client %.0f us/key | total %.0f us/key | events %v fsyncs %v (%.3f/key) | faults during %.1f/key, %d major | load %s\n",
		keys, errs, wall.Seconds(), float64(keys)/wall.Seconds(),
		(c1-c0)/float64(keys)*1e6, (c2-c0)/float64(keys)*1e6, cl/float64(keys)*1e6, (c2-c0+cl)/float64(keys)*1e6,
		ev, fs, fs/float64(keys), float64(p1.minor-p0.minor)/float64(keys), p1.major-p0.major, loadavg())
	<-traceDone
	if perfCmd != nil {
		if err := perfCmd.Wait(); err != nil {
			log.Fatal(err)
		}
	}
	if *prof != "" {
		// The profile runs its fixed -profsec.
		if err := os.WriteFile(*prof, <-profDone, 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// procCounters is what /proc/PID/stat says of the process so far: its
// utime+stime in seconds, and its minor and major page faults (major:
// pages read back from disk, the binary's code among them). One read, so
// the three are of the same moment.
type procCounters struct {
	cpu          float64
	minor, major int64
}

func readProcCounters(pid int) procCounters {
	f := procStat(pid)
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	minor, _ := strconv.ParseInt(f[7], 10, 64)
	major, _ := strconv.ParseInt(f[9], 10, 64)
	return procCounters{cpu: (u + st) / 100, minor: minor, major: major}
}

// procStat returns the fields of /proc/PID/stat after the command name,
// the process state first.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		log.Fatal(err)
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
}

// lookups requests paths in turn from conns connections for d, and
// returns how many requests it made and how many were not answered 200.
func lookups(base string, paths []string, conns int, d time.Duration) (n, errs int64) {
	var wg sync.WaitGroup
	var total, bad atomic.Int64
	deadline := time.Now().Add(d)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for i := c; time.Now().Before(deadline); i += conns {
				resp, err := client.Get(base + paths[i%len(paths)])
				total.Add(1)
				if err != nil {
					if bad.Add(1) == 1 {
						log.Printf("lookup: %v", err)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					if bad.Add(1) == 1 {
						log.Printf("lookup %s: %s", resp.Request.URL, resp.Status)
					}
				}
			}
		}()
	}
	wg.Wait()
	return total.Load(), bad.Load()
}

// saveProfile writes what url answers into file.
func saveProfile(url, file string) {
	resp, err := http.Get(url)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		log.Fatal(err)
	}
}

func metrics(base string) map[string]float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, _ := strconv.ParseFloat(l[i+1:], 64)
		m[l[:i]] = v
	}
	return m
}

func freePorts(n int) []int {
	var out []int
	var ls []net.Listener
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}
