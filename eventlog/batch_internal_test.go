package eventlog

import (
	"runtime"
	"testing"
)

// TestBatchGrowsInOneStep: once commit has given tidwall/wal's batch room
// for a batch (growBatch), writing its records allocates next to nothing;
// without it the batch's buffer grew by append, allocating ≈ 5 times the
// records for a bulk import's first chunk.
func TestBatchGrowsInOneStep(t *testing.T) {
	var l Log
	rec := make([]byte, 1400)
	const n = 2048
	l.growBatch(n * len(rec))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range n {
		l.batch.Write(uint64(i+1), rec)
	}
	runtime.ReadMemStats(&after)
	if got, max := after.TotalAlloc-before.TotalAlloc, uint64(n*len(rec)/8); got > max {
		t.Fatalf("writing %d bytes of records into the batch allocated %d bytes, want at most %d", n*len(rec), got, max)
	}
	// A smaller batch next fits in the room; clearing keeps it.
	l.growBatch(n * len(rec) / 2)
	runtime.ReadMemStats(&before)
	for i := range n / 2 {
		l.batch.Write(uint64(i+1), rec)
	}
	runtime.ReadMemStats(&after)
	if got, max := after.TotalAlloc-before.TotalAlloc, uint64(n*len(rec)/8); got > max {
		t.Fatalf("second batch allocated %d bytes, want at most %d", got, max)
	}
}
