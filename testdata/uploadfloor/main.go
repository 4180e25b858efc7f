// Command uploadfloor measures the floor under grapevine's /pks/add (issue
// 4, docs/benchmarks.md "Uploads (issue 4)"): what keys/s and CPU per key
// net/http plus one durable eventlog.Log.Append per request cost on this
// machine, with no parsing and no projections. It uses uploadprof's client
// (corpus.Upload) and request bodies (-warm then -n keys of the seed-1001
// corpus, one armored key per POST), against a server process it starts
// from its own binary (-serve): the handler reads the body, appends it as
// one KeySubmitted event (the urlencoded armor, ≈ 2× the key's bytes: the
// write is a little larger than grapevine's) and answers 200 once Append
// returns, i.e. once the batch holding it is fsynced.
//
// It prints keys/s, the server's utime+stime per key (/proc/PID/stat), the
// client's (getrusage), fsyncs per key and keys per group commit. With
// -fsync N it first measures the disk: N serial 2 KiB writes each followed
// by fsync on a file in -dir (p50/p90/p99/max), and N single-event Appends
// of 2 KiB through eventlog (write, fsync, stat). -nosync runs the floor
// server with Config.NoSync (what net/http and the log cost without the
// disk). -prof writes a CPU profile of the server during the measured
// burst. -dir must be on the disk under test (the stores live in /tmp).
//
//	go run ./testdata/uploadfloor -dir /tmp/floor -n 12000 -fsync 2000
package main

import (
	"context"
	"encoding/json"
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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

func main() {
	dir := flag.String("dir", "", "scratch directory on the disk under test (emptied first)")
	n := flag.Int("n", 12000, "keys to upload")
	warm := flag.Int("warm", 500, "keys uploaded before measuring")
	clients := flag.Int("c", 8, "concurrent clients")
	fsyncN := flag.Int("fsync", 0, "measure N serial 2 KiB write+fsync and N single-event Appends first")
	noSync := flag.Bool("nosync", false, "floor server without fsync (eventlog NoSync)")
	serve := flag.String("serve", "", "internal: run the floor server on this address with its log in -dir")
	prof := flag.String("prof", "", "write a CPU profile of the floor server's burst here")
	flag.Parse()
	if *dir == "" {
		log.Fatal("uploadfloor: -dir is required")
	}
	if *serve != "" {
		if err := runServer(*serve, *dir, *noSync, *prof); err != nil {
			log.Fatal(err)
		}
		return
	}
	if err := os.RemoveAll(*dir); err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	if *fsyncN > 0 {
		if err := measureFsync(*dir, *fsyncN); err != nil {
			log.Fatal(err)
		}
	}
	if *n > 0 {
		if err := measureFloor(*dir, *n, *warm, *clients, *noSync, *prof); err != nil {
			log.Fatal(err)
		}
	}
}

// measureFsync prints the latency distribution of a durable 2 KiB append on
// this disk, once as write+fsync on a plain file and once through
// eventlog.Log.Append (one caller: no group commit).
func measureFsync(dir string, n int) error {
	rec := make([]byte, 2048)
	for i := range rec {
		rec[i] = byte(i)
	}
	f, err := os.OpenFile(filepath.Join(dir, "fsync.dat"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := f.Write(rec); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
	}
	f.Close()
	fmt.Printf("write+fsync 2 KiB, %d serial: %s\n", n, dist(lat))

	l, err := eventlog.Open(filepath.Join(dir, "fsynclog"), eventlog.Config{})
	if err != nil {
		return err
	}
	defer l.Close()
	lat = lat[:0]
	ctx := context.Background()
	for range n {
		t0 := time.Now()
		if _, err := l.Append(ctx, &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Key: rec}); err != nil {
			return err
		}
		lat = append(lat, time.Since(t0))
	}
	fmt.Printf("eventlog Append 2 KiB, %d serial: %s\n", n, dist(lat))
	return nil
}

func dist(d []time.Duration) string {
	slices.Sort(d)
	q := func(p float64) string {
		return fmt.Sprintf("%.2f", float64(d[int(p*float64(len(d)-1))])/1e6)
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return fmt.Sprintf("p50 %s p90 %s p99 %s max %s mean %.2f ms", q(0.5), q(0.9), q(0.99), q(1), float64(sum)/float64(len(d))/1e6)
}

// measureFloor starts the floor server and uploads to it as uploadprof does.
func measureFloor(dir string, n, warm, clients int, noSync bool, prof string) error {
	ctx := context.Background()
	var buf strings.Builder
	if _, err := corpus.Generate(ctx, &buf, corpus.Options{N: warm + n, Seed: 1001}); err != nil {
		return err
	}
	bodies, err := corpus.UploadBodies([]byte(buf.String()))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-serve", addr, "-dir", filepath.Join(dir, "log")}
	if noSync {
		args = append(args, "-nosync")
	}
	if prof != "" {
		abs, err := filepath.Abs(prof)
		if err != nil {
			return err
		}
		args = append(args, "-prof", abs)
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	base := "http://" + addr
	for {
		if _, err := http.Get(base + "/stats"); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	corpus.Upload(ctx, base, bodies[:warm], clients)
	bodies = bodies[warm:]
	time.Sleep(500 * time.Millisecond)
	s0, err := stats(base)
	if err != nil {
		return err
	}
	c0 := procCPU(cmd.Process.Pid)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	if prof != "" {
		http.Get(base + "/prof/start")
	}
	up := corpus.Upload(ctx, base, bodies, clients)
	if prof != "" {
		http.Get(base + "/prof/stop")
	}
	c1 := procCPU(cmd.Process.Pid)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	s1, err := stats(base)
	if err != nil {
		return err
	}
	keys := float64(up.Keys)
	cl := tv(ru1.Utime) + tv(ru1.Stime) - tv(ru0.Utime) - tv(ru0.Stime)
	batches := float64(s1.Batches - s0.Batches)
	fmt.Printf("floor%s: keys %d errors %d wall %.2fs keys/s %.0f | server CPU %.0f us/key, client %.0f us/key | batches %.0f (%.2f keys each) | longest %.1f ms | load %s\n",
		map[bool]string{true: " (nosync)"}[noSync], up.Keys, up.Errors, up.Wall.Seconds(), keys/up.Wall.Seconds(),
		(c1-c0)/keys*1e6, cl/keys*1e6, batches, keys/batches, float64(up.Max)/1e6, loadavg())
	fmt.Printf("timeline (answers per 200ms): %v\n", up.Timeline(200*time.Millisecond))
	return nil
}

// runServer is the floor server: net/http, the body read whole, one durable
// Append per request, a short 200.
func runServer(addr, dir string, noSync bool, prof string) error {
	l, err := eventlog.Open(dir, eventlog.Config{NoSync: noSync})
	if err != nil {
		return err
	}
	defer l.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pks/add", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if _, err := l.Append(context.WithoutCancel(r.Context()), &eventlog.Event{
			Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: time.Now(), Key: body,
		}); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		io.WriteString(w, "<html><body>Key block added to key server database.</body></html>\n")
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(l.Stats())
	})
	var pf *os.File
	mux.HandleFunc("GET /prof/start", func(w http.ResponseWriter, r *http.Request) {
		var err error
		if pf, err = os.Create(prof); err == nil {
			err = pprof.StartCPUProfile(pf)
		}
		if err != nil {
			log.Print(err)
		}
	})
	mux.HandleFunc("GET /prof/stop", func(w http.ResponseWriter, r *http.Request) {
		pprof.StopCPUProfile()
		pf.Close()
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	return srv.ListenAndServe()
}

func stats(base string) (eventlog.Stats, error) {
	var s eventlog.Stats
	resp, err := http.Get(base + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		log.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}
