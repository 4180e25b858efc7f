package projections

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Record is one stored version of a key: the merged, SKS-canonical key as it
// stood right after the log event at Index was applied.
type Record struct {
	// RID identifies the key across versions (see RecordID).
	RID []byte
	// Index is the log index of the event that produced this version.
	Index eventlog.Index
	// Hash is the SKS key hash of Key (zero for a deletion).
	Hash pgpkey.KeyHash
	// Deleted marks a tombstone version written by an admin deletion.
	Deleted bool
	// SKS reports whether the key belongs to the SKS recon set (v2-v4).
	SKS bool
	// Created is the primary key's creation time.
	Created time.Time
	// Key holds the key's packets in SKS's serialised form (keyhash.md §7).
	Key []byte
}

const (
	recordFormat = 1

	flagDeleted = 1 << 0
	flagSKS     = 1 << 1
)

// Record value layout (format 1):
//
//	[0]      format (1)
//	[1]      flags: bit0 deleted, bit1 SKS recon set
//	[2:18]   SKS key hash
//	[18:26]  primary key creation time, Unix seconds, int64 BE
//	[26:]    key bytes
func encodeRecord(r *Record) []byte {
	v := make([]byte, 26, 26+len(r.Key))
	v[0] = recordFormat
	if r.Deleted {
		v[1] |= flagDeleted
	}
	if r.SKS {
		v[1] |= flagSKS
	}
	copy(v[2:18], r.Hash[:])
	binary.BigEndian.PutUint64(v[18:26], uint64(r.Created.Unix()))
	return append(v, r.Key...)
}

var errBadRecord = errors.New("projections: malformed record")

// decodeRecord decodes v; the Key slice aliases v.
func decodeRecord(rid []byte, idx eventlog.Index, v []byte) (*Record, error) {
	if len(v) < 26 || v[0] != recordFormat {
		return nil, fmt.Errorf("record %X@%d: %w", rid, idx, errBadRecord)
	}
	r := &Record{RID: rid, Index: idx}
	r.Deleted = v[1]&flagDeleted != 0
	r.SKS = v[1]&flagSKS != 0
	copy(r.Hash[:], v[2:18])
	r.Created = time.Unix(int64(binary.BigEndian.Uint64(v[18:26])), 0).UTC()
	r.Key = v[26:]
	return r, nil
}

// latest pointer layout: <index BE8><flags><hash16>.
func encodeLatest(idx eventlog.Index, flags byte, h pgpkey.KeyHash) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 25), uint64(idx))
	v = append(v, flags)
	return append(v, h[:]...)
}

func decodeLatest(v []byte) (idx eventlog.Index, flags byte, h pgpkey.KeyHash, err error) {
	if len(v) != 25 {
		return 0, 0, h, errBadRecord
	}
	copy(h[:], v[9:])
	return eventlog.Index(binary.BigEndian.Uint64(v)), v[8], h, nil
}

// RecordID returns the identity under which k is stored and merged.
//
// SKS merges two keys when their primary key packets are byte-identical
// (keyhash.md §6). For v4, v5 and v6 keys the fingerprint hashes the whole
// primary packet, so the fingerprint is the identity. A v3 fingerprint covers
// only the RSA modulus and exponent, so two different v3 packets can share it;
// their record ID adds 4 bytes of SHA-256 over the packet to keep them apart,
// as SKS does.
func RecordID(k *pgpkey.Key) []byte {
	fpr := k.Fingerprint().Bytes()
	if k.Version() > 3 {
		return fpr
	}
	sum := sha256Sum(k.Primary.Body)
	return append(append([]byte(nil), fpr...), sum[:4]...)
}

// creationTime reads the 4-byte creation time that follows the version byte
// in every public-key packet version (3, 4, 5 and 6).
func creationTime(primary []byte) time.Time {
	if len(primary) < 5 {
		return time.Time{}
	}
	return time.Unix(int64(binary.BigEndian.Uint32(primary[1:5])), 0).UTC()
}
