package projections

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

// elemBytes is the size of one prefix-tree element of the bulk path: the
// key hash (16) and its event's index (8), in memory (ptree.Elem) and in
// the element sort and file (hash, then the index big-endian).
const elemBytes = 24

// defaultBulkPtreeBytes is Config.BulkPtreeBytes's default.
const defaultBulkPtreeBytes = 8 << 20

// bulkElems gathers the SKS hashes of the records pass 1 adds, with their
// event's index, for the prefix tree. Up to max of them are held in memory
// and the tree is built there at the end (ptree.Build), as it always was;
// past max they all go to an external sort instead, and the tree is built
// streaming from the sorted elements written to a file
// (ptree.BuildStream), so that its memory does not grow with the dump:
// for the SKS keyspace's six million keys the in-memory build peaked at
// 412 MiB (144 MB of elements, the whole tree's plan, the collector's
// headroom), the streamed one at 55 MiB (BenchmarkBulkElemsKeyspace).
type bulkElems struct {
	dir       string
	max       int // Invariant: len(mem) <= max, and cap(mem) too
	sortBytes int // the element sort's buffer
	mem       []ptree.Elem
	sort      *sorter // nil while the elements fit in mem
	// peak is the most elements mem held (tests).
	peak int
}

// newBulkElems gathers elements into dir, holding at most budgetBytes of
// them in memory (zero or less: the default).
func newBulkElems(dir string, budgetBytes int) *bulkElems {
	if budgetBytes <= 0 {
		budgetBytes = defaultBulkPtreeBytes
	}
	return &bulkElems{dir: dir, max: max(1, budgetBytes/elemBytes), sortBytes: max(elemBytes, budgetBytes)}
}

// add adds one element (pass 1).
func (e *bulkElems) add(el ptree.Elem) error {
	if e.sort == nil {
		if len(e.mem) < e.max {
			if len(e.mem) == cap(e.mem) {
				// Doubling as append would, but never past max (append
				// and slices.Grow round up to the allocator's sizes).
				grown := make([]ptree.Elem, len(e.mem), min(max(2*cap(e.mem), 1024), e.max))
				copy(grown, e.mem)
				e.mem = grown
			}
			e.mem = append(e.mem, el)
			e.peak = max(e.peak, len(e.mem))
			return nil
		}
		e.sort = newSorter(e.dir, "ptree", e.sortBytes)
		e.sort.consume = true // read once, into the element file
		for _, x := range e.mem {
			if err := e.addSorted(x); err != nil {
				return err
			}
		}
		e.mem = nil
	}
	return e.addSorted(el)
}

func (e *bulkElems) addSorted(el ptree.Elem) error {
	var rec [elemBytes]byte
	copy(rec[:16], el.Hash[:])
	binary.BigEndian.PutUint64(rec[16:], el.Order)
	return e.sort.add(rec[:16], rec[16:])
}

// streamed reports whether the elements went to the external sort.
func (e *bulkElems) streamed() bool { return e.sort != nil }

// seal ends adding; it spills what the sort holds in memory and frees it.
func (e *bulkElems) seal() error {
	if e.sort == nil {
		return nil
	}
	return e.sort.seal()
}

// free releases the memory (after build or on discard).
func (e *bulkElems) free() error {
	e.mem = nil
	if e.sort == nil {
		return nil
	}
	return e.sort.free()
}

// build writes the prefix tree of the elements of events up to last
// through emit: in memory as before while they fit in max, streamed
// otherwise. ptree.ErrDuplicate and ptree.ErrSamplePoint come back as from
// ptree.Build.
func (e *bulkElems) build(cfg ptree.Config, last eventlog.Index, emit func(k, v []byte) error) (ptree.StreamStats, error) {
	if e.sort == nil {
		elems := slices.DeleteFunc(e.mem, func(el ptree.Elem) bool { return el.Order > uint64(last) })
		e.mem = nil
		slices.SortFunc(elems, func(a, b ptree.Elem) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
		st := ptree.StreamStats{Elems: len(elems), MaxElems: e.max, MaxHeld: len(elems)}
		return st, ptree.Build(cfg, elems, emit)
	}
	path, err := e.writeFile(last)
	if err != nil {
		return ptree.StreamStats{}, err
	}
	defer os.Remove(path)
	open := func() (ptree.ElemReader, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("bulk: %w", err)
		}
		return &elemFileReader{f: f, r: bufio.NewReaderSize(f, 256<<10)}, nil
	}
	return ptree.BuildStream(cfg, ptree.StreamConfig{MaxElems: e.max}, open, emit)
}

// writeFile merges the element sort into a file of the elements of events
// up to last, sorted by hash, elemBytes each: BuildStream reads it three
// times, which is cheaper than merging the runs three times.
func (e *bulkElems) writeFile(last eventlog.Index) (path string, err error) {
	it, err := e.sort.iter()
	if err != nil {
		return "", err
	}
	defer it.close()
	path = filepath.Join(e.dir, "ptree.elems")
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("bulk: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("bulk: %w", cerr)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	for {
		k, v, ok, err := it.next()
		if err != nil {
			return "", err
		}
		if !ok {
			break
		}
		if len(k) != 16 || len(v) != 8 {
			return "", fmt.Errorf("bulk: prefix tree element %x %x: %w", k, v, errBadRecord)
		}
		if eventlog.Index(binary.BigEndian.Uint64(v)) > last {
			continue
		}
		w.Write(k)
		w.Write(v)
	}
	if err := w.Flush(); err != nil {
		return "", fmt.Errorf("bulk: write %s: %w", path, err)
	}
	return path, nil
}

// bulkPtreeStats describes the prefix tree build of a bulk path.
type bulkPtreeStats struct {
	streamed bool // the elements went through the sort
	peak     int  // the most elements held in memory in pass 1
	build    ptree.StreamStats
}

// elemFileReader reads the element file writeFile wrote.
type elemFileReader struct {
	f   *os.File
	r   *bufio.Reader
	rec [elemBytes]byte
}

func (r *elemFileReader) Next() (ptree.Elem, bool, error) {
	if _, err := io.ReadFull(r.r, r.rec[:]); err != nil {
		if err == io.EOF {
			return ptree.Elem{}, false, nil
		}
		return ptree.Elem{}, false, fmt.Errorf("bulk: read %s: %w", r.f.Name(), err)
	}
	var el ptree.Elem
	copy(el.Hash[:], r.rec[:16])
	el.Order = binary.BigEndian.Uint64(r.rec[16:])
	return el, true, nil
}

func (r *elemFileReader) Close() error { return r.f.Close() }

var _ ptree.ElemReader = (*elemFileReader)(nil)

// errPtreeBuild maps an error of the prefix tree's build: a duplicate or
// sample-point hash makes the bulk path fall back.
func errPtreeBuild(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ptree.ErrSamplePoint) || errors.Is(err, ptree.ErrDuplicate):
		return errBulkFallback
	}
	return fmt.Errorf("bulk: build prefix tree: %w", err)
}
