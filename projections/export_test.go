package projections

import "github.com/grapevine-keyserver/grapevine/projections/ptree"

// BulkPtreeStats reports, for the external tests, how the last bulk path
// since Open built the prefix tree: whether its elements went through the
// external sort (streamed), the most elements pass 1 held in memory, and
// the build's own figures.
func BulkPtreeStats(s *Store) (streamed bool, passOnePeak int, build ptree.StreamStats) {
	st := s.bulkPtree
	return st.streamed, st.peak, st.build
}
