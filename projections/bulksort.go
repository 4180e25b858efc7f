package projections

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/cockroachdb/pebble/objstorage"
	"github.com/cockroachdb/pebble/sstable"
	"github.com/cockroachdb/pebble/vfs"
)

// sorter is an external sort of key/value pairs with bounded memory: pairs
// gather in one buffer, which is sorted and written to a run file when it
// holds limit bytes; iter merges the runs. No merge reads more than
// fanIn runs at once: beyond that, seal first merges consecutive runs
// into larger ones (cascade), so that the merges' readers and open files
// are bounded whatever the number of pairs.
//
// The buffer and the entries live outside the Go heap (mapped memory,
// released by free): tens of megabytes that stay live for the whole bulk
// path would otherwise double the heap the garbage collector lets grow
// (GOGC), and every fresh page costs a page fault.
type sorter struct {
	dir   string
	name  string
	limit int
	buf   []byte // <key><value>... (located by ents)
	ents  []sortEntry
	runs  []sortRun
	// parts > 1 asks for the pairs in that many key ranges, each merged
	// on its own (iterPart), so that the passes after the last add can
	// use every core. The ranges' bounds (splits) are picked from the
	// first sorted buffer: each run covers a stretch of the log, and the
	// keys of one stretch are spread like those of any other. group maps
	// a key to the prefix that every key it must not be separated from
	// shares (nil: the key itself): a bound is always such a prefix, so
	// that a range never cuts a fingerprint's list or a word's postings.
	parts  int
	group  func(k []byte) []byte
	splits [][]byte
	sealed bool // seal ran: nothing more may be added
	// consume says each key range is read once: a merge frees the pages
	// of the run files behind it (punchHole), so that the sstables
	// written meanwhile reuse them (see runSection).
	consume bool
	// bufMem and entMem are the mappings behind buf and ents, tmpMem the
	// radix sort's scratch space.
	bufMem, entMem, tmpMem []byte
	spillW                 *bufio.Writer
	// fanIn is the most runs one merge reads (sortFanIn; tests lower
	// it); nrun counts the run files named so far (spilled and merged).
	fanIn int
	nrun  int
	// sealErr is what seal returned, returned again by later calls.
	sealErr error
	// openRuns counts the run files open now, openPeak the most at once,
	// widest the most runs one merge read (tests).
	openRuns, openPeak, widest atomic.Int64
	// adviseHuge asks for transparent huge pages on a mapping (nil:
	// adviseHugePages); hugeAdvised and hugeFailed count its calls and
	// failures (tests).
	adviseHuge              func([]byte) error
	hugeAdvised, hugeFailed int
}

// sortEntry locates one pair in buf: the key at ko, kl bytes long, then
// the value, vl bytes. pre holds the key's first 8 bytes (zero-padded, big
// endian), so that most comparisons are one integer comparison: comparing
// key slices was most of the sort's time, and the sort most of the bulk
// path's (1.5 million index entries for 100k keys). 24 bytes, not the 32
// of a slice and an offset: less to move while sorting.
type sortEntry struct {
	pre    uint64
	ko     int
	kl, vl uint32
}

// sortRun is one spilled run: its file and, for each key range, where it
// starts in the file; the last offset is the file's size.
type sortRun struct {
	path string
	offs []int64
}

func newSorter(dir, name string, limit int) *sorter {
	return &sorter{dir: dir, name: name, limit: limit, parts: 1, fanIn: sortFanIn}
}

// newPartSorter is newSorter for a sort read back in up to parts key
// ranges (iterPart) whose bounds are prefixes that group returns.
func newPartSorter(dir, name string, limit, parts int, group func([]byte) []byte) *sorter {
	s := newSorter(dir, name, limit)
	s.parts, s.group = max(1, parts), group
	return s
}

func keyPrefix(k []byte) uint64 {
	if len(k) >= 8 {
		return binary.BigEndian.Uint64(k)
	}
	var b [8]byte
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:])
}

func (s *sorter) add(k, v []byte) error {
	if s.sealed {
		return errors.New("bulk sort: add after the sort was read")
	}
	if uint64(len(k)) > math.MaxUint32 || uint64(len(v)) > math.MaxUint32 {
		return fmt.Errorf("bulk sort: pair of %d+%d bytes is too large", len(k), len(v))
	}
	need := len(k) + len(v)
	if len(s.buf)+need > cap(s.buf) || len(s.ents) == cap(s.ents) {
		if len(s.ents) > 0 {
			if err := s.spill(); err != nil {
				return err
			}
		}
		if s.buf == nil || need > cap(s.buf) {
			// One allocation of the whole budget: growing it by appends
			// cost a third of the bulk path in copies and clearing.
			if err := s.unmap(&s.bufMem); err != nil {
				return err
			}
			m, err := s.mapMem(max(s.limit, need))
			if err != nil {
				return err
			}
			s.bufMem, s.buf = m, m[:0]
		}
		if s.ents == nil {
			// Entries take at most half the budget again (24 bytes
			// each, for pairs of at least 48 bytes on average; index
			// entries are ~35 bytes, so their runs end when the
			// entries are full).
			n := max(1, s.limit/48)
			m, err := s.mapMem(n * int(unsafe.Sizeof(sortEntry{})))
			if err != nil {
				return err
			}
			s.entMem = m
			s.ents = unsafe.Slice((*sortEntry)(unsafe.Pointer(&m[0])), n)[:0]
		}
	}
	ko := len(s.buf)
	s.buf = append(s.buf, k...)
	s.buf = append(s.buf, v...)
	s.ents = append(s.ents, sortEntry{pre: keyPrefix(k), ko: ko, kl: uint32(len(k)), vl: uint32(len(v))})
	return nil
}

// hugePageBytes is the size of a transparent huge page on amd64 and arm64
// (with 4 KiB base pages).
const hugePageBytes = 2 << 20

// mapMem returns n bytes of zeroed memory outside the Go heap. It holds
// no Go pointers (the collector does not scan it).
//
// A mapping of at least a huge page is rounded up to whole huge pages and
// advised to use them (adviseHuge): on a paravirtualised VM each fresh 4 KiB
// page costs a trap of ≈ 15 µs, and the sorts' buffers, entries and scratch
// are ≈ 35 MiB touched once each. Linux aligns anonymous mappings that are
// a multiple of 2 MiB to 2 MiB, so the whole mapping can be huge pages.
// The advice is only a hint: where it fails (no transparent huge pages,
// not Linux) the memory is used with small pages as before.
func (s *sorter) mapMem(n int) ([]byte, error) {
	size := n
	if n >= hugePageBytes {
		size = (n + hugePageBytes - 1) / hugePageBytes * hugePageBytes
	}
	m, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("bulk sort: map %d bytes: %w", n, err)
	}
	if size >= hugePageBytes {
		advise := s.adviseHuge
		if advise == nil {
			advise = adviseHugePages
		}
		s.hugeAdvised++
		if advise(m) != nil {
			s.hugeFailed++
		}
	}
	return m, nil
}

func (s *sorter) unmap(m *[]byte) error {
	if *m == nil {
		return nil
	}
	err := syscall.Munmap(*m)
	*m = nil
	if err != nil {
		return fmt.Errorf("bulk sort: %w", err)
	}
	return nil
}

// free releases the buffer and entries; nothing read from them (memIter)
// may be used after. The runs stay readable.
func (s *sorter) free() error {
	s.buf, s.ents, s.spillW = nil, nil, nil
	return errors.Join(s.unmap(&s.bufMem), s.unmap(&s.entMem), s.unmap(&s.tmpMem))
}

func (s *sorter) entry(e sortEntry) (k, v []byte) {
	ve := e.ko + int(e.kl)
	return s.buf[e.ko:ve:ve], s.buf[ve : ve+int(e.vl) : ve+int(e.vl)]
}

// sortBuf sorts the buffer. Equal keys carry equal values in every use
// (index entries written twice) or make the bulk path fall back (a hash
// collision), so the sort need not be stable.
//
// Large buffers are sorted by radix on the 8-byte prefixes first (a
// comparison sort of the 1.5 million index entries of 100k keys was a
// tenth of the bulk path), then runs of equal prefixes by whole keys.
func (s *sorter) sortBuf() {
	buf := s.buf
	cmpKeys := func(a, b sortEntry) int {
		if a.pre != b.pre {
			if a.pre < b.pre {
				return -1
			}
			return 1
		}
		return bytes.Compare(buf[a.ko:a.ko+int(a.kl)], buf[b.ko:b.ko+int(b.kl)])
	}
	ents := s.ents
	if len(ents) < radixMin {
		slices.SortFunc(ents, cmpKeys)
		return
	}
	tmp, err := s.scratch(len(ents))
	if err != nil {
		// No memory for the scratch space: the comparison sort needs none.
		slices.SortFunc(ents, cmpKeys)
		return
	}
	radixSort(ents, tmp)
	for i := 0; i < len(ents); {
		j := i + 1
		for j < len(ents) && ents[j].pre == ents[i].pre {
			j++
		}
		if j-i > 1 {
			// Keys sharing their first 8 bytes (the postings of one
			// word, most of them): sorted by the next 8 as an integer,
			// held in pre meanwhile, then by whole keys (comparing key
			// slices for every pair was 3 % of an import's CPU).
			pre := ents[i].pre
			g := ents[i:j]
			for x := range g {
				k := buf[g[x].ko : g[x].ko+int(g[x].kl)]
				g[x].pre = 0
				if len(k) > 8 {
					g[x].pre = keyPrefix(k[8:])
				}
			}
			slices.SortFunc(g, cmpKeys)
			for x := range g {
				g[x].pre = pre
			}
		}
		i = j
	}
}

// radixMin is the fewest entries sorted by radix.
const radixMin = 1 << 12

// radixSort sorts ents by pre, least significant byte first, using tmp
// (as long as ents) as scratch space; bytes every entry shares are
// skipped.
func radixSort(ents, tmp []sortEntry) {
	var counts [8][256]int
	for _, e := range ents {
		for d := range 8 {
			counts[d][byte(e.pre>>(8*d))]++
		}
	}
	src, dst := ents, tmp
	for d := range 8 {
		c := &counts[d]
		if c[byte(src[0].pre>>(8*d))] == len(src) {
			continue
		}
		pos := 0
		for i := range c {
			n := c[i]
			c[i] = pos
			pos += n
		}
		shift := 8 * d
		for _, e := range src {
			b := byte(e.pre >> shift)
			dst[c[b]] = e
			c[b]++
		}
		src, dst = dst, src
	}
	if &src[0] != &ents[0] {
		copy(ents, src)
	}
}

// scratch returns n entries of scratch space for the radix sort, mapped
// once per sorter.
func (s *sorter) scratch(n int) ([]sortEntry, error) {
	size := int(unsafe.Sizeof(sortEntry{}))
	if len(s.tmpMem) < n*size {
		if err := s.unmap(&s.tmpMem); err != nil {
			return nil, err
		}
		m, err := s.mapMem(max(n, cap(s.ents)) * size)
		if err != nil {
			return nil, err
		}
		s.tmpMem = m
	}
	return unsafe.Slice((*sortEntry)(unsafe.Pointer(&s.tmpMem[0])), n), nil
}

// spill writes the buffer, sorted, as a run file (the same framing),
// noting where each key range starts in it.
func (s *sorter) spill() error {
	if len(s.ents) == 0 {
		return nil
	}
	s.sortBuf()
	s.pickSplits()
	path := s.runPath()
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bulk sort: %w", err)
	}
	// One writer for every spill of this sorter: a fresh 1 MiB buffer per
	// run was 40 MB of allocations for the 100k corpus.
	if s.spillW == nil {
		s.spillW = bufio.NewWriterSize(f, 1<<20)
	}
	w := s.spillW
	w.Reset(f)
	offs := make([]int64, len(s.splits)+2)
	next := 0 // the split the keys have not reached yet
	var pos int64
	var hdr []byte
	for _, e := range s.ents {
		k, v := s.entry(e)
		for next < len(s.splits) && s.reached(e, k, next) {
			next++
			offs[next] = pos
		}
		hdr = binary.AppendUvarint(hdr[:0], uint64(len(k)))
		hdr = binary.AppendUvarint(hdr, uint64(len(v)))
		w.Write(hdr)
		w.Write(k)
		w.Write(v)
		pos += int64(len(hdr) + len(k) + len(v))
	}
	for next < len(s.splits) {
		next++
		offs[next] = pos
	}
	offs[len(offs)-1] = pos
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("bulk sort: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bulk sort: %w", err)
	}
	s.runs = append(s.runs, sortRun{path: path, offs: offs})
	s.buf, s.ents = s.buf[:0], s.ents[:0]
	return nil
}

// runPath names a new run file.
func (s *sorter) runPath() string {
	s.nrun++
	return filepath.Join(s.dir, fmt.Sprintf("%s-%04d.run", s.name, s.nrun-1))
}

// pickSplits chooses the bounds of the key ranges, once, from the sorted
// buffer: the keys at its quantiles, cut to their group prefix. Bounds
// that do not increase are dropped (fewer ranges).
func (s *sorter) pickSplits() {
	if s.parts <= 1 || s.splits != nil || len(s.ents) == 0 {
		return
	}
	s.splits = [][]byte{}
	for i := 1; i < s.parts; i++ {
		k, _ := s.entry(s.ents[len(s.ents)*i/s.parts])
		if s.group != nil {
			k = s.group(k)
		}
		if n := len(s.splits); len(k) == 0 || n > 0 && bytes.Compare(k, s.splits[n-1]) <= 0 {
			continue
		}
		s.splits = append(s.splits, bytes.Clone(k))
	}
}

// reached reports whether entry e, whose key is k, is at or past split i.
func (s *sorter) reached(e sortEntry, k []byte, i int) bool {
	sp := s.splits[i]
	if p := keyPrefix(sp); e.pre != p {
		return e.pre > p
	}
	return bytes.Compare(k, sp) >= 0
}

// seal ends adding: what is left in the buffer is spilled if anything
// was (and the buffers freed: the merges and the sstable writers need the
// memory next), or sorted in place; then runs beyond fanIn are merged
// (cascade). It can be called more than once.
func (s *sorter) seal() error {
	if s.sealed {
		return s.sealErr
	}
	s.sealed = true
	if len(s.runs) == 0 {
		s.sortBuf()
		s.pickSplits()
		return nil
	}
	s.sealErr = s.spill()
	if s.sealErr == nil {
		s.sealErr = s.free()
	}
	if s.sealErr == nil {
		s.sealErr = s.cascade()
	}
	return s.sealErr
}

// sortFanIn is the most runs one merge reads at once. Each merge holds a
// reader (runReadBytes, or runReadMin per key range) and an open file per
// run: unbounded, the SKS keyspace's ≈ 1,000 runs of records and 600 of
// index entries took ≈ 400 MB of buffers and 3,000 open files. The 100k
// corpus spills ≈ 30 runs per sort, merged in one pass as before.
const sortFanIn = 64

// cascade merges consecutive runs into one until at most fanIn are left,
// merging no more than it must: each pass merges groups of up to fanIn
// runs from the first on, and stops merging as soon as the merged runs
// and the rest number fanIn (100 runs: the first 37 into one). Merging
// consecutive runs keeps equal keys in the order one merge of every run
// gives them (by run, then by place in the run; runHeap): the merged run
// stands where its runs stood. The merged runs' pages are punched out as
// they are read and their files removed after.
func (s *sorter) cascade() error {
	fanIn := max(2, s.fanIn)
	var readers []*bufio.Reader // reused by every merge
	for len(s.runs) > fanIn {
		var next []sortRun
		runs := s.runs
		for len(runs) > 0 {
			g := min(fanIn, len(runs), len(next)+len(runs)-fanIn+1)
			if g < 2 { // few enough now, or left to the next pass
				next = append(next, runs...)
				break
			}
			r, err := s.mergeRuns(runs[:g], &readers)
			if err != nil {
				return err
			}
			next = append(next, r)
			runs = runs[g:]
		}
		s.runs = next
	}
	return nil
}

// mergeRuns merges runs into a new run, key range after key range, and
// removes them.
func (s *sorter) mergeRuns(runs []sortRun, readers *[]*bufio.Reader) (sortRun, error) {
	path := s.runPath()
	f, err := os.Create(path)
	if err != nil {
		return sortRun{}, fmt.Errorf("bulk sort: %w", err)
	}
	if s.spillW == nil {
		s.spillW = bufio.NewWriterSize(f, 1<<20)
	}
	w := s.spillW
	w.Reset(f)
	offs := make([]int64, s.nparts()+1)
	var pos int64
	var hdr []byte
	for p := range s.nparts() {
		offs[p] = pos
		m, err := s.openMerge(runs, p, runReadBytes, true, *readers)
		if err != nil {
			f.Close()
			return sortRun{}, err
		}
		for {
			k, v, ok, err := m.next()
			if err != nil {
				m.close()
				f.Close()
				return sortRun{}, err
			}
			if !ok {
				break
			}
			hdr = binary.AppendUvarint(hdr[:0], uint64(len(k)))
			hdr = binary.AppendUvarint(hdr, uint64(len(v)))
			w.Write(hdr)
			w.Write(k)
			w.Write(v)
			pos += int64(len(hdr) + len(k) + len(v))
		}
		m.close()
		*readers = (*readers)[:0]
		for _, r := range m.all {
			*readers = append(*readers, r.r)
		}
	}
	offs[len(offs)-1] = pos
	if err := w.Flush(); err != nil {
		f.Close()
		return sortRun{}, fmt.Errorf("bulk sort: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return sortRun{}, fmt.Errorf("bulk sort: %w", err)
	}
	for _, r := range runs {
		if err := os.Remove(r.path); err != nil {
			return sortRun{}, fmt.Errorf("bulk sort: %w", err)
		}
	}
	return sortRun{path: path, offs: offs}, nil
}

// nparts is the number of key ranges; valid after seal.
func (s *sorter) nparts() int { return len(s.splits) + 1 }

// sortIter yields the sorter's pairs in key order. k and v are valid until
// the next call to next.
type sortIter interface {
	next() (k, v []byte, ok bool, err error)
	close()
}

// iter returns an iterator over everything added, every key range one
// after the other. It can be called more than once (each pass reads the
// runs again); add must not be called after.
func (s *sorter) iter() (sortIter, error) {
	if err := s.seal(); err != nil {
		return nil, err
	}
	if s.nparts() == 1 {
		return s.iterPart(0)
	}
	return &chainIter{s: s}, nil
}

// iterPart returns an iterator over key range p (0 <= p < nparts) of
// everything added. Ranges can be read at the same time, on different
// goroutines; add must not be called after.
func (s *sorter) iterPart(p int) (sortIter, error) {
	if err := s.seal(); err != nil {
		return nil, err
	}
	if p < 0 || p >= s.nparts() {
		return nil, fmt.Errorf("bulk sort: range %d of %d", p, s.nparts())
	}
	if len(s.runs) == 0 {
		lo, hi := 0, len(s.ents)
		if p > 0 {
			lo = s.searchSplit(p - 1)
		}
		if p < len(s.splits) {
			hi = s.searchSplit(p)
		}
		return &memIter{s: s, i: lo, end: hi}, nil
	}
	// The ranges' readers together take what one merge's did.
	return s.openMerge(s.runs, p, max(runReadMin, runReadBytes/s.nparts()), s.consume, nil)
}

// openMerge returns a merge of key range p of runs, with readers of
// readBytes (those of reuse first, when their size is that), punching the
// runs' pages out behind them when punch is set.
func (s *sorter) openMerge(runs []sortRun, p, readBytes int, punch bool, reuse []*bufio.Reader) (*mergeIter, error) {
	m := &mergeIter{s: s}
	for i, run := range runs {
		flag := os.O_RDONLY
		if punch {
			flag = os.O_RDWR // punching holes needs write access
		}
		f, err := os.OpenFile(run.path, flag, 0)
		if err != nil {
			m.close()
			return nil, fmt.Errorf("bulk sort: %w", err)
		}
		raiseTo(&s.openPeak, s.openRuns.Add(1))
		sec := &runSection{f: f, start: run.offs[p], off: run.offs[p], end: run.offs[p+1], punch: punch}
		var br *bufio.Reader
		if i < len(reuse) && reuse[i].Size() == readBytes {
			br = reuse[i]
			br.Reset(sec)
		} else {
			br = bufio.NewReaderSize(sec, readBytes)
		}
		r := &runReader{f: f, r: br, seq: i}
		m.all = append(m.all, r)
		if err := r.advance(); err != nil {
			m.close()
			return nil, err
		}
	}
	raiseTo(&s.widest, int64(len(m.all)))
	m.init()
	return m, nil
}

// raiseTo sets a to v if v is larger.
func raiseTo(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// searchSplit returns the first in-memory entry at or past split i.
func (s *sorter) searchSplit(i int) int {
	return sort.Search(len(s.ents), func(j int) bool {
		k, _ := s.entry(s.ents[j])
		return s.reached(s.ents[j], k, i)
	})
}

// chainIter reads a sorter's key ranges one after the other.
type chainIter struct {
	s   *sorter
	p   int
	cur sortIter
}

func (c *chainIter) next() ([]byte, []byte, bool, error) {
	for {
		if c.cur == nil {
			if c.p >= c.s.nparts() {
				return nil, nil, false, nil
			}
			it, err := c.s.iterPart(c.p)
			if err != nil {
				return nil, nil, false, err
			}
			c.cur, c.p = it, c.p+1
		}
		k, v, ok, err := c.cur.next()
		if ok || err != nil {
			return k, v, ok, err
		}
		c.cur.close()
		c.cur = nil
	}
}

func (c *chainIter) close() {
	if c.cur != nil {
		c.cur.close()
		c.cur = nil
	}
}

// runReadBytes is each run reader's buffer: a merge of the 100k corpus
// reads about 30 runs at once, and buffers of 1 MiB were as much fresh
// memory again as the sorts' own (page faults) for no fewer reads worth
// having. Pairs larger than this are copied out (runReader.advance).
const runReadBytes = 256 << 10

// runReadMin is the least buffer of a run reader when the ranges of a
// sort are merged at once (iterPart).
const runReadMin = 64 << 10

// runSection reads one key range of a run file. With punch set, the
// whole pages of the range that it has read (copied into the reader's
// buffer) are punched out of the file every punchBytes.
//
// Why: on the benchmark VM a page of memory new to the guest costs a trap
// to the hypervisor (≈ 7 µs per 4 KiB page, 0.95 s of CPU for 600 MiB
// written into fresh page cache, against 0.08 s into pages just freed),
// and the merges read ≈ 230 MB of runs for 100k keys while writing as
// much of sstables: freeing the runs' pages as they are consumed lets the
// sstables' page cache reuse them while they are still warm.
type runSection struct {
	f               *os.File
	start, off, end int64
	punch           bool
	punched         int64 // pages below this are punched (or not to be)
	punchFailed     bool
}

// punchBytes is how much is read between two punches (and the rest when
// the range has been read). Punches end on multiples of it: the page
// cache holds runs written 1 MiB at a time in large folios, and only
// whole folios freed are whole folios for the sstables to reuse.
const punchBytes = 2 << 20

func (r *runSection) Read(p []byte) (int, error) {
	if r.punch && !r.punchFailed {
		const page = 4096
		if r.punched < r.start {
			// Only pages wholly inside the range: the neighbour
			// ranges' merges read the pages they share with it.
			r.punched = (r.start + page - 1) / page * page
		}
		to := r.off / punchBytes * punchBytes
		if r.off >= r.end {
			to = r.off / page * page
		}
		if to-r.punched >= punchBytes || r.off >= r.end && to > r.punched {
			if punchHole(r.f, r.punched, to-r.punched) != nil {
				r.punchFailed = true // the files are removed at the end anyway
			}
			r.punched = to
		}
	}
	if r.off >= r.end {
		return 0, io.EOF
	}
	if n := r.end - r.off; int64(len(p)) > n {
		p = p[:n]
	}
	n, err := r.f.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF {
		// The file ends before the range does (a run cut short): never
		// taken for the range's end.
		err = nil
		if n == 0 {
			err = io.ErrUnexpectedEOF
		}
	}
	return n, err
}

type memIter struct {
	s      *sorter
	i, end int
}

func (m *memIter) next() ([]byte, []byte, bool, error) {
	if m.i >= m.end {
		return nil, nil, false, nil
	}
	k, v := m.s.entry(m.s.ents[m.i])
	m.i++
	return k, v, true, nil
}

func (m *memIter) close() {}

type runReader struct {
	f    *os.File
	r    *bufio.Reader
	seq  int
	k, v []byte
	pre  uint64 // keyPrefix(k)
	done bool   // at the end of its range
	buf  []byte
	// peeked: k and v alias r's buffer for these many bytes, discarded on
	// the next advance. Pairs are read in place when they fit the buffer
	// instead of being copied out (the records alone are 140 MB for 100k
	// keys).
	peeked int
}

// advance reads the next pair of the run (done at its end), and its key's
// first 8 bytes into pre.
func (r *runReader) advance() error {
	if r.peeked > 0 {
		if _, err := r.r.Discard(r.peeked); err != nil {
			return fmt.Errorf("bulk sort: read %s: %w", r.f.Name(), err)
		}
		r.peeked = 0
	}
	// Both lengths decoded from the buffer in place: reading them a byte
	// at a time through bufio was a tenth of the merges.
	hdr, err := r.r.Peek(2 * binary.MaxVarintLen64)
	if len(hdr) == 0 {
		if err == io.EOF {
			r.done = true
			return nil
		}
		return fmt.Errorf("bulk sort: read %s: %w", r.f.Name(), err)
	}
	kl, n1 := binary.Uvarint(hdr)
	var vl uint64
	n2 := 0
	if n1 > 0 {
		vl, n2 = binary.Uvarint(hdr[n1:])
	}
	if n1 <= 0 || n2 <= 0 {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF // or a length that overflows: corrupt either way
		}
		return fmt.Errorf("bulk sort: read %s: %w", r.f.Name(), err)
	}
	h := n1 + n2
	n := int(kl + vl)
	if h+n <= r.r.Size() {
		b, err := r.r.Peek(h + n)
		if err != nil {
			return fmt.Errorf("bulk sort: read %s: %w", r.f.Name(), noEOF(err))
		}
		b = b[h:]
		r.k, r.v, r.peeked = b[:kl:kl], b[kl:n:n], h+n
	} else {
		if _, err := r.r.Discard(h); err != nil {
			return fmt.Errorf("bulk sort: read %s: %w", r.f.Name(), err)
		}
		if cap(r.buf) < n {
			r.buf = make([]byte, n)
		}
		r.buf = r.buf[:n]
		if _, err := io.ReadFull(r.r, r.buf); err != nil {
			return fmt.Errorf("bulk sort: read %s: %w", r.f.Name(), noEOF(err))
		}
		r.k, r.v = r.buf[:kl], r.buf[kl:]
	}
	r.pre = keyPrefix(r.k)
	return nil
}

// noEOF turns a premature end of a run file into io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// mergeIter merges runs with a tournament of losers: tree[0] is the
// reader whose pair comes next, tree[n] for 0 < n < len(all) the loser of
// the match at node n (the readers are the leaves len(all)+i). After the
// winner advances, only the matches on its way to the root are played
// again: one comparison per level, where a binary heap (container/heap,
// through its interface) made up to two and was a fifth of pass 4.
type mergeIter struct {
	s    *sorter
	all  []*runReader
	tree []int
	prev *runReader // returned last: advanced on the next call
}

// before reports whether reader a's pair comes before b's: by key (the
// first 8 bytes as one integer first), then by run, so that equal keys
// come in run order; a run at its end comes after every other.
func (m *mergeIter) before(a, b int) bool {
	ra, rb := m.all[a], m.all[b]
	switch {
	case ra.done || rb.done:
		return !ra.done || rb.done && ra.seq < rb.seq
	case ra.pre != rb.pre:
		return ra.pre < rb.pre
	}
	if c := bytes.Compare(ra.k, rb.k); c != 0 {
		return c < 0
	}
	return ra.seq < rb.seq
}

// init plays every match once.
func (m *mergeIter) init() {
	k := len(m.all)
	m.tree = make([]int, max(k, 1))
	if k == 0 {
		return
	}
	win := make([]int, 2*k)
	for i := range k {
		win[k+i] = i
	}
	for n := k - 1; n >= 1; n-- {
		a, b := win[2*n], win[2*n+1]
		if m.before(b, a) {
			a, b = b, a
		}
		win[n], m.tree[n] = a, b
	}
	m.tree[0] = win[1]
	if k == 1 {
		m.tree[0] = 0
	}
}

// replay plays the matches on the way from leaf i to the root again.
func (m *mergeIter) replay(i int) {
	k := len(m.all)
	w := i
	for n := (i + k) / 2; n >= 1; n /= 2 {
		if m.before(m.tree[n], w) {
			m.tree[n], w = w, m.tree[n]
		}
	}
	m.tree[0] = w
}

func (m *mergeIter) next() ([]byte, []byte, bool, error) {
	if len(m.all) == 0 {
		return nil, nil, false, nil
	}
	if m.prev != nil {
		if err := m.prev.advance(); err != nil {
			return nil, nil, false, err
		}
		m.replay(m.tree[0])
		m.prev = nil
	}
	r := m.all[m.tree[0]]
	if r.done {
		return nil, nil, false, nil
	}
	m.prev = r
	return r.k, r.v, true, nil
}

func (m *mergeIter) close() {
	for _, r := range m.all {
		if r.f != nil {
			r.f.Close()
			r.f = nil
			m.s.openRuns.Add(-1)
		}
	}
}

// sstWriter writes sorted pairs into sstables for ingestion. Each file
// holds keys of one prefix byte and at most targetBytes, so the files of
// all writers never overlap and ingest straight into the bottom level.
// A key equal to the previous one is dropped (index entries written twice
// by incremental application are one entry there too).
type sstWriter struct {
	dir    string
	name   string
	opts   sstable.WriterOptions
	target uint64
	w      *sstable.Writer
	prefix byte
	last   []byte
	paths  []string
	// Files are finished (last blocks, fsync) on their own goroutines,
	// so that a sync does not stall the writing of the next file.
	closing sync.WaitGroup
	errMu   sync.Mutex
	err     error
}

const sstTargetBytes = 64 << 20

func (w *sstWriter) add(k, v []byte) error {
	if w.w != nil && bytes.Equal(k, w.last) {
		return nil
	}
	if w.w != nil && (k[0] != w.prefix || w.w.EstimatedSize() >= w.target) {
		if err := w.closeFile(); err != nil {
			return err
		}
	}
	if w.w == nil {
		path := filepath.Join(w.dir, fmt.Sprintf("%s-%04d.sst", w.name, len(w.paths)))
		f, err := vfs.Default.Create(path)
		if err != nil {
			return fmt.Errorf("bulk: %w", err)
		}
		// Written back as it goes (as Pebble does for its own tables),
		// so the final fsync has little left to do.
		f = vfs.NewSyncingFile(f, vfs.SyncingFileOptions{BytesPerSync: 1 << 20})
		w.w = sstable.NewWriter(newBufWritable(f), w.opts)
		w.paths = append(w.paths, path)
		w.prefix = k[0]
	}
	w.last = append(w.last[:0], k...)
	if err := w.w.Set(k, v); err != nil {
		return fmt.Errorf("bulk: write %s: %w", w.paths[len(w.paths)-1], err)
	}
	return nil
}

// closeFile starts finishing the current file; wait reports the outcome.
func (w *sstWriter) closeFile() error {
	if w.w == nil {
		return nil
	}
	sw, path := w.w, w.paths[len(w.paths)-1]
	w.w = nil
	w.closing.Add(1)
	go func() {
		defer w.closing.Done()
		if err := sw.Close(); err != nil {
			w.errMu.Lock()
			if w.err == nil {
				w.err = fmt.Errorf("bulk: finish %s: %w", path, err)
			}
			w.errMu.Unlock()
		}
	}()
	return nil
}

// finish closes the current file and waits until every file is written
// and synced; it returns the first error.
func (w *sstWriter) finish() error {
	w.closeFile()
	w.closing.Wait()
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

// bufWritable is objstorageprovider.NewFileWritable with a 1 MiB buffer
// instead of bufio's 4 KiB: the sstable writer hands over each block (about
// 4 KiB) as it is finished, so that buffer passed nearly every block
// straight to a write system call (50,000 of them for the 100k corpus, 5 %
// of a bulk import's CPU).
type bufWritable struct {
	f  vfs.File
	bw *bufio.Writer
}

var _ objstorage.Writable = (*bufWritable)(nil)

func newBufWritable(f vfs.File) *bufWritable {
	return &bufWritable{f: f, bw: bufio.NewWriterSize(f, 1<<20)}
}

func (w *bufWritable) Write(p []byte) error {
	_, err := w.bw.Write(p)
	return err
}

func (w *bufWritable) Finish() error {
	err := w.bw.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (w *bufWritable) Abort() { w.f.Close() }
