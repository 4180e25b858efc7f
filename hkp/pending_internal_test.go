package hkp

import (
	"fmt"
	"testing"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// TestPendingUploadsForgetsApplied: an applied upload no longer makes a
// repeat wait, its memory is let go, and a key uploaded again since still
// waits for its newer index.
func TestPendingUploadsForgetsApplied(t *testing.T) {
	var p pendingUploads
	rid := func(i int) []byte { return []byte(fmt.Sprintf("rid-%d", i)) }
	for i := 1; i <= 10; i++ {
		p.add([][]byte{rid(i)}, eventlog.Index(i))
	}
	p.add([][]byte{rid(3)}, 12) // uploaded again, in a later event
	if idx, full := p.index(rid(7), 0); idx != 7 || full {
		t.Fatalf("index(rid 7, applied 0) = %d, %v; want 7, false", idx, full)
	}
	if idx, _ := p.index(rid(7), 7); idx != 0 {
		t.Fatalf("index(rid 7, applied 7) = %d; want 0", idx)
	}
	if idx, _ := p.index(rid(3), 7); idx != 12 {
		t.Fatalf("index(rid 3, applied 7) = %d; want 12 (its second upload)", idx)
	}
	if got, want := len(p.rids), 4; got != want { // 8, 9, 10 and 3's second
		t.Fatalf("%d record IDs remembered after applying 7; want %d", got, want)
	}
	if got, want := len(p.order), 4; got != want {
		t.Fatalf("%d entries queued after applying 7; want %d", got, want)
	}
	if idx, _ := p.index(rid(3), 12); idx != 0 || len(p.rids) != 0 || len(p.order) != 0 {
		t.Fatalf("after applying 12: index %d, %d IDs, %d queued; want all 0", idx, len(p.rids), len(p.order))
	}
}

// TestPendingUploadsOutOfOrder: uploads answered out of log order (their
// appends finish in any order) are forgotten once applied, even when one
// with a later index was added before them.
func TestPendingUploadsOutOfOrder(t *testing.T) {
	var p pendingUploads
	p.add([][]byte{[]byte("late")}, 5)
	p.add([][]byte{[]byte("early")}, 4)
	if idx, _ := p.index([]byte("early"), 4); idx != 0 {
		t.Fatalf("index(early, applied 4) = %d; want 0: it is applied", idx)
	}
	if idx, _ := p.index([]byte("late"), 4); idx != 5 {
		t.Fatalf("index(late, applied 4) = %d; want 5", idx)
	}
	if idx, _ := p.index([]byte("late"), 5); idx != 0 || len(p.rids) != 0 {
		t.Fatalf("after applying 5: index %d, %d IDs; want 0, 0", idx, len(p.rids))
	}

	// Two uploads of one key, added in the opposite order to their
	// appends: a third waits for the later append, not the earlier.
	p.add([][]byte{[]byte("twice")}, 9)
	p.add([][]byte{[]byte("twice")}, 7)
	if idx, _ := p.index([]byte("twice"), 7); idx != 9 {
		t.Fatalf("index(twice, applied 7) = %d; want 9", idx)
	}
}

// BenchmarkPendingIndex is one upload's look-up with n uploads pending,
// the projections applying one event per upload: constant in n since the
// queue (it walked the whole map before: ≈ n × 20 ns).
func BenchmarkPendingIndex(b *testing.B) {
	for _, n := range []int{256, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var p pendingUploads
			rids := make([][]byte, n+b.N)
			for i := range rids {
				rids[i] = []byte(fmt.Sprintf("%040d", i))
			}
			for i := 0; i < n; i++ {
				p.add(rids[i:i+1], eventlog.Index(i+1))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.add(rids[n+i:n+i+1], eventlog.Index(n+i+1))
				p.index(rids[n+i], eventlog.Index(i+1))
			}
		})
	}
}
