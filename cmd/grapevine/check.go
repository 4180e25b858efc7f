package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
)

// checkCmd verifies a basedir: the checksum of every log record, that the
// projections equal a replay of the log, that the prefix tree holds exactly
// the SKS hashes of the hash index, and the key count. It prints one line per
// problem and a summary, and fails (exit status 1) if it found any.
//
// It never changes the log: it reads the segment files itself and opens the
// log read-only, so a damaged record or torn tail is reported as it is
// rather than repaired by the recovery a writer's open runs. It does catch
// the projections up with the log, as every command does.
func (e *env) checkCmd(ctx context.Context, args []string) error {
	fs := e.newFlagSet("check", "[--basedir DIR] [--max-findings N]")
	basedirFlag := fs.String("basedir", ".", "base directory (as in SKS)")
	maxFlag := fs.Int("max-findings", 10, "problems listed per kind; the rest are counted")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("check: unexpected argument %q", rest[0])
	}
	if *maxFlag < 1 {
		return usagef("check: --max-findings %d: must be at least 1", *maxFlag)
	}
	dir := *basedirFlag
	if dir == "" {
		return usagef("check: --basedir must not be empty")
	}
	if _, err := os.Stat(filepath.Join(dir, logDir)); err != nil {
		return fmt.Errorf("check: basedir %s: no grapevine log at %s (check --basedir)", dir, filepath.Join(dir, logDir))
	}
	lock, err := lockBasedir(filepath.Join(dir, lockFile))
	if err != nil {
		// Only one process may hold Pebble: a running daemon checks its
		// own copy, through the admin socket.
		if derr := e.checkThroughDaemon(ctx, dir, *maxFlag); !errors.Is(derr, errNoDaemon) {
			return derr
		}
		return fmt.Errorf("check: %w", err)
	}
	logger := newLogger(e.stderr)
	b := &basedir{dir: dir, lock: lock, logger: logger}
	defer b.Close()
	removeCheckLeftovers(filepath.Join(dir, stateDir))

	out := bufio.NewWriter(e.stdout)
	defer out.Flush()
	var problems int64
	reported := make(map[string]bool) // parts with a finding listed
	say := func(f projections.Finding) {
		reported[f.Part] = true
		fmt.Fprintln(out, f.String())
		out.Flush()
	}

	// 1. Every record of every segment file, read past damage.
	scan, err := scanLogFiles(filepath.Join(dir, logDir))
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	bad := make(map[eventlog.Index]bool)
	for _, f := range scan.findings {
		problems++
		bad[f.Index] = true
		say(f)
	}

	// 2. The projections against a replay of the log.
	lcfg := eventlog.DefaultConfig()
	lcfg.Logger = logger
	lcfg.MaxOpenSegments = basedirConf(dir).MaxOpenSegments
	if b.log, err = eventlog.OpenReadOnly(filepath.Join(dir, logDir), lcfg); err != nil {
		problems++
		say(projections.Finding{Part: projections.CheckLog, Text: err.Error()})
		printLogSummary(out, scan)
		fmt.Fprintln(out, "projections: not checked: the log cannot be opened")
		return checkFailed(problems)
	}
	scfg := projections.DefaultConfig()
	scfg.Logger = logger
	scfg.Log = b.log
	if b.store, err = projections.Open(filepath.Join(dir, dbDir), scfg); err != nil {
		problems++
		say(projections.Finding{Part: projections.CheckProjections, Text: err.Error() + " (grapevine replay rebuilds them)"})
		printLogSummary(out, scan)
		return checkFailed(problems)
	}
	if b.store.Applied() <= b.log.LastIndex() {
		if err := b.catchUp(ctx, e.stderr, "catch up"); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("check: %w", ctx.Err())
			}
			// Check tries again and reports it.
		}
	}
	res, err := b.store.Check(ctx, b.log, projections.CheckOptions{
		TempDir:     filepath.Join(dir, stateDir),
		MaxFindings: *maxFlag,
	}, func(f projections.Finding) {
		if f.Part == projections.CheckLog && f.Index != 0 && bad[f.Index] {
			return // the file scan reported it
		}
		say(f)
	})
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	// A bad record both scans saw is counted twice; the exit status only
	// needs "any".
	problems += res.Findings

	printLogSummary(out, scan)
	switch {
	case res.Replayed != res.Applied:
		// Check reported why.
	case res.Differences == 0:
		fmt.Fprintf(out, "projections: identical to a replay of %d events\n", res.Applied)
	default:
		fmt.Fprintf(out, "projections: %d of %d entries differ from a replay of %d events\n", res.Differences, res.Compared, res.Applied)
	}
	if res.PtreeElements == res.SKSHashes && !reported[projections.CheckPtree] {
		fmt.Fprintf(out, "prefix tree: %d elements, matches hash index\n", res.PtreeElements)
	} else {
		fmt.Fprintf(out, "prefix tree: %d elements, hash index has %d SKS keys: they do not match\n", res.PtreeElements, res.SKSHashes)
	}
	if !reported["Hockeypuck dataset"] {
		fmt.Fprintf(out, "hockeypuck prefix tree: %d elements at index %d, matches its hash index (%d keys)\n", res.HockeypuckPtreeElements, res.HockeypuckApplied, res.HockeypuckHashes)
	} else {
		fmt.Fprintf(out, "hockeypuck prefix tree: %d elements, its hash index has %d keys: they do not match\n", res.HockeypuckPtreeElements, res.HockeypuckHashes)
	}
	if res.Keys == res.KeyCount {
		fmt.Fprintf(out, "keys: %d, matches the stored count\n", res.Keys)
	} else {
		fmt.Fprintf(out, "keys: %d live, stored count %d\n", res.Keys, res.KeyCount)
	}
	return checkFailed(problems)
}

func checkFailed(problems int64) error {
	if problems == 0 {
		return nil
	}
	return fmt.Errorf("check: %s found", plural(int(problems), "problem"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func printLogSummary(w io.Writer, scan *logScan) {
	if len(scan.findings) == 0 {
		fmt.Fprintf(w, "log: %d events, checksums ok\n", scan.records)
		return
	}
	fmt.Fprintf(w, "log: %d records, %s\n", scan.records, plural(len(scan.findings), "problem"))
}

// removeCheckLeftovers deletes replay stores of an interrupted check. The
// caller holds the basedir lock, so none of them is in use.
func removeCheckLeftovers(dir string) {
	old, _ := filepath.Glob(filepath.Join(dir, "grapevine-check-*"))
	for _, d := range old {
		os.RemoveAll(d)
	}
}

// logScan is what scanLogFiles found.
type logScan struct {
	records  int64 // frames read, good or bad
	findings []projections.Finding
}

// scanLogFiles reads every frame of every segment file in dir and decodes
// its record, which verifies the record's checksum (eventlog doc.go:
// frame = uvarint(len(record)) || record). Unlike the log's own reader it
// goes on after a bad record, so that it can list them all, and it never
// repairs anything. A frame whose length runs past the end of its file is
// a torn write; nothing after it in that file is readable.
func scanLogFiles(dir string) (*logScan, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read log directory: %w", err)
	}
	type seg struct {
		first eventlog.Index
		name  string
	}
	var segs []seg
	for _, e := range ents {
		n := e.Name()
		if len(n) != 20 || e.IsDir() {
			continue
		}
		first, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, seg{eventlog.Index(first), n})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].first < segs[j].first })
	scan := &logScan{}
	find := func(idx eventlog.Index, format string, args ...any) {
		scan.findings = append(scan.findings, projections.Finding{Part: projections.CheckLog, Index: idx, Text: fmt.Sprintf(format, args...)})
	}
	next := eventlog.Index(1)
	if len(segs) > 0 {
		next = segs[0].first
	}
	for k, s := range segs {
		if s.first != next {
			find(next, "segment %s starts at index %d, want %d", s.name, s.first, next)
			next = s.first
		}
		n, err := scanSegment(filepath.Join(dir, s.name), k == len(segs)-1, s.first, func(idx eventlog.Index, off int64, what string) {
			find(idx, "index %d (segment %s byte %d): %s", idx, s.name, off, what)
		})
		if err != nil {
			return nil, err
		}
		scan.records += int64(n)
		next += eventlog.Index(n)
	}
	return scan, nil
}

// scanSegment reads the frames of one segment file, calling bad for each
// record that does not decode and for a broken or torn frame, and returns
// the number of frames read.
func scanSegment(path string, tail bool, first eventlog.Index, bad func(eventlog.Index, int64, string)) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	r := bufio.NewReaderSize(f, 256<<10)
	var off int64
	n := 0
	var ev eventlog.Event
	for {
		idx := first + eventlog.Index(n)
		l, err := binary.ReadUvarint(r)
		if err == io.EOF {
			return n, nil
		}
		torn := ""
		if tail {
			torn = " (a torn write if nothing valid follows: the next writer truncates it)"
		}
		if err != nil {
			bad(idx, off, "frame length cut short"+torn)
			return n, nil
		}
		hdr := int64(uvarintSize(l))
		if l > uint64(size-off-hdr) {
			bad(idx, off, fmt.Sprintf("frame of %d bytes runs past the end of the file (%d bytes left), nothing after it is readable%s", l, size-off-hdr, torn))
			return n, nil
		}
		rec := make([]byte, l)
		if _, err := io.ReadFull(r, rec); err != nil {
			return n, fmt.Errorf("read %s at byte %d: %w", path, off, err)
		}
		if err := ev.UnmarshalBinary(rec); err != nil {
			bad(idx, off, err.Error())
		}
		n++
		off += hdr + int64(l)
	}
}

func uvarintSize(x uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], x)
}

// checkHandler serves POST /check on the admin socket: the running
// daemon's log and projections checked in place (without the raw segment
// scan, which could mistake a record being written for a torn one). The
// report ends with a "problems: N" line.
func checkHandler(b *basedir) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		max, err := strconv.Atoi(r.URL.Query().Get("max-findings"))
		if err != nil || max < 1 {
			max = 10
		}
		var out bytes.Buffer
		res, err := b.store.Check(r.Context(), b.log, projections.CheckOptions{
			TempDir:     filepath.Join(b.dir, stateDir),
			MaxFindings: max,
		}, func(f projections.Finding) { fmt.Fprintln(&out, f.String()) })
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(&out, "log: %d events, %d unreadable\n", res.Events, res.BadEvents)
		if res.Replayed == res.Applied {
			fmt.Fprintf(&out, "projections: %d of %d entries differ from a replay of %d events\n", res.Differences, res.Compared, res.Applied)
		}
		fmt.Fprintf(&out, "prefix tree: %d elements, hash index has %d SKS keys\n", res.PtreeElements, res.SKSHashes)
		fmt.Fprintf(&out, "keys: %d live, stored count %d\n", res.Keys, res.KeyCount)
		fmt.Fprintf(&out, "problems: %d\n", res.Findings)
		w.Write(out.Bytes())
	}
}

// checkThroughDaemon runs check inside the daemon holding dir and prints
// its report; errNoDaemon when none answers.
func (e *env) checkThroughDaemon(ctx context.Context, dir string, maxFindings int) error {
	report, err := adminRequest(ctx, dir, "POST", "/check", url.Values{"max-findings": {strconv.Itoa(maxFindings)}})
	if err != nil {
		return err
	}
	report = strings.TrimRight(report, "\n")
	last := report[strings.LastIndexByte(report, '\n')+1:]
	var problems int64
	if _, err := fmt.Sscanf(last, "problems: %d", &problems); err != nil {
		return fmt.Errorf("check: unexpected answer from the daemon: %q", last)
	}
	fmt.Fprintln(e.stdout, strings.TrimSuffix(report, last))
	return checkFailed(problems)
}
