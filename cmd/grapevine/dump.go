package main

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
)

func (e *env) dumpCmd(ctx context.Context, args []string) error {
	fs := e.newFlagSet("dump", "[--basedir DIR] [--at INDEX|RFC3339-TIME] --out DIR [--keys-per-file N]")
	basedirFlag := fs.String("basedir", ".", "base directory (as in SKS)")
	at := fs.String("at", "", "log index (a number) or RFC 3339 time; default: everything")
	out := fs.String("out", "", "directory to write the dump into (created)")
	perFile := fs.Int("keys-per-file", 15000, "keys per dump file")
	prefix := fs.String("prefix", "sks-dump", "dump file name prefix, as in sks dump")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("dump: unexpected argument %q", rest[0])
	}
	if *out == "" {
		return usagef("dump: --out DIR is required")
	}
	if *perFile < 1 {
		return usagef("dump: --keys-per-file %d: must be at least 1", *perFile)
	}
	if *prefix == "" || strings.ContainsAny(*prefix, `/\`) {
		return usagef("dump: --prefix %q: must be a plain file name prefix", *prefix)
	}
	logger := newLogger(e.stderr)
	// A dump reads every record block once: a block cache only costs. With
	// the default 192 MiB, every block read went into fresh memory (calloc,
	// page faults): half the dump's CPU. A small cache is reused.
	b, err := openBasedirWith(*basedirFlag, logger, false, func(c *projections.Config) {
		c.CacheBytes = dumpCacheBytes
		c.PresenceFilter = false // a dump reads no key it does not find
	})
	if err != nil {
		// A running daemon holds the basedir: it writes the dump while it
		// keeps serving. The output path must mean the same to it.
		absOut, aerr := filepath.Abs(*out)
		if aerr != nil {
			return fmt.Errorf("dump: %w", aerr)
		}
		q := url.Values{"at": {*at}, "out": {absOut}, "prefix": {*prefix}, "keys-per-file": {strconv.Itoa(*perFile)}}
		msg, aerr := adminRequest(ctx, *basedirFlag, "POST", "/dump", q)
		if aerr == nil {
			fmt.Fprint(e.stdout, msg)
			return nil
		}
		if !errors.Is(aerr, errNoDaemon) {
			return fmt.Errorf("dump (through the running daemon): %w", aerr)
		}
		return fmt.Errorf("dump: %w", err)
	}
	defer b.Close()
	if err := b.catchUp(ctx, e.stderr, "catching up"); err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	msg, err := runDump(ctx, b, *at, *out, *prefix, *perFile)
	if err != nil {
		return err
	}
	fmt.Fprint(e.stdout, msg)
	return nil
}

// runDump writes a dump of b as of at (index, time or "" for all) into
// out and returns the summary line. The projections must have caught up.
func runDump(ctx context.Context, b *basedir, at, out, prefix string, perFile int) (string, error) {
	if out == "" || prefix == "" || strings.ContainsAny(prefix, `/\`) {
		return "", usagef("dump: --out and a plain --prefix are required")
	}
	idx, err := resolveAt(b.log, at)
	if err != nil {
		return "", err
	}
	if err := b.store.WaitApplied(ctx, idx); err != nil {
		return "", fmt.Errorf("dump: wait for index %d: %w", idx, err)
	}
	hostname, _ := os.Hostname()
	d := &dumpWriter{dir: out, prefix: prefix, perFile: perFile, host: hostname}
	res, err := d.write(ctx, b.store, idx)
	if err != nil {
		return "", fmt.Errorf("dump: %w", err)
	}
	return fmt.Sprintf("dumped %d keys as of log index %d into %d files in %s (%s)\n",
		res.keys, idx, res.files, out, humanBytes(res.bytes)), nil
}

// resolveAt turns --at into a log index: a decimal index, or the last index
// whose event was received at or before an RFC 3339 time.
func resolveAt(log *eventlog.Log, at string) (eventlog.Index, error) {
	last := log.LastIndex()
	if at == "" {
		return last, nil
	}
	if n, err := strconv.ParseUint(at, 10, 64); err == nil {
		if eventlog.Index(n) > last {
			return 0, usagef("dump: --at %d: the log ends at index %d", n, last)
		}
		return eventlog.Index(n), nil
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return 0, usagef("dump: --at %q: neither a log index nor an RFC 3339 time", at)
	}
	idx, err := log.IndexAtTime(t)
	if err != nil {
		return 0, fmt.Errorf("dump: find index at %s: %w", t, err)
	}
	return idx, nil
}

// dumpWriter writes SKS-format dump files (dumps.md §1): binary keys
// concatenated, N per file, named PREFIX-%04d.pgp, then
// metadata-PREFIX.txt and MD5SUMS. The metadata file is written last: its
// presence marks a complete dump.
type dumpWriter struct {
	dir, prefix, host string
	perFile           int

	file    *os.File
	buf     *bufio.Writer
	sum     hash.Hash
	name    string
	inFile  int
	sums    []string // "md5  name" lines
	started time.Time
}

type dumpResult struct {
	keys, files, bytes int64
}

// dumpChunk is a run of keys for the file writer; file >= 0 first closes
// the current file and opens file number file.
type dumpChunk struct {
	file  int
	keys  [][]byte
	bytes int
}

const dumpChunkBytes = 1 << 20

// dumpCacheBytes is the block cache of a store opened by the dump command.
const dumpCacheBytes = 16 << 20

func (d *dumpWriter) write(ctx context.Context, store *projections.Store, at eventlog.Index) (dumpResult, error) {
	var res dumpResult
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return res, err
	}
	d.started = time.Now()
	// The scan (Pebble iteration, decompression) and the file writing
	// (MD5, write, fsync per file) run on two goroutines: one after the
	// other they used one core of two.
	chunks := make(chan *dumpChunk, 8)
	done := make(chan error, 1)
	var failed atomic.Bool
	go func() {
		var err error
		for c := range chunks {
			if err != nil {
				continue
			}
			if c.file >= 0 {
				if err = d.closeFile(); err == nil {
					err = d.openFile(c.file)
				}
			}
			for _, k := range c.keys {
				if err != nil {
					break
				}
				_, err = d.buf.Write(k)
			}
			if err != nil {
				failed.Store(true)
			}
		}
		if err == nil {
			err = d.closeFile()
		}
		done <- err
	}()
	cur := &dumpChunk{file: -1}
	inFile := 0
	send := func() {
		if len(cur.keys) > 0 || cur.file >= 0 {
			chunks <- cur
		}
		cur = &dumpChunk{file: -1}
	}
	err := store.ScanAsOf(at, func(r *projections.Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if failed.Load() {
			return errDumpWriter
		}
		if res.files == 0 || inFile >= d.perFile {
			send()
			cur.file = int(res.files)
			res.files++
			inFile = 0
		}
		cur.keys = append(cur.keys, r.Key) // r.Key is the scan's own copy
		cur.bytes += len(r.Key)
		if cur.bytes >= dumpChunkBytes {
			send()
		}
		inFile++
		res.keys++
		res.bytes += int64(len(r.Key))
		return nil
	})
	send()
	close(chunks)
	werr := <-done
	if err != nil && !errors.Is(err, errDumpWriter) {
		if d.file != nil {
			d.file.Close()
		}
		return res, err
	}
	if werr != nil {
		if d.file != nil {
			d.file.Close()
		}
		return res, werr
	}
	return res, d.writeMetadata(res, at)
}

// errDumpWriter stops the scan when the file writer has failed; the
// writer's own error is returned.
var errDumpWriter = errors.New("dump: file writer failed")

func (d *dumpWriter) openFile(n int) error {
	d.name = fmt.Sprintf("%s-%04d.pgp", d.prefix, n)
	f, err := os.Create(filepath.Join(d.dir, d.name))
	if err != nil {
		return err
	}
	d.file = f
	d.sum = md5.New()
	d.buf = bufio.NewWriterSize(io.MultiWriter(f, d.sum), 1<<20)
	d.inFile = 0
	return nil
}

func (d *dumpWriter) closeFile() error {
	if d.file == nil {
		return nil
	}
	err := d.buf.Flush()
	if err == nil {
		err = d.file.Sync()
	}
	if cerr := d.file.Close(); err == nil {
		err = cerr
	}
	d.file = nil
	if err != nil {
		return fmt.Errorf("write %s: %w", d.name, err)
	}
	d.sums = append(d.sums, hex.EncodeToString(d.sum.Sum(nil))+"  "+d.name)
	return nil
}

func (d *dumpWriter) writeMetadata(res dumpResult, at eventlog.Index) error {
	sums := strings.Join(d.sums, "\n")
	if sums != "" {
		sums += "\n"
	}
	if err := writeFileSync(filepath.Join(d.dir, "MD5SUMS"), []byte(sums)); err != nil {
		return err
	}
	const layout = "2006-01-02 15:04:05"
	var m strings.Builder
	fmt.Fprintf(&m, "#Metadata-for: %s\n", d.host)
	fmt.Fprintf(&m, "#Dump-started: %s\n", d.started.Local().Format(layout))
	fmt.Fprintf(&m, "#Files-Count: %d\n", res.files)
	fmt.Fprintf(&m, "#Key-Count: %d\n", res.keys)
	fmt.Fprintf(&m, "#Log-Index: %d\n", at)
	fmt.Fprintf(&m, "#Digest-algo: md5\n")
	m.WriteString(sums)
	fmt.Fprintf(&m, "#Dump-ended: %s\n", time.Now().Local().Format(layout))
	return writeFileSync(filepath.Join(d.dir, "metadata-"+d.prefix+".txt"), []byte(m.String()))
}

func writeFileSync(path string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
