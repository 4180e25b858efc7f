package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

func TestAllApplied(t *testing.T) {
	for _, tc := range []struct {
		stats string
		want  bool
	}{
		{"keys: 3\nlog_offset: 7\napplied_keys: 7\napplied_hockeypuck: 7\n", true},
		{"keys: 3\nlog_offset: 7\napplied_keys: 7\napplied_hockeypuck: 5\n", false},
		{"log_offset: 7\napplied_keys: 6\napplied_hockeypuck: 7\n", false},
		{"log_offset: 7\n", false},                    // no projection named: not a stats answer
		{"applied_keys: 7\n", false},                  // no log offset
		{"log_offset:  12 \napplied_keys:12\n", true}, // spacing as stats may print it
	} {
		if got := allApplied(tc.stats); got != tc.want {
			t.Errorf("allApplied(%q) = %v, want %v", tc.stats, got, tc.want)
		}
	}
}

// TestParseWrkTail: the Lua script's done line gives p99.9 and the longest
// request in whole microseconds, which win over the rounded Latency line.
func TestParseWrkTail(t *testing.T) {
	out := `Running 15s test @ http://127.0.0.1:1
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    6.20ms  97.58ms   91.00%
    Req/Sec     9.20k     1.10k   12.00k    70.00%
  Latency Distribution
     50%    2.99ms
     75%    4.00ms
     90%    8.00ms
     99%   30.54ms
  276249 requests in 15.07s, 700.00MB read
Requests/sec:  18333.12
Transfer/sec:     46.00MB
tail latency (us): p99.9 62446 max 97584
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.p999 != 62446*time.Microsecond || r.max != 97584*time.Microsecond || r.p99 != 30540*time.Microsecond || r.requests != 276249 {
		t.Fatalf("parsed %+v", r)
	}
}

// TestFreePortsOutsideEphemeralRange: ports come from below the kernel's
// ephemeral range (never handed to an outgoing connection), are distinct
// across calls, and can be bound.
func TestFreePortsOutsideEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for call := 0; call < 50; call++ {
		ports, err := freePorts(4)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if p < portBase || p >= portLimit {
				t.Fatalf("port %d outside %d..%d", p, portBase, portLimit)
			}
			if seen[p] {
				t.Fatalf("port %d returned twice", p)
			}
			seen[p] = true
		}
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", must(freePorts(1))[0]))
	if err != nil {
		t.Fatalf("a returned port cannot be bound: %v", err)
	}
	ln.Close()
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestSettleWaitsForBusyServer: settle returns only once no server uses
// CPU — here after a busy process is stopped, not before.
func TestSettleWaitsForBusyServer(t *testing.T) {
	busy := exec.Command("sh", "-c", "while :; do :; done")
	idle := exec.Command("sleep", "60")
	for _, c := range []*exec.Cmd{busy, idle} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func(c *exec.Cmd) { c.Process.Kill(); c.Wait() }(c)
	}
	var stopped atomic.Bool
	go func() {
		time.Sleep(1500 * time.Millisecond)
		stopped.Store(true)
		busy.Process.Kill()
	}()
	settle(context.Background(), []*server{{cmd: busy}, {cmd: idle}})
	if !stopped.Load() {
		t.Fatal("settle returned while a server was busy")
	}
}

func TestParseDirty(t *testing.T) {
	meminfo := "MemTotal:       24576000 kB\nDirty:              1536 kB\nWriteback:           512 kB\nAnonPages:        100000 kB\n"
	got, err := parseDirty(meminfo)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(2048 << 10); got != want {
		t.Errorf("parseDirty = %d, want %d", got, want)
	}
	if _, err := parseDirty("MemTotal: 1 kB\n"); err == nil {
		t.Error("parseDirty accepted a text without Dirty and Writeback")
	}
	if _, err := parseDirty("Dirty: x kB\nWriteback: 0 kB\n"); err == nil {
		t.Error("parseDirty accepted a malformed Dirty line")
	}
}
