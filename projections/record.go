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

	// keyInLog says the stored record holds no key bytes: Key is the Key
	// of the log event at Index, byte for byte, logKeyLen bytes long
	// (see encodeRecord). Readers fill Key from the log (Store.resolveKey).
	keyInLog  bool
	logKeyLen int
}

const (
	recordFormat = 1

	flagDeleted  = 1 << 0
	flagSKS      = 1 << 1
	flagKeyInLog = 1 << 2 // record values only (schema 4)

	recordHeaderBytes = 26
)

// Record value layout (format 1):
//
//	[0]      format (1)
//	[1]      flags: bit0 deleted, bit1 SKS recon set, bit2 key in the log
//	[2:18]   SKS key hash
//	[18:26]  primary key creation time, Unix seconds, int64 BE
//	[26:]    key bytes; with bit2, instead, the length of the key (uint32
//	         BE), which is the Key of the log event at the record's index
//
// A version whose key is byte for byte the key its event carried (a new
// key uploaded in SKS's canonical form, as gpg sends it) need not be
// stored twice: the log keeps it durably and for ever. The length lets a
// reader notice a record and a log that disagree.
func encodeRecord(r *Record) []byte {
	n := len(r.Key)
	if r.keyInLog {
		n = 4
	}
	v := make([]byte, recordHeaderBytes, recordHeaderBytes+n)
	v[0] = recordFormat
	if r.Deleted {
		v[1] |= flagDeleted
	}
	if r.SKS {
		v[1] |= flagSKS
	}
	copy(v[2:18], r.Hash[:])
	binary.BigEndian.PutUint64(v[18:26], uint64(r.Created.Unix()))
	if r.keyInLog {
		v[1] |= flagKeyInLog
		return binary.BigEndian.AppendUint32(v, uint32(r.logKeyLen))
	}
	return append(v, r.Key...)
}

var errBadRecord = errors.New("projections: malformed record")

// decodeRecord decodes v; the Key slice aliases v. A record whose key is
// in the log comes back with Key nil (Store.resolveKey fills it).
func decodeRecord(rid []byte, idx eventlog.Index, v []byte) (*Record, error) {
	if len(v) < recordHeaderBytes || v[0] != recordFormat || v[1]&^(flagDeleted|flagSKS|flagKeyInLog) != 0 {
		return nil, fmt.Errorf("record %X@%d: %w", rid, idx, errBadRecord)
	}
	r := &Record{RID: rid, Index: idx}
	r.Deleted = v[1]&flagDeleted != 0
	r.SKS = v[1]&flagSKS != 0
	copy(r.Hash[:], v[2:18])
	r.Created = time.Unix(int64(binary.BigEndian.Uint64(v[18:26])), 0).UTC()
	if v[1]&flagKeyInLog != 0 {
		if len(v) != recordHeaderBytes+4 || r.Deleted {
			return nil, fmt.Errorf("record %X@%d: key in the log: %w", rid, idx, errBadRecord)
		}
		r.keyInLog = true
		r.logKeyLen = int(binary.BigEndian.Uint32(v[recordHeaderBytes:]))
		return r, nil
	}
	r.Key = v[recordHeaderBytes:]
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
