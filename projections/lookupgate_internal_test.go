package projections

import (
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble"
)

// blockingReader is a Reader whose Get waits for release, counting the
// callers inside it.
type blockingReader struct {
	inside, most atomic.Int64
	entered      chan struct{}
	release      chan struct{}
}

func (r *blockingReader) Get([]byte) ([]byte, io.Closer, error) {
	n := r.inside.Add(1)
	for {
		m := r.most.Load()
		if n <= m || r.most.CompareAndSwap(m, n) {
			break
		}
	}
	r.entered <- struct{}{}
	<-r.release
	r.inside.Add(-1)
	return nil, io.NopCloser(nil), nil
}

func (r *blockingReader) NewIter(*pebble.IterOptions) (*pebble.Iterator, error) { return nil, nil }

// TestLookupGateBoundsReads: with three times as many lookups as slots
// reading at once, exactly lookupSlots are inside the database at a time
// (each holding a slot), the others wait, and all finish once reads
// return.
func TestLookupGateBoundsReads(t *testing.T) {
	var g lookupGate
	n := lookupSlots()
	fr := &blockingReader{entered: make(chan struct{}, 3*n), release: make(chan struct{})}
	r := gatedReader{r: fr, g: &g}
	var wg sync.WaitGroup
	for range 3 * n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.Get(nil)
		}()
	}
	for range n {
		<-fr.entered
	}
	if got := len(g.slots); got != n {
		t.Fatalf("%d lookups inside, %d slots taken; want every one holding a slot", n, got)
	}
	select {
	case g.slots <- struct{}{}:
		t.Fatalf("a slot was free with %d lookups inside; want %d slots", n, n)
	default:
	}
	close(fr.release)
	wg.Wait()
	if m := fr.most.Load(); m > int64(n) {
		t.Fatalf("%d lookups were inside the database at once; the gate allows %d", m, n)
	}
	if len(g.slots) != 0 {
		t.Fatalf("%d slots still taken after every read returned", len(g.slots))
	}
}
