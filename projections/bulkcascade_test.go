package projections

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// cascadePairs returns rounds rounds of the same distinct keys, in the same
// order each round, each pair's value its round: equal keys then never meet
// in one run (a run holds fewer pairs than a round), so the order one
// merge gives equal keys (by run) is the order they were added in, and a
// stable sort of the pairs by key is the exact expected sequence.
func cascadePairs(n, rounds int) (keys, vals [][]byte) {
	rng := rand.New(rand.NewPCG(5, 6))
	var distinct [][]byte
	seen := map[string]bool{}
	for len(distinct) < n {
		// Varied lengths and long shared prefixes (as index entries).
		k := []byte("Wword\x00")[:rng.IntN(7)]
		for range rng.IntN(14) {
			k = append(k, "ab\x00\xff"[rng.IntN(4)])
		}
		if !seen[string(k)] {
			seen[string(k)] = true
			distinct = append(distinct, k)
		}
	}
	for r := range rounds {
		for _, k := range distinct {
			keys = append(keys, k)
			vals = append(vals, binary.BigEndian.AppendUint64(nil, uint64(r)))
		}
	}
	return keys, vals
}

// readSorter reads everything from s, one key range after the other.
func readSorter(t *testing.T, s *sorter) (keys, vals [][]byte) {
	t.Helper()
	it, err := s.iter()
	if err != nil {
		t.Fatal(err)
	}
	defer it.close()
	for {
		k, v, ok, err := it.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return keys, vals
		}
		keys, vals = append(keys, bytes.Clone(k)), append(vals, bytes.Clone(v))
	}
}

// runFiles lists the run files in dir.
func runFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.run"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(m)
	return m
}

// TestSorterCascade: with more spilled runs than its fan-in, a sort merges
// runs first so that no merge reads more than fan-in runs (readers and
// open files), removes the merged runs, and gives exactly the sequence of
// one merge of every run and of a stable sort in memory, equal keys
// included; in one key range or several, read once (pages punched) or
// not.
func TestSorterCascade(t *testing.T) {
	const limit = 4 << 10 // 85 entries a run
	keys, vals := cascadePairs(1500, 6)
	type pair struct{ k, v []byte }
	want := make([]pair, len(keys))
	for i := range keys {
		want[i] = pair{keys[i], vals[i]}
	}
	slices.SortStableFunc(want, func(a, b pair) int { return bytes.Compare(a.k, b.k) })
	for _, parts := range []int{1, 3} {
		fill := func(fanIn int, consume bool) (*sorter, string) {
			dir := t.TempDir()
			s := newPartSorter(dir, "t", limit, parts, nil)
			s.fanIn, s.consume = fanIn, consume
			for i := range keys {
				if err := s.add(keys[i], vals[i]); err != nil {
					t.Fatal(err)
				}
			}
			return s, dir
		}
		// The reference: every run in one merge.
		ref, _ := fill(1<<30, false)
		if err := ref.seal(); err != nil {
			t.Fatal(err)
		}
		spilled := len(ref.runs)
		if spilled < 100 {
			t.Fatalf("%d runs: the test needs many", spilled)
		}
		refK, refV := readSorter(t, ref)
		if int(ref.widest.Load()) != spilled {
			t.Fatalf("reference merge read %d runs at once, want all %d", ref.widest.Load(), spilled)
		}
		ref.free()
		for i := range want {
			if !bytes.Equal(refK[i], want[i].k) || !bytes.Equal(refV[i], want[i].v) {
				t.Fatalf("%d parts: one merge of every run: pair %d is %q=%x, a stable sort gives %q=%x",
					parts, i, refK[i], refV[i], want[i].k, want[i].v)
			}
		}
		// spilled-1: exactly one merge, of the first two runs.
		for _, fanIn := range []int{2, 4, 7, spilled - 1} {
			for _, consume := range []bool{false, true} {
				name := fmt.Sprintf("%d parts, fan-in %d, consume %v", parts, fanIn, consume)
				s, dir := fill(fanIn, consume)
				if err := s.seal(); err != nil {
					t.Fatal(err)
				}
				if len(s.runs) > fanIn {
					t.Fatalf("%s: %d runs left after seal", name, len(s.runs))
				}
				var left []string
				for _, r := range s.runs {
					left = append(left, r.path)
				}
				slices.Sort(left)
				if got := runFiles(t, dir); !slices.Equal(got, left) {
					t.Fatalf("%s: %d run files on disk, %d runs left: merged runs not removed", name, len(got), len(left))
				}
				if fanIn == spilled-1 && s.nrun != spilled+1 {
					t.Fatalf("%s: %d runs written for %d spilled, want one merge", name, s.nrun, spilled)
				}
				gotK, gotV := readSorter(t, s)
				if !slices.EqualFunc(gotK, refK, bytes.Equal) || !slices.EqualFunc(gotV, refV, bytes.Equal) {
					t.Fatalf("%s: the sequence differs from one merge of every run", name)
				}
				if w := s.widest.Load(); w > int64(fanIn) {
					t.Fatalf("%s: a merge read %d runs at once", name, w)
				}
				if p := s.openPeak.Load(); p > int64(fanIn) {
					t.Fatalf("%s: %d run files open at once", name, p)
				}
				if n := s.openRuns.Load(); n != 0 {
					t.Fatalf("%s: %d run files left open", name, n)
				}
				s.free()
			}
		}
	}
}

// TestSorterCascadeKeepsFewRuns: a sort of no more runs than its fan-in
// (the 100k corpus: ≈ 30 runs per sort) writes no merged run, and seal
// keeps every spilled run.
func TestSorterCascadeKeepsFewRuns(t *testing.T) {
	dir := t.TempDir()
	s := newSorter(dir, "t", 4<<10)
	defer s.free()
	keys, vals := cascadePairs(300, 2) // ≈ 8 runs
	for i := range keys {
		if err := s.add(keys[i], vals[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.seal(); err != nil {
		t.Fatal(err)
	}
	if len(s.runs) < 2 || len(s.runs) > sortFanIn || s.nrun != len(s.runs) {
		t.Fatalf("%d runs left, %d written", len(s.runs), s.nrun)
	}
	if got := runFiles(t, dir); len(got) != len(s.runs) {
		t.Fatalf("%d run files for %d runs", len(got), len(s.runs))
	}
}

// TestSorterCascadeMissingRun: a run that cannot be read makes seal fail,
// and every later call too, instead of merging what is left.
func TestSorterCascadeMissingRun(t *testing.T) {
	s := newSorter(t.TempDir(), "t", 4<<10)
	defer s.free()
	s.fanIn = 4
	keys, vals := cascadePairs(300, 4)
	for i := range keys {
		if err := s.add(keys[i], vals[i]); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.runs) <= 4 {
		t.Fatalf("%d runs: the test needs more than the fan-in", len(s.runs))
	}
	if err := os.Remove(s.runs[len(s.runs)-1].path); err != nil {
		t.Fatal(err)
	}
	if err := s.seal(); err == nil {
		t.Fatal("seal merged runs with one missing")
	}
	if _, err := s.iter(); err == nil {
		t.Fatal("iter after a failed seal succeeded")
	}
}

// TestSorterRunCutShort: a run file that ends before the pairs it was
// written with (cut inside a pair, or between two) fails the merge with
// io.ErrUnexpectedEOF instead of ending it early.
func TestSorterRunCutShort(t *testing.T) {
	keys, vals := cascadePairs(400, 3)
	for _, cut := range []string{"inside a pair", "between pairs"} {
		t.Run(cut, func(t *testing.T) {
			dir := t.TempDir()
			s := newSorter(dir, "t", 4<<10)
			for i := range keys {
				if err := s.add(keys[i], vals[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.seal(); err != nil {
				t.Fatal(err)
			}
			if len(s.runs) < 2 {
				t.Fatalf("%d runs, want several", len(s.runs))
			}
			run := s.runs[1].path
			data, err := os.ReadFile(run)
			if err != nil {
				t.Fatal(err)
			}
			// The end of the first half's last whole pair.
			end := 0
			for end < len(data)/2 {
				kl, n1 := binary.Uvarint(data[end:])
				vl, n2 := binary.Uvarint(data[end+n1:])
				end += n1 + n2 + int(kl+vl)
			}
			if cut == "inside a pair" {
				end -= 3
			}
			if err := os.Truncate(run, int64(end)); err != nil {
				t.Fatal(err)
			}
			it, err := s.iter()
			if err == nil {
				for {
					var ok bool
					if _, _, ok, err = it.next(); !ok || err != nil {
						break
					}
				}
				it.close()
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("merge of a run cut %s: err = %v, want io.ErrUnexpectedEOF", cut, err)
			}
		})
	}
}

// BenchmarkSorterMerge reads back ≈ 30 spilled runs of index-like pairs
// (pass 4's merge): keys of 6–20 bytes, many sharing their first 8.
func BenchmarkSorterMerge(b *testing.B) {
	keys, vals := cascadePairs(100000, 3)
	s := newSorter(b.TempDir(), "t", 512<<10)
	var size int64
	for i := range keys {
		if err := s.add(keys[i], vals[i]); err != nil {
			b.Fatal(err)
		}
		size += int64(len(keys[i]) + len(vals[i]))
	}
	if err := s.seal(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		it, err := s.iter()
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, _, ok, err := it.next()
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			n++
		}
		it.close()
		if n != len(keys) {
			b.Fatalf("%d pairs, want %d", n, len(keys))
		}
	}
	b.ReportMetric(float64(len(s.runs)), "runs")
}
