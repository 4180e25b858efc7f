package projections_test

import "testing"

// BenchmarkCatchUpEmpty builds the projections of an empty store from a
// log of the Debian keyring (905 keys, 28.5 MB) event by event and with the
// bulk path: the replay and import-into-empty-basedir case, until the
// store is closed (durable). On a loaded disk the bulk path's fixed cost
// (a dozen sstable fsyncs, the ingest) dominates at this size.
func BenchmarkCatchUpEmpty(b *testing.B) {
	keys := debianKeys(b, 0)
	var raws [][]byte
	var size int64
	for _, k := range keys {
		raws = append(raws, k.Raw)
		size += int64(len(k.Raw))
	}
	src := openStoreBulk(b, b.TempDir(), 0)
	submit(b, src, raws...)
	for _, bc := range []struct {
		name    string
		bulkMin int
	}{{"incremental", 0}, {"bulk", 1}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				ts := openStoreBulkSort(b, b.TempDir(), bc.bulkMin, 0)
				copyLog(b, src, ts, 1, 0)
				b.StartTimer()
				st, err := ts.store.CatchUp(b.Context(), ts.log, nil)
				if err != nil {
					b.Fatal(err)
				}
				if st.Added != int64(len(keys)) {
					b.Fatalf("added %d keys, want %d", st.Added, len(keys))
				}
				// Until durable: the incremental path still has
				// memtables to flush.
				if err := ts.store.Close(); err != nil {
					b.Fatal(err)
				}
				ts.store = nil
				b.StopTimer()
				ts.close()
				b.StartTimer()
			}
			b.ReportMetric(float64(len(keys))*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
		})
	}
}
