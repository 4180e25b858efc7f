package projections

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Ref names the newest live version of a record: what its latest pointer
// holds, without the key bytes. A version never changes once written (a
// new one gets a new log index), so (RID, Index) may key a cache of
// anything derived from the version's key bytes with no invalidation: the
// next read of the pointer names the new version.
type Ref struct {
	RID   []byte
	Index eventlog.Index
	Hash  pgpkey.KeyHash
	SKS   bool // v2–v4 primary key (Record.SKS)
}

// FingerprintRefs returns the newest live versions of the keys whose
// primary key or a subkey has this fingerprint (16, 20 or 32 bytes), in
// the order ByFingerprint returns them. It reads the fingerprint entry and
// one latest pointer per key, but no key: a lookup that has the answer
// cached for a version skips the record read (Version).
func (s *Store) FingerprintRefs(fpr []byte) ([]Ref, error) {
	v, closer, err := s.db.Get(fprKey(fpr))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read fingerprint index: %w", err)
	}
	// One allocation holds every record ID of the list.
	rids := ridList(bytes.Clone(v))
	closer.Close()
	out := make([]Ref, 0, len(rids))
	for _, rid := range rids {
		ref, ok, err := latestRef(s.db, rid)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, ref)
		}
	}
	return out, nil
}

// latestRef reads rid's latest pointer; ok is false for a key deleted or
// never stored.
func latestRef(r Reader, rid []byte) (ref Ref, ok bool, err error) {
	v, closer, err := r.Get(latestKey(rid))
	if errors.Is(err, pebble.ErrNotFound) {
		return ref, false, nil
	}
	if err != nil {
		return ref, false, fmt.Errorf("read latest %X: %w", rid, err)
	}
	idx, flags, h, err := decodeLatest(v)
	closer.Close()
	if err != nil {
		return ref, false, fmt.Errorf("latest %X: %w", rid, err)
	}
	if flags&flagDeleted != 0 {
		return ref, false, nil
	}
	return Ref{RID: rid, Index: idx, Hash: h, SKS: flags&flagSKS != 0}, true, nil
}

// Version returns the version ref names, or ErrNotFound if it is a
// deletion. The Record owns its memory.
func (s *Store) Version(ref Ref) (*Record, error) { return version(s.db, ref.RID, ref.Index) }
