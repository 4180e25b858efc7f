package corpus

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Generate writes the corpus selected by opt to w: opt.N binary
// transferable public keys, concatenated, in old-format packets. It returns
// what it wrote. The same opt (apart from Workers and Progress) gives the
// same bytes on every run and machine.
//
// Keys are built by opt.Workers goroutines and written in order; memory
// stays bounded by a small window of keys in flight, whatever N. Generate
// returns ctx.Err() soon after ctx is done, and the first error from w.
func Generate(ctx context.Context, w io.Writer, opt Options) (Stats, error) {
	p, err := newPlan(opt)
	if err != nil {
		return Stats{}, err
	}
	st := newStats()
	err = p.run(ctx, func(key []byte, ks keyStats) error {
		n, err := w.Write(key)
		st.add(ks, n)
		p.progress(&st)
		return err
	})
	return st, err
}

// DumpPrefix is the prefix of dump file names, as written by sks dump.
const DumpPrefix = "sks-dump"

// GenerateDump writes the corpus selected by opt into dir as SKS dump
// files (spec dumps.md §1): DIR/sks-dump-0000.pgp, sks-dump-0001.pgp, ...
// with keysPerFile keys each (0 means DefaultKeysPerFile), then
// metadata-sks-dump.txt in the sks dump format and an MD5SUMS file, both
// last, so their presence marks a complete dump. dir is created if needed;
// files of the same name are overwritten. The metadata's timestamps are
// fixed (2026-01-01 00:00:00, the end of the corpus's time window) so that
// every file of the dump is deterministic.
func GenerateDump(ctx context.Context, dir string, opt Options, keysPerFile int) (Stats, error) {
	if keysPerFile == 0 {
		keysPerFile = DefaultKeysPerFile
	}
	if keysPerFile < 0 {
		return Stats{}, &ValidationError{"keysPerFile", keysPerFile, errRange}
	}
	p, err := newPlan(opt)
	if err != nil {
		return Stats{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Stats{}, err
	}

	st := newStats()
	var (
		f       *os.File
		bw      *bufio.Writer
		sum     = md5.New()
		inFile  int
		digests []string
	)
	closeFile := func() error {
		if f == nil {
			return nil
		}
		cur := f
		f = nil
		err := bw.Flush()
		if err == nil {
			err = cur.Sync()
		}
		if cerr := cur.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", cur.Name(), err)
		}
		digests = append(digests, hex.EncodeToString(sum.Sum(nil))+"  "+filepath.Base(cur.Name()))
		return nil
	}
	err = p.run(ctx, func(key []byte, ks keyStats) error {
		if f == nil {
			name := fmt.Sprintf("%s-%04d.pgp", DumpPrefix, len(st.Files))
			var err error
			if f, err = os.Create(filepath.Join(dir, name)); err != nil {
				return err
			}
			bw = bufio.NewWriterSize(io.MultiWriter(f, sum), 1<<20)
			sum.Reset()
			inFile = 0
			st.Files = append(st.Files, name)
		}
		n, err := bw.Write(key)
		st.add(ks, n)
		p.progress(&st)
		if err != nil {
			return fmt.Errorf("write %s: %w", f.Name(), err)
		}
		if inFile++; inFile == keysPerFile {
			return closeFile()
		}
		return nil
	})
	if cerr := closeFile(); err == nil {
		err = cerr
	}
	if err != nil {
		return st, err
	}

	// Metadata in the format of sks dump (sksdump.ml), two spaces before
	// each file name as in md5sum output.
	const stamp = "2026-01-01 00:00:00"
	var meta strings.Builder
	fmt.Fprintf(&meta, "#Metadata-for: grapevine-corpus n=%d seed=%d\n", opt.N, opt.Seed)
	fmt.Fprintf(&meta, "#Dump-started: %s\n#Files-Count: %d\n#Key-Count: %d\n#Digest-algo: md5\n", stamp, len(st.Files), st.Keys)
	sums := strings.Join(digests, "\n") + "\n"
	meta.WriteString(sums)
	fmt.Fprintf(&meta, "#Dump-ended: %s\n", stamp)
	for _, mf := range []struct{ name, body string }{
		{"metadata-" + DumpPrefix + ".txt", meta.String()},
		{"MD5SUMS", sums},
	} {
		if err := writeFileSync(filepath.Join(dir, mf.name), []byte(mf.body)); err != nil {
			return st, err
		}
	}
	return st, nil
}

func writeFileSync(path string, b []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newStats() Stats { return Stats{ByAlgorithm: make(map[string]int)} }

func (st *Stats) add(ks keyStats, n int) {
	st.Keys++
	st.Bytes += int64(n)
	st.Packets += int64(ks.packets)
	st.ByAlgorithm[ks.cls.name]++
	if ks.cls.sub == algNone {
		st.WithoutEncryption++
	}
	st.UserIDs += ks.uids
	st.RevokedUserIDs += ks.revokedUIDs
	st.Subkeys += ks.subkeys
	st.RevokedSubkeys += ks.revokedSubkeys
	if ks.revoked {
		st.RevokedKeys++
	}
	if ks.expiring {
		st.ExpiringKeys++
	}
	st.Signatures += ks.sigs
	st.Certifications += ks.certs
	st.MaxCertifications = max(st.MaxCertifications, ks.certs)
}

const progressEvery = 1000

func (p *plan) progress(st *Stats) {
	if p.opt.Progress != nil && (st.Keys%progressEvery == 0 || st.Keys == p.opt.N) {
		p.opt.Progress(st.Keys, st.Bytes)
	}
}

// run builds keys 0..N-1 on opt.Workers goroutines and calls emit for each,
// in order, on the calling goroutine. It stops at the first error from a
// build or from emit, or when ctx is done, and returns only after all its
// goroutines have exited.
func (p *plan) run(parent context.Context, emit func([]byte, keyStats) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	type result struct {
		key []byte
		ks  keyStats
		err error
	}
	type job struct {
		i   uint64
		out chan result // buffered: a worker never blocks on it
	}
	// window bounds the keys in flight, hence memory: each is at most a few
	// hundred KiB (a key with MaxCertifications certifications).
	window := 8 * p.opt.Workers
	jobs := make(chan job, window)
	order := make(chan chan result, window)

	var wg sync.WaitGroup
	for range p.opt.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := newBuilder(p)
			for j := range jobs {
				if err := ctx.Err(); err != nil {
					j.out <- result{err: err}
					continue
				}
				key, ks, err := b.build(j.i)
				j.out <- result{key, ks, err}
			}
		}()
	}
	go func() {
		defer close(jobs)
		defer close(order)
		for i := range p.n {
			out := make(chan result, 1)
			select {
			case order <- out:
			case <-ctx.Done():
				return
			}
			jobs <- job{i, out} // never blocks for long: workers always drain jobs
		}
	}()

	var err error
	var emitted uint64
	for out := range order {
		r := <-out
		if err = r.err; err == nil {
			err = emit(r.key, r.ks)
			emitted++
		}
		if err != nil {
			break
		}
	}
	cancel()
	for out := range order {
		<-out
	}
	wg.Wait()
	if err == nil && emitted < p.n {
		err = parent.Err() // the dispatcher stopped early: the caller's context is done
	}
	return err
}
