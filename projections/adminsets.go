package projections

import (
	"sync/atomic"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// adminSets mirrors, in memory, the SKS dataset's blocked fingerprints
// (prefixBlocked) and suppressed hashes (prefixSuppress) as committed.
// Every uploaded key asked Pebble about both, on the upload path (Admit)
// and again when applied, and a lookup that misses still searches every
// memtable: three lookups per key for sets that hold a few admin actions.
//
// The maps are never modified once published: a batch that changes them
// publishes copies (admin events are rare), so readers need no lock.
type adminSets struct {
	p atomic.Pointer[adminSetMaps]
}

type adminSetMaps struct {
	blocked    map[string]bool // by fingerprint bytes
	suppressed map[pgpkey.KeyHash]bool
}

// load reads both sets from the store's database (at Open).
func (a *adminSets) load(s *Store) error {
	m := &adminSetMaps{blocked: make(map[string]bool), suppressed: make(map[pgpkey.KeyHash]bool)}
	err := scanKeys(s.db, prefixBlocked, func(k []byte) {
		if fpr, ok := ridAt(k, 1); ok {
			m.blocked[string(fpr)] = true
		}
	})
	if err == nil {
		err = scanKeys(s.db, prefixSuppress, func(k []byte) {
			var h pgpkey.KeyHash
			if len(k) == 1+len(h) {
				copy(h[:], k[1:])
				m.suppressed[h] = true
			}
		})
	}
	if err != nil {
		return err
	}
	a.p.Store(m)
	return nil
}

func (a *adminSets) isBlocked(fpr []byte) bool { return a.p.Load().blocked[string(fpr)] }

func (a *adminSets) isSuppressed(h pgpkey.KeyHash) bool { return a.p.Load().suppressed[h] }

// update publishes the changes a committed batch made (its overlays: true
// set, false removed). The caller is the one applier.
func (a *adminSets) update(blocked map[string]bool, suppressed map[pgpkey.KeyHash]bool) {
	if len(blocked) == 0 && len(suppressed) == 0 {
		return
	}
	old := a.p.Load()
	m := &adminSetMaps{blocked: make(map[string]bool, len(old.blocked)), suppressed: make(map[pgpkey.KeyHash]bool, len(old.suppressed))}
	for k := range old.blocked {
		m.blocked[k] = true
	}
	for h := range old.suppressed {
		m.suppressed[h] = true
	}
	for k, v := range blocked {
		if v {
			m.blocked[k] = true
		} else {
			delete(m.blocked, k)
		}
	}
	for h, v := range suppressed {
		if v {
			m.suppressed[h] = true
		} else {
			delete(m.suppressed, h)
		}
	}
	a.p.Store(m)
}
