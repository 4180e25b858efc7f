package main

// The abuse limits on keys (pgpkey.Limits, the flooded-key policy) as the
// daemon applies them on its append paths, and what recon needs on top: a
// durable memory of the hashes the policy changed.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
	"github.com/grapevine-keyserver/grapevine/recon"
)

// trimmedFile remembers the SKS hashes of keys the limits changed or
// refused, so that recon does not fetch them from a peer again;
// hpTrimmedFile the same for the Hockeypuck dataset's hashes.
const (
	trimmedFile   = "grapevine/trimmed-hashes"
	hpTrimmedFile = "grapevine/trimmed-hockeypuck-hashes"
)

// keyLimits returns the abuse limits from the grapevine_max_* options.
func (c *SKSConf) keyLimits() pgpkey.Limits {
	l := c.KeyLimits
	l.MaxKeyBytes = c.MaxKeyBytes
	return l
}

// basedirConf returns the sksconf in dir, or the defaults when there is
// none (import into a fresh directory). A broken sksconf is the daemon's
// to report; here it means the defaults. The basedir takes the key limits
// and the log's open-file bound from it, for every command.
func basedirConf(dir string) *SKSConf {
	conf, _, _, err := LoadSKSConf(dir)
	if err != nil {
		return DefaultSKSConf()
	}
	return conf
}

// reconKeys wraps the store and the log for recon's fetcher: every fetched
// key passes the limits before it is appended (recon's store step appends
// the bytes the peer sent; the appender replaces them with the trimmed
// key), and a hash the policy changed is remembered durably and reported as
// held, so the next rounds do not fetch it again: the peer keeps the
// untrimmed key and its hash for good.
type reconKeys struct {
	store *projections.Store
	lim   pgpkey.Limits
	mem   *hashMemory
	hpMem *hashMemory // Hockeypuck hashes; see Hockeypuck
	log   interface {
		Append(ctx context.Context, events ...*eventlog.Event) (eventlog.Index, error)
	}
}

var (
	_ recon.Keys     = (*reconKeys)(nil)
	_ recon.Appender = (*reconKeys)(nil)
)

// newReconKeys opens the trimmed-hash memories of b.
func newReconKeys(b *basedir, lim pgpkey.Limits) (*reconKeys, error) {
	mem, err := openHashMemory(filepath.Join(b.dir, trimmedFile), 1_000_000)
	if err != nil {
		return nil, err
	}
	hpMem, err := openHashMemory(filepath.Join(b.dir, hpTrimmedFile), 1_000_000)
	if err != nil {
		mem.Close()
		return nil, err
	}
	return &reconKeys{store: b.store, lim: lim, mem: mem, hpMem: hpMem, log: b.log}, nil
}

// ByHash returns the stored key with hash h, or, for a hash the limits
// changed, the key it was trimmed into (a bare record when it was refused
// whole).
func (r *reconKeys) ByHash(h pgpkey.KeyHash) (*projections.Record, error) {
	rec, err := r.store.ByHash(h)
	if !errors.Is(err, projections.ErrNotFound) {
		return rec, err
	}
	rid, ok := r.mem.get(h)
	if !ok {
		return nil, err
	}
	if latest, lerr := r.store.Latest(rid); lerr == nil {
		return latest, nil
	}
	return &projections.Record{RID: rid, Hash: h}, nil
}

// Novel applies the limits first: a fetched key whose new packets the
// policy drops is not novel, and its hash is remembered.
func (r *reconKeys) Novel(k *pgpkey.Key) (bool, error) {
	ad, err := r.store.Admit(k, r.lim)
	if errors.Is(err, pgpkey.ErrTooLarge) {
		return false, r.mem.add(k.Hash(), projections.RecordID(k))
	}
	if err != nil {
		return false, err
	}
	if ad.Trim.Changed() {
		if err := r.mem.add(k.Hash(), projections.RecordID(k)); err != nil {
			return false, err
		}
	}
	return ad.Novel, nil
}

// WaitApplied is the store's.
func (r *reconKeys) WaitApplied(ctx context.Context, idx eventlog.Index) error {
	return r.store.WaitApplied(ctx, idx)
}

// Append appends events, each key trimmed by the limits first.
func (r *reconKeys) Append(ctx context.Context, events ...*eventlog.Event) (eventlog.Index, error) {
	out := make([]*eventlog.Event, len(events))
	for i, ev := range events {
		out[i] = ev
		if ev.Kind != eventlog.KindKeySubmitted {
			continue
		}
		k, err := projections.ParseEventKey(ev.Key)
		if err != nil {
			continue // the projections reject it, as they would anyway
		}
		ad, err := r.store.Admit(k, r.lim)
		if err != nil || !ad.Trim.Changed() {
			continue // Novel refused it already, or nothing to trim
		}
		e := *ev
		e.Key = ad.Key.Marshal()
		out[i] = &e
	}
	return r.log.Append(ctx, out...)
}

// Close closes the memory files.
func (r *reconKeys) Close() error { return errors.Join(r.mem.Close(), r.hpMem.Close()) }

// Hockeypuck returns the Keys of the Hockeypuck dataset behind the same
// limits: a flooded key fetched from a Hockeypuck peer is trimmed on
// append (Append above), and its Hockeypuck hash — which the peer keeps
// advertising, since it holds the untrimmed key — is remembered durably
// and reported as held. Without this only recon's negative cache stopped
// the refetch, and only for NegativeTTL.
func (r *reconKeys) Hockeypuck() recon.Keys {
	return hockeypuckReconKeys{r: r, Keys: recon.HockeypuckKeys(r.store)}
}

type hockeypuckReconKeys struct {
	r *reconKeys
	recon.Keys
}

var _ recon.KeyHasher = hockeypuckReconKeys{}

// ByHash reports a remembered hash as held: a bare record, as the
// Hockeypuck dataset holds the trimmed key under another hash.
func (k hockeypuckReconKeys) ByHash(h pgpkey.KeyHash) (*projections.Record, error) {
	rec, err := k.Keys.ByHash(h)
	if !errors.Is(err, projections.ErrNotFound) {
		return rec, err
	}
	if rid, ok := k.r.hpMem.get(h); ok {
		return &projections.Record{RID: rid, Hash: h}, nil
	}
	return nil, err
}

// KeyHash applies the limits before asking the Hockeypuck dataset: a key
// they change is remembered under the peer's hash, and is novel only when
// what is left of it is.
func (k hockeypuckReconKeys) KeyHash(raw []byte, key *pgpkey.Key) (pgpkey.KeyHash, bool, error) {
	kh := k.Keys.(recon.KeyHasher)
	if key == nil {
		return kh.KeyHash(raw, nil)
	}
	ad, err := k.r.store.Admit(key, k.r.lim)
	tooLarge := errors.Is(err, pgpkey.ErrTooLarge)
	if err != nil && !tooLarge {
		return pgpkey.KeyHash{}, false, err
	}
	if !tooLarge && !ad.Trim.Changed() {
		return kh.KeyHash(raw, key)
	}
	// The peer's hash (a Hockeypuck parse verifies every self-signature:
	// computed only here, where it is remembered).
	h, err := projections.HockeypuckHash(raw)
	if err != nil {
		return h, false, err
	}
	if err := k.r.hpMem.add(h, projections.RecordID(key)); err != nil || tooLarge {
		return h, false, err
	}
	_, novel, err := kh.KeyHash(ad.Key.Marshal(), ad.Key)
	return h, novel, err
}

// Novel is KeyHash's answer for a parsed key.
func (k hockeypuckReconKeys) Novel(key *pgpkey.Key) (bool, error) {
	_, novel, err := k.KeyHash(key.Marshal(), key)
	return novel, err
}

// hashMemory is a durable set of key hashes, each with the record ID of the
// key it belongs to: an append-only file of records <hash16><len><rid>,
// loaded whole at open. Writes are not synced: losing the last few costs
// one more fetch each. A torn last record is ignored (and overwritten by
// the next add). At most max hashes are kept; beyond that, new ones are not
// remembered (the recon negative cache still covers them for hours).
type hashMemory struct {
	mu   sync.Mutex
	f    *os.File
	size int64 // bytes of whole records in f
	m    map[pgpkey.KeyHash][]byte
	max  int
}

func openHashMemory(path string, max int) (*hashMemory, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	hm := &hashMemory{f: f, m: make(map[pgpkey.KeyHash][]byte), max: max}
	off := 0
	for off+17 <= len(data) {
		n := int(data[off+16])
		if off+17+n > len(data) {
			break
		}
		var h pgpkey.KeyHash
		copy(h[:], data[off:off+16])
		hm.m[h] = append([]byte(nil), data[off+17:off+17+n]...)
		off += 17 + n
	}
	// Drop a torn tail so that the next record starts on a boundary.
	if off != len(data) {
		if err := f.Truncate(int64(off)); err != nil {
			f.Close()
			return nil, fmt.Errorf("truncate %s: %w", path, err)
		}
	}
	hm.size = int64(off)
	return hm, nil
}

func (hm *hashMemory) get(h pgpkey.KeyHash) ([]byte, bool) {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	rid, ok := hm.m[h]
	return rid, ok
}

func (hm *hashMemory) add(h pgpkey.KeyHash, rid []byte) error {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	if _, ok := hm.m[h]; ok || len(hm.m) >= hm.max || len(rid) > 255 {
		return nil
	}
	rec := make([]byte, 0, 17+len(rid))
	rec = append(rec, h[:]...)
	rec = append(rec, byte(len(rid)))
	rec = append(rec, rid...)
	hm.m[h] = rid
	if _, err := hm.f.WriteAt(rec, hm.size); err != nil {
		// A full disk, say: remembered in memory for this run; the next
		// record overwrites whatever part of this one was written.
		return nil
	}
	hm.size += int64(len(rec))
	return nil
}

func (hm *hashMemory) len() int {
	hm.mu.Lock()
	defer hm.mu.Unlock()
	return len(hm.m)
}

func (hm *hashMemory) Close() error { return hm.f.Close() }
