package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/ptree"
)

// ptreeOutput collects what a prefix tree build emits.
func ptreeOutput(out *[]string) func(k, v []byte) error {
	return func(k, v []byte) error {
		*out = append(*out, fmt.Sprintf("%x=%x", k, v))
		return nil
	}
}

// bulkElemsInput returns n elements in log order (Order 1..n): random
// hashes, and among the events after last, hashes of earlier events
// (a key's second version ends the bulk part there) and the zero hash,
// a sample point, none of which must count.
func bulkElemsInput(n int, last uint64) []ptree.Elem {
	rng := rand.New(rand.NewPCG(uint64(n), last))
	elems := make([]ptree.Elem, n)
	for i := range elems {
		for j := range elems[i].Hash {
			elems[i].Hash[j] = byte(rng.Uint32())
		}
		elems[i].Order = uint64(i + 1)
		if elems[i].Order > last && i%7 == 0 {
			elems[i].Hash = elems[rng.IntN(int(last))].Hash
		}
	}
	if n > int(last) {
		elems[last].Hash = [16]byte{}
	}
	return elems
}

// TestBulkElemsBounded checks that pass 1 never holds more prefix tree
// elements than its bound, and that past it the streamed build writes
// what the in-memory build of the elements up to the cutoff writes.
func TestBulkElemsBounded(t *testing.T) {
	cfg := ptree.DefaultConfig()
	cfg.KeyPrefix = []byte{prefixPtree}
	cfg.SplitThreshold, cfg.JoinThreshold = 4, 2
	const bound = 100 // elements; above ptree.MinStreamElems(cfg), so the build keeps to it too
	if bound < ptree.MinStreamElems(cfg) {
		t.Fatalf("bound %d below MinStreamElems %d", bound, ptree.MinStreamElems(cfg))
	}
	for _, tc := range []struct {
		n    int
		last uint64
	}{
		{60, 60}, {bound, 90}, {bound + 1, bound + 1}, {5000, 4000}, {20000, 19000},
	} {
		t.Run(fmt.Sprintf("n=%d,last=%d", tc.n, tc.last), func(t *testing.T) {
			all := bulkElemsInput(tc.n, tc.last)
			e := newBulkElems(t.TempDir(), bound*elemBytes)
			defer e.free()
			for _, el := range all {
				if err := e.add(el); err != nil {
					t.Fatal(err)
				}
				if len(e.mem) > bound || cap(e.mem) > bound {
					t.Fatalf("holding %d elements (capacity %d), bound %d", len(e.mem), cap(e.mem), bound)
				}
			}
			if got, want := e.streamed(), tc.n > bound; got != want {
				t.Fatalf("streamed %v, want %v", got, want)
			}
			if err := e.seal(); err != nil {
				t.Fatal(err)
			}
			var got []string
			st, err := e.build(cfg, eventlog.Index(tc.last), ptreeOutput(&got))
			if err != nil {
				t.Fatal(err)
			}
			if st.MaxHeld > bound {
				t.Fatalf("build held %d elements, bound %d", st.MaxHeld, bound)
			}
			if tc.n >= 5000 && st.Depth < 3 {
				t.Fatalf("large nodes down to depth %d only", st.Depth-1)
			}
			want := slices.DeleteFunc(slices.Clone(all), func(el ptree.Elem) bool { return el.Order > tc.last })
			slices.SortFunc(want, func(a, b ptree.Elem) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
			var wantOut []string
			if err := ptree.Build(cfg, want, ptreeOutput(&wantOut)); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, wantOut) {
				t.Fatalf("%d keys written, want %d (or they differ)", len(got), len(wantOut))
			}
		})
	}
}

// TestBulkElemsRefuse checks that a duplicate or sample-point hash up to
// the cutoff makes the bulk path fall back, in memory and streamed.
func TestBulkElemsRefuse(t *testing.T) {
	cfg := ptree.DefaultConfig()
	for _, n := range []int{200, 3000} { // in memory, streamed
		for _, tc := range []struct {
			name string
			want error
			edit func(all []ptree.Elem)
		}{
			{"duplicate", ptree.ErrDuplicate, func(all []ptree.Elem) { all[n/2].Hash = all[n/3].Hash }},
			{"sample point", ptree.ErrSamplePoint, func(all []ptree.Elem) { all[n/2].Hash = [16]byte{} }},
		} {
			t.Run(fmt.Sprintf("%s/n=%d", tc.name, n), func(t *testing.T) {
				all := bulkElemsInput(n, uint64(n))
				tc.edit(all)
				e := newBulkElems(t.TempDir(), 1000*elemBytes)
				defer e.free()
				for _, el := range all {
					if err := e.add(el); err != nil {
						t.Fatal(err)
					}
				}
				if err := e.seal(); err != nil {
					t.Fatal(err)
				}
				var out []string
				_, err := e.build(cfg, eventlog.Index(n), ptreeOutput(&out))
				if !errors.Is(err, tc.want) {
					t.Fatalf("got %v, want %v", err, tc.want)
				}
				if !errors.Is(errPtreeBuild(err), errBulkFallback) {
					t.Fatalf("%v does not make the bulk path fall back", err)
				}
			})
		}
	}
}

// TestBulkAsidesCounted checks that the rejected and unknown-kind events
// go through their sort (many runs, merged in a cascade) and are counted
// up to the cutoff only.
func TestBulkAsidesCounted(t *testing.T) {
	b := &bulkBuild{asides: newSorter(t.TempDir(), "asides", 480)} // 10 per run
	defer b.asides.free()
	const n, last = 1000, 600
	want := map[eventlog.Origin]ApplyStats{}
	for i := eventlog.Index(1); i <= n; i++ {
		origin := eventlog.Origin(i % 3)
		bad := i%2 == 0
		if err := b.addAside(i, origin, bad); err != nil {
			t.Fatal(err)
		}
		if i > last {
			continue
		}
		o := want[origin]
		if bad {
			o.Rejected++
		} else {
			o.Skipped++
		}
		want[origin] = o
	}
	got := map[eventlog.Origin]ApplyStats{}
	if err := b.countAsides(last, got); err != nil {
		t.Fatal(err)
	}
	if len(b.asides.runs) < 2 {
		t.Fatalf("%d runs: the asides did not spill", len(b.asides.runs))
	}
	for o, w := range want {
		if got[o] != w {
			t.Fatalf("origin %d: got %+v, want %+v", o, got[o], w)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d origins, want %d", len(got), len(want))
	}
}

// BenchmarkBulkElems is the prefix tree's part of a bulk build of 1M keys
// (SKS thresholds): pass 1's adds, then the build after the cutoff, held
// in memory (the bound above the keys) and streamed (the default bound).
func BenchmarkBulkElems(b *testing.B) {
	const n = 1000000
	all := bulkElemsInput(n, n)
	cfg := ptree.DefaultConfig()
	cfg.KeyPrefix = []byte{prefixPtree}
	for _, bc := range []struct {
		name  string
		bytes int
	}{{"memory", (n + 1) * elemBytes}, {"streamed", defaultBulkPtreeBytes}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				e := newBulkElems(b.TempDir(), bc.bytes)
				for _, el := range all {
					if err := e.add(el); err != nil {
						b.Fatal(err)
					}
				}
				if err := e.seal(); err != nil {
					b.Fatal(err)
				}
				if _, err := e.build(cfg, n, func(k, v []byte) error { return nil }); err != nil {
					b.Fatal(err)
				}
				e.free()
			}
		})
	}
}

// BenchmarkBulkElemsKeyspace is the prefix tree's part of a bulk build of
// the SKS keyspace (6 million keys, drawn as they are added) held in
// memory and streamed, reporting the process's peak RSS while it ran
// (Linux: VmHWM after resetting it). Run one at a time, each in a process
// of its own:
//
//	go test ./projections -run X -bench 'BulkElemsKeyspace/streamed' -benchtime 1x
func BenchmarkBulkElemsKeyspace(b *testing.B) {
	const n = 6000000
	cfg := ptree.DefaultConfig()
	cfg.KeyPrefix = []byte{prefixPtree}
	for _, bc := range []struct {
		name  string
		bytes int
	}{{"memory", (n + 1) * elemBytes}, {"streamed", defaultBulkPtreeBytes}} {
		b.Run(bc.name, func(b *testing.B) {
			resetPeakRSS := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
			for range b.N {
				rng := rand.New(rand.NewPCG(1, 0))
				e := newBulkElems(b.TempDir(), bc.bytes)
				for i := range n {
					el := ptree.Elem{Order: uint64(i + 1)}
					binary.LittleEndian.PutUint64(el.Hash[:8], rng.Uint64())
					binary.LittleEndian.PutUint64(el.Hash[8:], rng.Uint64())
					if err := e.add(el); err != nil {
						b.Fatal(err)
					}
				}
				if err := e.seal(); err != nil {
					b.Fatal(err)
				}
				st, err := e.build(cfg, n, func(k, v []byte) error { return nil })
				if err != nil {
					b.Fatal(err)
				}
				e.free()
				b.ReportMetric(float64(st.BigNodes), "large-nodes")
			}
			if peak, err := peakRSS(); err == nil && resetPeakRSS {
				b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
			}
		})
	}
}

// peakRSS returns the process's peak resident set size (VmHWM), Linux only.
func peakRSS() (int64, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}
