package projections

import (
	"encoding/binary"
	"sync"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// wordFacts remembers whether a version of a key has a word, as searches
// learnt it by seeking the word's postings. A version (record ID and log
// index) is never rewritten, so a fact never goes stale: a key that changes
// gets a new index and its postings say so. Searches by e-mail address
// check the words of every match against the address's other words (3-4
// seeks of ~2 µs per match); repeated searches answer them from here.
//
// Two generations bound the memory: facts go into the current map, which
// becomes the previous one when full (the previous one is dropped), and a
// fact found in the previous map moves to the current one. Safe for
// concurrent use; the zero value is ready.
type wordFacts struct {
	mu        sync.Mutex
	cur, prev map[string]bool
}

// wordFactsPerGeneration bounds each map: about 100 bytes a fact, so at
// most ~13 MB for the two.
const wordFactsPerGeneration = 1 << 16

// appendFactKey appends the key of (rid, idx, word) to dst.
func appendFactKey(dst, rid []byte, idx eventlog.Index, word string) []byte {
	dst = appendRID(dst, rid)
	dst = binary.BigEndian.AppendUint64(dst, uint64(idx))
	return append(dst, word...)
}

// lookup returns the fact for key k and whether there is one.
func (f *wordFacts) lookup(k []byte) (has, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if has, ok = f.cur[string(k)]; ok {
		return has, true
	}
	if has, ok = f.prev[string(k)]; ok {
		f.putLocked(string(k), has)
	}
	return has, ok
}

func (f *wordFacts) put(k []byte, has bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.putLocked(string(k), has)
}

func (f *wordFacts) putLocked(k string, has bool) {
	if f.cur == nil || len(f.cur) >= wordFactsPerGeneration {
		f.prev, f.cur = f.cur, make(map[string]bool, 1024)
	}
	f.cur[k] = has
}
