package projections

import (
	"errors"
	"fmt"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Admission is what Admit decided about a key on its way into the log.
type Admission struct {
	// Key is what to append: the submitted key, or the part of it the
	// abuse limits let through (Trim says what was dropped). Append
	// Key.Marshal() rather than the submitted bytes when Trim.Changed().
	Key *pgpkey.Key
	// Novel reports whether appending Key would change the store.
	Novel bool
	// Trim says what the limits dropped.
	Trim pgpkey.Trim
	// Blocked reports that the key's fingerprint is blocked on this
	// server (then Novel is false).
	Blocked bool
	// Stored reports that the store holds a live version of the key (an
	// upload of it is an update, not an addition).
	Stored bool
}

// Admit applies the abuse limits (pgpkey.Limits.Apply, the flooded-key
// policy) to a submitted key against the stored version of its key, and
// reports whether what remains is new. Every path that appends keys calls
// it before appending: upload, recon, mail, import.
//
// It returns an error wrapping pgpkey.ErrTooLarge when the key is refused
// whole by the limits (bad input: report it, store nothing); any other
// error is the store's. A blocked key is never novel (see Novel).
func (s *Store) Admit(k *pgpkey.Key, lim pgpkey.Limits) (Admission, error) {
	ad := Admission{Key: k}
	blocked, err := s.Blocked(k.Fingerprint().Bytes())
	if err != nil || blocked {
		ad.Blocked = blocked
		return ad, err
	}
	var stored *pgpkey.Key
	rec, err := s.latestNoting(RecordID(k)) // a miss is kept for the applier (applyabsent.go)
	ad.Stored = err == nil
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return ad, err
	case rec.Hash == k.Hash():
		return ad, nil
	case !rec.Deleted:
		stored, err = ParseEventKey(rec.Key)
		if err != nil {
			return ad, fmt.Errorf("stored key %X does not parse: %w", rec.RID, err)
		}
	}
	out, tr, err := lim.Apply(stored, k)
	if err != nil {
		return ad, fmt.Errorf("key %s: %w", k.Fingerprint(), err)
	}
	ad.Key, ad.Trim = out, tr
	ad.Novel = stored == nil || !stored.Contains(out)
	return ad, nil
}
