//go:build linux

package eventlog_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/rs/zerolog"
)

// The crash tests re-exec the test binary: the child runs one *Child test,
// selected by -test.run and told its job by these variables.
const (
	envCrashDir = "EVENTLOG_TEST_CRASH_DIR"
	envRound    = "EVENTLOG_TEST_ROUND"
	envFsizeDir = "EVENTLOG_TEST_FSIZE_DIR"
	envSeed     = "EVENTLOG_TEST_SEED" // overrides the crash test's seed
)

func crashKey(peer string) []byte {
	return bytes.Repeat([]byte(peer+";"), 1+len(peer)*7%50)
}

// TestCrashChild appends from several goroutines until killed, printing
// "ack <index> <peer>" for every event of every Append that returned.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("helper process for TestKillRecovery")
	}
	round, _ := strconv.Atoi(os.Getenv(envRound))
	cfg := eventlog.DefaultConfig()
	cfg.SegmentSize = 32 << 10 // cross segment boundaries often
	l, err := eventlog.Open(dir, cfg)
	if err != nil {
		fmt.Printf("error open: %v\n", err)
		os.Exit(3)
	}
	deadline := time.Now().Add(30 * time.Second) // never outlive a lost parent
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
			for n := 0; time.Now().Before(deadline); n++ {
				batch := 1 + rng.IntN(8)
				events := make([]*eventlog.Event, batch)
				for j := range events {
					peer := fmt.Sprintf("r%d-g%d-n%d-e%d", round, g, n, j)
					events[j] = &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginRecon,
						Peer: peer, Key: crashKey(peer)}
				}
				last, err := l.Append(context.Background(), events...)
				if err != nil {
					fmt.Printf("error append: %v\n", err)
					os.Exit(3)
				}
				var out strings.Builder // one write per batch: < PIPE_BUF, so atomic
				for j, e := range events {
					fmt.Fprintf(&out, "ack %d %s\n", last-eventlog.Index(batch-1-j), e.Peer)
				}
				mu.Lock()
				os.Stdout.WriteString(out.String())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	os.Exit(0)
}

// TestKillRecovery SIGKILLs a child that appends in a loop, at random
// moments (some during Open and its recovery), and checks after each kill
// that every Append that returned is in the reopened log.
func TestKillRecovery(t *testing.T) {
	if os.Getenv(envCrashDir) != "" {
		t.Skip("in the child")
	}
	seed := uint64(1)
	if s := os.Getenv(envSeed); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (set %s to repeat another)", seed, envSeed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	rounds := 12
	if testing.Short() {
		rounds = 4
	}
	acked := map[eventlog.Index]string{}
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envRound+"="+strconv.Itoa(round))
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random number of acks, or after a random delay
		// that may fall before the first ack.
		killAfter := 1 + rng.IntN(400)
		var timer *time.Timer
		if rng.IntN(3) == 0 {
			killAfter = -1
			timer = time.AfterFunc(time.Duration(rng.IntN(300))*time.Millisecond, func() { cmd.Process.Kill() })
		}
		r := bufio.NewReader(stdout)
		n := 0
		var lines []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break // EOF after the kill; a line without \n is dropped
			}
			lines = append(lines, line)
			if strings.HasPrefix(line, "ack ") {
				n++
				if n == killAfter {
					cmd.Process.Kill()
				}
			}
		}
		if timer != nil {
			timer.Stop()
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v, want SIGKILL; output: %q", round, err, lines)
		}
		for _, line := range lines {
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "ack" {
				t.Fatalf("round %d: child said %q", round, line)
			}
			i, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatalf("round %d: bad line %q", round, line)
			}
			if prev, ok := acked[eventlog.Index(i)]; ok && prev != f[2] {
				t.Fatalf("round %d: index %d acknowledged for %s, earlier for %s", round, i, f[2], prev)
			}
			acked[eventlog.Index(i)] = f[2]
		}
		checkAcked(t, dir, acked)
		t.Logf("round %d: killed after %d acks (target %d), %d acknowledged in all", round, n, killAfter, len(acked))
	}
}

func checkAcked(t *testing.T, dir string, acked map[eventlog.Index]string) {
	t.Helper()
	var buf logBuffer
	cfg := testConfig(t, &buf)
	cfg.NoSync = false
	l, err := eventlog.Open(dir, cfg)
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer l.Close()
	if warns := buf.lines("truncated torn log tail"); len(warns) > 0 {
		t.Logf("recovery: %s", warns[0])
	}
	last := l.LastIndex()
	for i, peer := range acked {
		if i > last {
			t.Fatalf("acknowledged index %d (%s) lost: LastIndex %d; log: %s", i, peer, last, buf.String())
		}
		e, err := l.Read(i)
		if err != nil {
			t.Fatalf("Read(%d): %v", i, err)
		}
		if e.Peer != peer || !bytes.Equal(e.Key, crashKey(peer)) {
			t.Fatalf("index %d holds %s, acknowledged for %s", i, e.Peer, peer)
		}
	}
	// Every entry, acknowledged or not, is whole and the indexes are dense.
	it := l.NewIterator(0, 0)
	var n eventlog.Index
	for {
		i, e, err := it.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("iterate: %v", err)
		}
		if n++; i != n || !bytes.Equal(e.Key, crashKey(e.Peer)) {
			t.Fatalf("entry %d (want index %d): peer %s, key of %d bytes", i, n, e.Peer, len(e.Key))
		}
	}
	if n != last {
		t.Fatalf("iterated %d entries, LastIndex %d", n, last)
	}
}

// TestWriteFailureChild appends until RLIMIT_FSIZE makes a write fail (a
// full disk as far as the log can tell: the write stops part-way), then
// lifts the limit: appends resume by themselves, at the next index, with
// the torn bytes gone.
func TestWriteFailureChild(t *testing.T) {
	dir := os.Getenv(envFsizeDir)
	if dir == "" {
		t.Skip("helper process for TestWriteFailure")
	}
	cfg := eventlog.DefaultConfig() // not testConfig: this test logs an error
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t))
	l := mustOpen(t, dir, cfg)
	const acked = 5
	for k := 1; k <= acked; k++ {
		mustAppend(t, l, keyEvent(k))
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	seg := segmentFiles(t, dir)[0]
	size := fileSize(t, seg)
	lim := syscall.Rlimit{Cur: uint64(size) + 20, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	_, err := l.Append(context.Background(), keyEvent(acked+1))
	if err == nil || !errors.Is(err, eventlog.ErrWriteFailed) || !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("Append past RLIMIT_FSIZE: err = %v, want ErrWriteFailed wrapping the write error (EFBIG)", err)
	}
	if got := fileSize(t, seg); got != size+20 {
		t.Fatalf("segment size %d, want %d (a torn write)", got, size+20)
	}
	// Still full: every attempt fails, with the cause, and stores nothing.
	for try := 0; try < 3; try++ {
		_, err2 := l.Append(context.Background(), keyEvent(acked+1))
		if !errors.Is(err2, eventlog.ErrWriteFailed) || !errors.Is(err2, syscall.EFBIG) {
			t.Fatalf("Append on a full log: err = %v, want ErrWriteFailed wrapping EFBIG", err2)
		}
		time.Sleep(300 * time.Millisecond) // past the recovery interval: a real retry
	}
	if got := l.LastIndex(); got != acked {
		t.Fatalf("LastIndex = %d after the failed writes, want %d", got, acked)
	}
	checkEntry(t, l, acked, acked) // reads go on

	// Space returns: the next appends succeed, without a reopen.
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	var got eventlog.Index
	for try := 0; ; try++ {
		got, err = l.Append(context.Background(), keyEvent(acked+1))
		if err == nil {
			break
		}
		if try == 50 {
			t.Fatalf("Append after space returned: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // recovery runs at most every 250 ms
	}
	if got != acked+1 {
		t.Fatalf("first append after recovery at index %d, want %d", got, acked+1)
	}
	mustAppend(t, l, keyEvent(acked+2))
	for k := 1; k <= acked+2; k++ {
		checkEntry(t, l, eventlog.Index(k), k)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close after recovery: %v", err)
	}
	reopenExpect(t, dir, acked+2, 0)
}

// TestSyncFailureRecovers: a batch whose fsync fails is not acknowledged,
// its bytes are truncated, and the log goes on at the same index, also
// across segment boundaries (the failed batch may start a segment).
func TestSyncFailureRecovers(t *testing.T) {
	dir := t.TempDir()
	cfg := eventlog.DefaultConfig()
	cfg.Logger = zerolog.Nop()
	cfg.SegmentSize = 4 << 10
	l := mustOpen(t, dir, cfg)
	n := 0
	for ; n < 10; n++ {
		mustAppend(t, l, keyEvent(n+1))
	}
	injected := errors.New("injected fsync failure")
	for round := 0; round < 12; round++ {
		eventlog.SetAfterWriteHook(l, func() error { return injected })
		var big []*eventlog.Event // ~6 KiB: the failed batch starts a segment
		for j := range 20 {
			big = append(big, keyEvent(36+37*j))
		}
		if _, err := l.Append(context.Background(), big...); !errors.Is(err, eventlog.ErrWriteFailed) || !errors.Is(err, injected) {
			t.Fatalf("round %d: Append with a failing fsync: %v, want ErrWriteFailed wrapping it", round, err)
		}
		if got := l.LastIndex(); got != eventlog.Index(n) {
			t.Fatalf("round %d: LastIndex %d after a failed batch, want %d", round, got, n)
		}
		eventlog.SetAfterWriteHook(l, nil)
		var idx eventlog.Index
		var err error
		for try := 0; ; try++ {
			batch := []*eventlog.Event{keyEvent(n + 1), keyEvent(n + 2), keyEvent(n + 3), keyEvent(n + 4), keyEvent(n + 5)}
			if idx, err = l.Append(context.Background(), batch...); err == nil {
				break
			}
			if try == 50 {
				t.Fatalf("round %d: no recovery: %v", round, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		n += 5
		if idx != eventlog.Index(n) {
			t.Fatalf("round %d: appended at %d, want %d", round, idx, n)
		}
	}
	for k := 1; k <= n; k++ {
		checkEntry(t, l, eventlog.Index(k), k)
	}
	if segs := len(segmentFiles(t, dir)); segs < 2 {
		t.Errorf("only %d segment: the test should cross segment boundaries", segs)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	reopenExpect(t, dir, n, 0)
}

// TestWriteFailure runs TestWriteFailureChild in its own process, since
// RLIMIT_FSIZE applies to the whole process.
func TestWriteFailure(t *testing.T) {
	if os.Getenv(envFsizeDir) != "" {
		t.Skip("in the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriteFailureChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envFsizeDir+"="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestWriteFailureChild")) {
		t.Fatalf("child: %v\n%s", err, out)
	}
}
