package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Import chunking: a chunk is parsed in parallel, appended with one fsync and
// applied in one pass. Both bounds keep memory flat whatever the dump size.
const (
	importChunkKeys  = 2048
	importChunkBytes = 16 << 20
	// A bulk import appends each chunk (one fsync) while the bulk
	// builder prepares and sorts the chunk before: chunks of 8192 keys /
	// 32 MiB had fewer fsyncs but kept 100 MiB more in flight (peak RSS
	// 340–390 MiB against 240 MiB, and a page fault per fresh page) for no
	// CPU or wall time won; smaller chunks also start the builder sooner
	// and leave it less to do after the last append.
	bulkChunkKeys  = 2048
	bulkChunkBytes = 8 << 20
	maxArmoredFile = 256 << 20 // armored files are read whole; dumps are binary
	// importSegmentBytes is the log's segment size while importing (see
	// importCmd); the daemon opens the log with the default.
	importSegmentBytes = 1 << 20
)

func (e *env) importCmd(ctx context.Context, args []string) error {
	fs := e.newFlagSet("import", "[--basedir DIR] PATH...")
	basedirFlag := fs.String("basedir", ".", "base directory (as in SKS)")
	workers := fs.Int("workers", runtime.GOMAXPROCS(0), "parsing goroutines")
	paths, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		fs.Usage()
		return usagef("import: no dump files or directories given")
	}
	if *workers < 1 {
		return usagef("import: --workers %d: must be at least 1", *workers)
	}
	files, err := expandPaths(paths)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	crash, err := loadCrashPoints(os.Getenv) // test-only (crashpoint.go)
	if err != nil {
		return usagef("import: %v", err)
	}
	logger := newLogger(e.stderr)
	// No in-memory copy of the newest log records: nothing reads them
	// while importing (the bulk builder is handed the events, and the
	// other path applies what it appends), and the copy was every
	// record copied once more on the log's writer, which bounds how fast
	// a bulk import appends, and a tenth of the import's allocations.
	// For the same reason the log's pages leave the page cache once
	// durable (DropWritten): the spilled sort runs and the sstables
	// written next reuse them instead of memory new to the machine (on
	// the benchmark VM a page new to the guest costs ≈ 9 µs to fill, one
	// just freed ≈ 20 times less). A replay or check right after reads
	// the log from the disk.
	//
	// Segments of 1 MiB instead of 4: tidwall/wal keeps its tail segment
	// in memory in a slice grown by append (≈ 5 times the segment's bytes
	// allocated as it fills, the largest share of an import's
	// allocations). Smaller, its copies stay in the CPU caches and in heap
	// memory the runtime has already faulted in: a 100k import took ≈ 10k
	// fewer page faults (≈ 17 µs each on the benchmark VM) and 12 % less
	// CPU. Each segment costs one more fsync and a file; at 256 KiB the
	// fsyncs held the log's writer back.
	b, err := openBasedirTuned(*basedirFlag, logger, true, nil, func(c *eventlog.Config) {
		c.TailBytes = -1
		c.DropWritten = true
		c.SegmentSize = importSegmentBytes
	})
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer b.Close()
	im := &importer{b: b, workers: *workers, stderr: e.stderr, crash: crash}
	if err := im.loadResume(); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	// Into an empty basedir (or resuming such an import whose indexing has
	// not run yet) the keys are appended to the log first and the
	// projections built afterwards in one bulk pass. Otherwise events
	// appended by an interrupted run are applied first, so that the
	// novelty check below sees them and nothing is appended twice.
	im.bulk = b.store.Applied() == 0 && (b.log.LastIndex() == 0 || im.resume.Bulk)
	if im.bulk && im.resume.Bulk {
		// Resuming a bulk import skips the events after the recorded
		// index as this import's own: only sound if no other writer
		// (serve, mail-in, an admin command) appended since. Such a writer
		// leaves the projections applied, unless they were lost since
		// (deleted to be rebuilt, or a daemon killed before flushing
		// them); then the skip would drop keys never appended
		// (TestImportBulkResumeAfterOtherWriters). A normal import is
		// right whatever the log holds.
		own, err := im.onlyImportAfter(eventlog.Index(im.resume.LogIndex))
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if !own {
			b.logger.Warn().Uint64("progress_log_index", im.resume.LogIndex).Uint64("log_index", uint64(b.log.LastIndex())).
				Msg("events appended after the interrupted bulk import by another writer: importing the rest normally")
			im.bulk = false
		}
	}
	if im.bulk {
		if !im.resume.Bulk {
			// Recorded before the first append, so that a run killed
			// before its first chunk is recorded resumes in bulk too.
			im.resume.Bulk, im.resume.LogIndex = true, 0
			if err := im.saveResume(); err != nil {
				return fmt.Errorf("import: %w", err)
			}
			im.crash.pass(cpBulkBegun)
		}
		if last := uint64(b.log.LastIndex()); last > im.resume.LogIndex {
			// The run before was killed between appending a chunk and
			// recording it: those keys are the first ones read again.
			im.skip = int64(last - im.resume.LogIndex)
		}
		im.logIndex, im.nextIndex = eventlog.Index(im.resume.LogIndex), b.log.LastIndex()+1
		// The projections are built from the events as they are appended
		// (and from those a killed run appended, read back first), so
		// that building overlaps appending and the log is not read and
		// parsed again; they become visible at the end, in index, once
		// the log is durable.
		im.builder, err = b.store.NewBulkBuilder(ctx, b.log)
		if errors.Is(err, projections.ErrBulkNotApplicable) {
			im.builder = nil
		} else if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer func() {
			if im.builder != nil {
				im.builder.Abort()
			}
		}()
	} else {
		im.resume.Bulk = false
		if err := b.catchUp(ctx, e.stderr, "catching up"); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	var total int64
	for _, f := range files {
		total += f.size
	}
	im.prog = newProgress(e.stderr, logger, "import", 0, "keys")
	im.prog.totalBytes = total
	im.totalBytes = total
	start := time.Now()
	for _, f := range files {
		if err := im.importFile(ctx, f); err != nil {
			im.prog.finish()
			return fmt.Errorf("import: %w", err)
		}
	}
	im.prog.finish()
	if im.bulk {
		im.crash.pass(cpLogComplete)
		if err := im.index(ctx); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	logger.Info().Int64("keys", im.keys).Int64("appended", im.appended).Int64("added", im.stats.Added).
		Int64("updated", im.stats.Updated).Int64("unchanged", im.unchanged+im.stats.Unchanged).
		Int64("rejected", im.rejected).Int64("bytes", im.bytes).Dur("took", time.Since(start)).
		Uint64("log_index", uint64(b.log.LastIndex())).Msg("import done")
	fmt.Fprintf(e.stdout, "imported %d keys from %d files: %d new, %d updated, %d unchanged, %d rejected\n",
		im.keys, len(files), im.stats.Added, im.stats.Updated, im.unchanged+im.stats.Unchanged, im.rejected)
	return nil
}

type inputFile struct {
	path  string // absolute
	size  int64
	mtime time.Time
}

// expandPaths turns files and directories (read recursively, sorted by name
// as sks fastbuild does) into the list of regular files to import.
func expandPaths(paths []string) ([]inputFile, error) {
	var out []inputFile
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			abs, _ := filepath.Abs(p)
			out = append(out, inputFile{abs, fi.Size(), fi.ModTime()})
			continue
		}
		var inDir []inputFile
		err = filepath.WalkDir(p, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() || !isDumpName(d.Name()) {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			abs, _ := filepath.Abs(path)
			inDir = append(inDir, inputFile{abs, info.Size(), info.ModTime()})
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(inDir) == 0 {
			return nil, fmt.Errorf("%s: no key files (*.pgp, *.gpg, *.asc, *.key) in directory", p)
		}
		sort.Slice(inDir, func(i, j int) bool { return inDir[i].path < inDir[j].path })
		out = append(out, inDir...)
	}
	return out, nil
}

func isDumpName(name string) bool {
	switch filepath.Ext(name) {
	case ".pgp", ".gpg", ".asc", ".key":
		return true
	}
	return false
}

// importer carries one import run's state and counters.
type importer struct {
	b          *basedir
	workers    int
	stderr     io.Writer
	prog       *progress
	resume     resumeState
	totalBytes int64

	keys, appended, unchanged, rejected, bytes int64
	stats                                      statsAcc

	// bulk: append only, and build the projections at the end (index).
	bulk bool
	// skip counts keys already in the log from a killed bulk run that the
	// progress file does not record yet.
	skip int64
	// logIndex (bulk) is the log index after the chunks prepared so far:
	// what the progress file records with the last of them, skipped keys
	// included; nextIndex is the index their next event will get.
	logIndex, nextIndex eventlog.Index
	// builder, when not nil, builds the projections of a bulk import from
	// the events as they are appended (nil: index reads the log).
	builder *projections.BulkBuilder
	// crash is the test-only crash-point hook (crashpoint.go); nil unless
	// a test set GRAPEVINE_TEST_CRASHPOINT.
	crash *crashPoints
}

type statsAcc struct{ Added, Updated, Unchanged int64 }

// add counts what one application of events reported.
func (a *statsAcc) add(st projections.ApplyStats) {
	a.Added += st.Added
	a.Updated += st.Updated
	a.Unchanged += st.Unchanged
}

// resumeState is the import-progress file: how far each input file was
// imported, written after each chunk is durable in the log and applied.
type resumeState struct {
	Files map[string]resumeFile `json:"files"`
	// Bulk marks an import into an empty basedir whose projections are
	// built after the last file; LogIndex is the log's last index when
	// this file was written.
	Bulk     bool   `json:"bulk,omitempty"`
	LogIndex uint64 `json:"log_index,omitempty"`
}

type resumeFile struct {
	Size   int64     `json:"size"`
	MTime  time.Time `json:"mtime"`
	Offset int64     `json:"offset"` // binary files: bytes consumed
	Keys   int64     `json:"keys"`   // armored files: keys consumed
	Done   bool      `json:"done"`
}

func (im *importer) resumePath() string { return filepath.Join(im.b.dir, importFile) }

func (im *importer) loadResume() error {
	im.resume.Files = make(map[string]resumeFile)
	data, err := os.ReadFile(im.resumePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, &im.resume); err != nil {
		// A damaged progress file only costs re-reading input: the novelty
		// check keeps the log free of duplicates.
		im.b.logger.Warn().Err(err).Str("path", im.resumePath()).Msg("ignoring unreadable import progress file")
		im.resume.Files = make(map[string]resumeFile)
	}
	if im.resume.Files == nil {
		im.resume.Files = make(map[string]resumeFile)
	}
	return nil
}

func (im *importer) saveResume() error {
	data, err := json.Marshal(&im.resume)
	if err != nil {
		return err
	}
	tmp := im.resumePath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, im.resumePath())
}

// onlyImportAfter reports whether every event of the log after idx was
// appended by an import (and idx is not past the log's end).
func (im *importer) onlyImportAfter(idx eventlog.Index) (bool, error) {
	if idx > im.b.log.LastIndex() {
		return false, nil
	}
	it := im.b.log.NewIterator(idx+1, 0)
	defer it.Close()
	for {
		_, ev, err := it.Next()
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("read the log after the recorded import progress: %w", err)
		}
		if ev.Origin != eventlog.OriginImport || ev.Kind != eventlog.KindKeySubmitted {
			return false, nil
		}
	}
}

// chunk is a run of consecutive keys of one file, parsed.
type chunk struct {
	raws  []*pgpkey.RawKey
	keys  []*pgpkey.Key
	errs  []error
	bytes int64
	end   int64 // binary: file offset after the chunk; armored: keys consumed after it
}

func (im *importer) importFile(ctx context.Context, f inputFile) error {
	rf, seen := im.resume.Files[f.path]
	if seen && (rf.Size != f.size || !rf.MTime.Equal(f.mtime)) {
		rf, seen = resumeFile{}, false // the file changed: start over
	}
	if seen && rf.Done {
		im.bytes += f.size
		return nil
	}
	rf.Size, rf.MTime = f.size, f.mtime

	file, err := os.Open(f.path)
	if err != nil {
		return err
	}
	defer file.Close()
	head := make([]byte, 1)
	n, _ := io.ReadFull(file, head)
	armored := n == 1 && head[0]&0x80 == 0
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return err
	}

	next, err := im.keySource(file, f, armored, rf)
	if err != nil {
		return err
	}
	im.bytes += rf.Offset

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan *chunk, 2)
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(chunks)
		readErr = im.produce(ctx, f, next, armored, rf, chunks)
	}()
	record := func(end int64) error {
		if armored {
			rf.Keys = end
		} else {
			rf.Offset = end
		}
		im.resume.Files[f.path] = rf
		if err := im.saveResume(); err != nil {
			return err
		}
		im.crash.pass(cpChunkRecorded)
		return nil
	}
	var applyErr error
	if im.bulk {
		applyErr = im.appendBulk(ctx, f, chunks, record)
	} else {
		for c := range chunks {
			if applyErr = im.consume(ctx, f, c); applyErr != nil {
				break
			}
			if applyErr = record(c.end); applyErr != nil {
				break
			}
		}
	}
	cancel()
	for range chunks {
	}
	wg.Wait()
	if applyErr != nil {
		return applyErr
	}
	if readErr != nil {
		return readErr
	}
	rf.Done = true
	im.resume.Files[f.path] = rf
	if err := im.saveResume(); err != nil {
		return err
	}
	im.crash.pass(cpFileDone)
	return nil
}

// keySource returns a function yielding the file's keys from where the last
// run stopped; it returns io.EOF at the end.
func (im *importer) keySource(file *os.File, f inputFile, armored bool, rf resumeFile) (func() (*pgpkey.RawKey, error), error) {
	if armored {
		if f.size > maxArmoredFile {
			return nil, fmt.Errorf("%s: armored file of %d bytes is larger than %d; convert it to binary (gpg --dearmor)", f.path, f.size, maxArmoredFile)
		}
		data, err := io.ReadAll(file)
		if err != nil {
			return nil, err
		}
		keys, err := pgpkey.Decode(data)
		if err != nil {
			im.reject(f, 0, err)
			keys = nil
		}
		if rf.Keys < int64(len(keys)) {
			keys = keys[rf.Keys:]
		} else {
			keys = nil
		}
		return func() (*pgpkey.RawKey, error) {
			if len(keys) == 0 {
				return nil, io.EOF
			}
			k := keys[0]
			keys = keys[1:]
			return k, nil
		}, nil
	}
	if _, err := file.Seek(rf.Offset, io.SeekStart); err != nil {
		return nil, err
	}
	// Read 1 MiB at a time, without a buffer of our own in front: the
	// keys are handed out as slices of the Reader's buffer, uncopied.
	r := pgpkey.NewReaderSize(file, 1<<20)
	base := rf.Offset
	return func() (*pgpkey.RawKey, error) {
		for {
			k, err := r.Next()
			if err == nil {
				k.Offset += base
				return k, nil
			}
			if err == io.EOF {
				return nil, io.EOF
			}
			var pe *pgpkey.ParseError
			if errors.As(err, &pe) {
				pe.Offset += base
				im.reject(f, pe.Offset, err)
				continue // the reader resyncs at the next public-key packet
			}
			return nil, fmt.Errorf("%s: %w", f.path, err)
		}
	}, nil
}

// produce reads chunks of keys and parses each chunk on im.workers goroutines.
func (im *importer) produce(ctx context.Context, f inputFile, next func() (*pgpkey.RawKey, error), armored bool, rf resumeFile, out chan<- *chunk) error {
	consumedKeys := rf.Keys
	for {
		c := &chunk{}
		var end int64
		maxKeys, maxBytes := importChunkKeys, int64(importChunkBytes)
		if im.bulk {
			maxKeys, maxBytes = bulkChunkKeys, bulkChunkBytes
		}
		if im.crash != nil && im.crash.chunkKeys > 0 {
			maxKeys = im.crash.chunkKeys // test-only: many chunks from few keys
		}
		for len(c.raws) < maxKeys && c.bytes < maxBytes {
			k, err := next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			c.raws = append(c.raws, k)
			c.bytes += int64(len(k.Raw))
			end = k.Offset + int64(len(k.Raw))
		}
		if len(c.raws) == 0 {
			return nil
		}
		if armored {
			consumedKeys += int64(len(c.raws))
			c.end = consumedKeys
		} else {
			c.end = end
		}
		c.keys = make([]*pgpkey.Key, len(c.raws))
		c.errs = make([]error, len(c.raws))
		var wg sync.WaitGroup
		for w := 0; w < im.workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < len(c.raws); i += im.workers {
					c.keys[i], c.errs[i] = pgpkey.ParseKey(c.raws[i])
				}
			}(w)
		}
		wg.Wait()
		select {
		case out <- c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// bulkAppend is one chunk of a bulk import on its way into the log.
type bulkAppend struct {
	events   []*eventlog.Event
	first    eventlog.Index // the index its first event gets
	logIndex eventlog.Index // the log index to record with the chunk
	end      int64          // the chunk's end, to record
	bytes    int64
	// wait returns the log's answer once the chunk is durable (set by
	// queueAppend; call it once).
	wait func() (eventlog.Index, error)
}

// bulkQueued is how many chunks a bulk import queues for the log beyond
// the one whose append it waits for: with one, the log's writer finds the
// next chunk queued when it finishes one (and commits whatever is queued
// together), instead of waiting while the chunk is recorded, the next one
// handed to the bulk builder and encoded (an execution trace showed the
// writer waiting for work for a third of the appending).
const bulkQueued = 1

// appendBulk appends the chunks of one file of a bulk import. Each chunk's
// keys are handed to the bulk builder and queued for the log
// (eventlog.Log.AppendQueued), up to bulkQueued chunks ahead of the oldest
// one not yet durable, which is then waited for and recorded in the
// progress file. Chunks are queued from this goroutine only, so the log
// holds them in file order, and a chunk is recorded only once durable: a
// killed run finds at most the chunks queued after the recorded one in the
// log (their keys are skipped).
func (im *importer) appendBulk(ctx context.Context, f inputFile, chunks <-chan *chunk, record func(end int64) error) error {
	var queue []*bulkAppend // queued, in log order, not yet recorded
	// settle waits for a's append and records it.
	settle := func(a *bulkAppend) error {
		last, err := a.wait()
		if err != nil {
			return fmt.Errorf("append to log: %w", err)
		}
		if len(a.events) > 0 {
			if want := a.first + eventlog.Index(len(a.events)) - 1; last != want {
				return fmt.Errorf("append to log: events written up to %d, expected %d", last, want)
			}
			im.crash.pass(cpChunkAppended)
			im.appended += int64(len(a.events))
		}
		im.bytes += a.bytes
		im.prog.update(im.keys, im.bytes, im.rejected)
		im.resume.LogIndex = uint64(a.logIndex)
		return record(a.end)
	}
	var err error
	for c := range chunks {
		var a *bulkAppend
		if a, err = im.prepareBulk(f, c); err != nil {
			break
		}
		if err = im.queueAppend(ctx, a); err != nil {
			break
		}
		queue = append(queue, a)
		if len(queue) > bulkQueued {
			err = settle(queue[0])
			queue = queue[1:]
			if err != nil {
				break
			}
		}
	}
	for _, a := range queue {
		if err == nil {
			err = settle(a)
		} else {
			a.wait() // no append may outlive the import's error
		}
	}
	return err
}

// queueAppend queues a's events for the log (none: a is done at once).
func (im *importer) queueAppend(ctx context.Context, a *bulkAppend) error {
	wait, err := im.b.log.AppendQueued(ctx, a.events...)
	if err != nil {
		return fmt.Errorf("append to log: %w", err)
	}
	a.wait = wait
	return nil
}

// prepareBulk applies the key limits to a chunk of a bulk import, passes
// over the keys a killed run appended already, and hands the rest to the
// bulk builder with the indexes they will get.
func (im *importer) prepareBulk(f inputFile, c *chunk) (*bulkAppend, error) {
	a := &bulkAppend{events: make([]*eventlog.Event, 0, len(c.raws)), end: c.end, bytes: c.bytes, first: im.nextIndex}
	keys := make([]*pgpkey.Key, 0, len(c.raws))
	name := filepath.Base(f.path)
	now := time.Now()
	// The events' keys alias raw.Raw without a copy: every RawKey owns its
	// bytes (pgpkey.Reader; Decode's keys are never reused either), Append
	// keeps nothing after it returns, and the parsed key c.keys[i] already
	// holds on to the same bytes.
	for i, raw := range c.raws {
		if c.errs[i] != nil {
			im.reject(f, raw.Offset, c.errs[i])
			continue
		}
		im.keys++
		// Into an empty store: the abuse limits apply to the key alone
		// (limits.go), before the resume skip, so that a rerun makes the
		// same decisions.
		keyBytes := raw.Raw
		k, tr, err := im.b.keyLimits.Apply(nil, c.keys[i])
		if err != nil {
			im.reject(f, raw.Offset, err)
			continue
		}
		if im.skip > 0 {
			// Already in the log. The recorded log index moves with the
			// file offset: a chunk skipped whole appends nothing, and
			// without this a later kill would make the next run skip this
			// chunk's keys a second time, past keys never appended
			// (TestImportSurvivesSIGKILL lost a chunk so).
			im.skip--
			im.appended++
			im.logIndex++
			im.crash.pass(cpKeySkipped)
			continue
		}
		if tr.Changed() {
			im.b.logger.Info().Str("file", f.path).Int64("offset", raw.Offset).Str("fpr", k.Fingerprint().String()).Str("trim", tr.String()).Msg("key trimmed by the key limits")
			keyBytes = k.Marshal()
		}
		a.events = append(a.events, &eventlog.Event{
			Kind:   eventlog.KindKeySubmitted,
			Origin: eventlog.OriginImport,
			Peer:   name,
			Time:   now,
			Key:    keyBytes,
		})
		// k is what parsing keyBytes gives: the builder need not parse
		// it again.
		keys = append(keys, k)
	}
	if len(a.events) > 0 && im.builder != nil {
		// Nothing else writes the log (the basedir is locked), so the
		// events' indexes are known before the append; the builder
		// prepares them while they are written.
		if err := im.builder.Add(a.first, a.events, keys); err != nil {
			return nil, err
		}
	}
	im.nextIndex += eventlog.Index(len(a.events))
	im.logIndex += eventlog.Index(len(a.events))
	a.logIndex = im.logIndex
	return a, nil
}

// consume appends a chunk's novel keys to the log (one fsync) and applies
// them to the projections (an import into a store that is not empty).
func (im *importer) consume(ctx context.Context, f inputFile, c *chunk) error {
	events := make([]*eventlog.Event, 0, len(c.raws))
	keys := make([]*pgpkey.Key, 0, len(c.raws))
	name := filepath.Base(f.path)
	now := time.Now()
	// The events' keys alias raw.Raw without a copy (see prepareBulk).
	for i, raw := range c.raws {
		if c.errs[i] != nil {
			im.reject(f, raw.Offset, c.errs[i])
			continue
		}
		im.keys++
		// The abuse limits apply before anything is stored (limits.go).
		ad, err := im.b.store.Admit(c.keys[i], im.b.keyLimits)
		if errors.Is(err, pgpkey.ErrTooLarge) {
			im.reject(f, raw.Offset, err)
			continue
		} else if err != nil {
			return err
		}
		if !ad.Novel {
			im.unchanged++
			continue
		}
		keyBytes := raw.Raw
		if ad.Trim.Changed() {
			im.b.logger.Info().Str("file", f.path).Int64("offset", raw.Offset).Str("fpr", ad.Key.Fingerprint().String()).Str("trim", ad.Trim.String()).Msg("key trimmed by the key limits")
			keyBytes = ad.Key.Marshal()
		}
		events = append(events, &eventlog.Event{
			Kind:   eventlog.KindKeySubmitted,
			Origin: eventlog.OriginImport,
			Peer:   name,
			Time:   now,
			Key:    keyBytes,
		})
		keys = append(keys, ad.Key)
	}
	im.bytes += c.bytes
	if len(events) > 0 {
		first := im.b.log.LastIndex() + 1
		last, err := im.b.log.Append(ctx, events...)
		if err != nil {
			return fmt.Errorf("append to log: %w", err)
		}
		if want := first + eventlog.Index(len(events)) - 1; last != want {
			return fmt.Errorf("append to log: events written up to %d, expected %d", last, want)
		}
		im.resume.LogIndex = uint64(last)
		im.crash.pass(cpChunkAppended)
		st, err := im.b.store.ApplyParsed(first, events, keys)
		if err != nil {
			return err
		}
		im.appended += int64(len(events))
		im.stats.add(st)
		im.crash.pass(cpChunkApplied)
	}
	im.prog.update(im.keys, im.bytes, im.rejected)
	return nil
}

// reject reports one bad key with its file and byte offset.
func (im *importer) reject(f inputFile, offset int64, err error) {
	im.rejected++
	im.b.logger.Warn().Str("file", f.path).Int64("offset", offset).Err(err).Msg("rejected key")
}

// index builds the projections of a bulk import from the log (the bulk
// path of projections.Store.CatchUp when the store is empty).
func (im *importer) index(ctx context.Context) error {
	b := im.b
	if im.builder != nil {
		// Every event added is durable: Append returned for each.
		bb := im.builder
		im.builder = nil
		start := time.Now()
		st, err := bb.Finish(ctx, b.log)
		switch {
		case errors.Is(err, projections.ErrBulkNotApplicable):
			b.logger.Info().Msg("bulk build not applicable; indexing from the log")
		case err != nil:
			return fmt.Errorf("indexing: %w", err)
		default:
			b.logger.Info().Uint64("applied", uint64(b.store.Applied())).Int64("added", st.Added).
				Dur("took", time.Since(start)).Msg("bulk build done")
			im.stats.add(st)
			im.crash.pass(cpBulkIngested)
		}
	}
	behind := b.log.LastIndex() - b.store.Applied()
	if behind == 0 {
		im.crash.pass(cpIndexed)
		im.resume.Bulk = false
		return im.saveResume()
	}
	p := newProgress(im.stderr, b.logger, "indexing", int64(behind), "events")
	base := b.store.Applied()
	st, err := b.store.CatchUp(ctx, b.log, func(pr projections.Progress) {
		p.update(int64(pr.Applied-base), 0, pr.Stats.Rejected)
		im.crash.pass(cpIndexing)
	})
	p.finish()
	if err != nil {
		return fmt.Errorf("indexing: %w", err)
	}
	im.stats.add(st)
	im.crash.pass(cpIndexed)
	im.resume.Bulk = false
	return im.saveResume()
}
