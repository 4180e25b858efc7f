package hkp

import (
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections"
)

// BenchmarkLegacyRecords measures what the v1 rule for v6 keys adds to a
// /pks/lookup request: one more classification of the search and a pass
// over the matched records, no parsing.
func BenchmarkLegacyRecords(b *testing.B) {
	s := &Server{}
	cfg := DefaultConfig()
	s.setConfig(&cfg)
	v4 := []*projections.Record{{SKS: true}, {SKS: true}}
	mixed := []*projections.Record{{SKS: true}, {SKS: false}, {SKS: true}}
	for _, c := range []struct {
		name, search string
		recs         []*projections.Record
	}{
		{"v4-only/fingerprint", "0x3B03A965A519A6CAE8B09425CED1786732CA2E5C", v4},
		{"v4-only/address", "alice@example.org", v4},
		{"with-v6/fingerprint", "0x3B03A965A519A6CAE8B09425CED1786732CA2E5C", mixed},
		{"with-v6/address", "alice@example.org", mixed},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			q := query{op: "get", search: c.search, limit: -1}
			for b.Loop() {
				s.legacyRecords(q, c.recs)
			}
		})
	}
}
