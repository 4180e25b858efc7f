package projections

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// The word index (prefix W, schema 3) is laid out for op=index, the
// searches clients send most after op=get:
//
//	W<word>\x00<len><rid> → posting: what an index page needs of the key's
//	                        newest version, so a search reads no record
//	W<word>\x01           → count: the word's number of postings (uvarint),
//	                        so the rarest word of a search is known from one
//	                        point read per word
//
// Words hold letters and digits only (Words), so the count key sorts right
// after the word's last posting and before any longer word.
//
// Posting value layout:
//
//	[0]      flags (flagSKS), as in the latest pointer
//	[1:17]   SKS key hash of the newest version
//	[17:49]  word signature of the key (wordSig)
//	then     index of the newest version (uvarint), primary key creation
//	         time in Unix seconds (varint)
//
// Every posting of a key is rewritten with each new version of it (the hash
// changes), by the incremental apply (indexWords), the bulk path
// (prepareBulk, wordCounter) and removed by a deletion; `grapevine
// check` compares all of it with a replay and recounts the postings.

const (
	postingFixed = 1 + 16 + 32
	wordSigBits  = 256
)

// wordSig is a 256-bit Bloom signature of all the words of a key's user
// IDs (three bits per word: with 30 words, 2.7 % of the words a key does
// not have pass). A search rejects most candidates of its rarest
// word by testing the other words against the candidate's signature, with
// no read; a candidate that passes is checked exactly against the postings.
type wordSig [4]uint64

// wordBits returns the three bit positions of word: FNV-1a 64, cut into
// 8-bit pieces. The function is on disk: changing it needs a schema bump.
func wordBits(word string) [3]uint {
	h := uint64(14695981039346656037)
	for i := 0; i < len(word); i++ {
		h ^= uint64(word[i])
		h *= 1099511628211
	}
	return [3]uint{uint(h % wordSigBits), uint((h >> 8) % wordSigBits), uint((h >> 16) % wordSigBits)}
}

func (s *wordSig) add(word string) {
	for _, b := range wordBits(word) {
		s[b/64] |= 1 << (b % 64)
	}
}

func (s *wordSig) hasBits(bits [3]uint) bool {
	for _, b := range bits {
		if s[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

// keyWords returns the distinct search words of the user IDs, in the order
// first seen, and their signature.
func keyWords(uids []string) ([]string, wordSig) {
	var words []string
	var sig wordSig
	seen := make(map[string]bool)
	for _, u := range uids {
		for _, w := range Words(u) {
			if !seen[w] {
				seen[w] = true
				words = append(words, w)
				sig.add(w)
			}
		}
	}
	return words, sig
}

func wordCountKey(word string) []byte {
	k := make([]byte, 0, 2+len(word))
	k = append(k, prefixWord)
	k = append(k, word...)
	return append(k, 1)
}

func encodePosting(idx eventlog.Index, flags byte, h pgpkey.KeyHash, created time.Time, sig wordSig) []byte {
	return appendPosting(make([]byte, 0, postingFixed+2*binary.MaxVarintLen64), idx, flags, h, created, sig)
}

// appendPosting appends encodePosting's value to dst.
func appendPosting(dst []byte, idx eventlog.Index, flags byte, h pgpkey.KeyHash, created time.Time, sig wordSig) []byte {
	dst = append(dst, flags)
	dst = append(dst, h[:]...)
	for _, w := range sig {
		dst = binary.BigEndian.AppendUint64(dst, w)
	}
	dst = binary.AppendUvarint(dst, uint64(idx))
	return binary.AppendVarint(dst, created.Unix())
}

// decodePosting fills rec (all but RID and Key) from a posting value.
func decodePosting(v []byte, rec *Record) error {
	if len(v) < postingFixed {
		return fmt.Errorf("posting: %w", errBadRecord)
	}
	rec.SKS = v[0]&flagSKS != 0
	copy(rec.Hash[:], v[1:17])
	idx, n := binary.Uvarint(v[postingFixed:])
	if n <= 0 {
		return fmt.Errorf("posting index: %w", errBadRecord)
	}
	created, m := binary.Varint(v[postingFixed+n:])
	if m <= 0 || postingFixed+n+m != len(v) {
		return fmt.Errorf("posting creation time: %w", errBadRecord)
	}
	rec.Index = eventlog.Index(idx)
	rec.Created = time.Unix(created, 0).UTC()
	return nil
}

func postingSig(v []byte) wordSig {
	var s wordSig
	for i := range s {
		s[i] = binary.BigEndian.Uint64(v[17+8*i:])
	}
	return s
}

func decodeCount(v []byte) (uint64, error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || k != len(v) {
		return 0, fmt.Errorf("word count: %w", errBadRecord)
	}
	return n, nil
}

// wordCounter writes the count key after each word's postings in the bulk
// path's sorted index stream: next sees every key before it is written,
// flush ends the stream. A key seen twice in a row (a word in two user IDs
// of one key) is counted once, as the writer keeps it once.
type wordCounter struct {
	word []byte // W<word> of the postings being counted; nil: none
	last []byte
	n    uint64
}

func (c *wordCounter) next(k []byte, write func(k, v []byte) error) error {
	if len(k) > 0 && k[0] == prefixWord {
		if i := bytes.IndexByte(k, 0); i > 0 {
			if c.word != nil && string(k[:i]) == string(c.word) {
				if string(k) != string(c.last) {
					c.n++
					c.last = append(c.last[:0], k...)
				}
				return nil
			}
			if err := c.flush(write); err != nil {
				return err
			}
			c.word = append(c.word[:0], k[:i]...)
			c.last = append(c.last[:0], k...)
			c.n = 1
			return nil
		}
	}
	return c.flush(write)
}

func (c *wordCounter) flush(write func(k, v []byte) error) error {
	if c.word == nil {
		return nil
	}
	k := append(append([]byte(nil), c.word...), 1)
	c.word = nil
	return write(k, binary.AppendUvarint(nil, c.n))
}
