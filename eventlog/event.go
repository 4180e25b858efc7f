package eventlog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"time"
)

// Kind says what an Event records.
//
// Append only: values are on disk.
type Kind uint8

const (
	// KindKeySubmitted carries one transferable public key in Event.Key.
	KindKeySubmitted Kind = 1
	// KindKeyDeleted: an operator deleted the key whose fingerprint is
	// Event.Target. Reserved: encoded and decoded, not yet produced.
	KindKeyDeleted Kind = 2
	// KindKeyBlocked: an operator blocked Event.Target. Reserved.
	KindKeyBlocked Kind = 3
	// KindKeyUnblocked: an operator lifted a block on Event.Target. Reserved.
	KindKeyUnblocked Kind = 4
)

// String returns a lowercase name such as "key_submitted", or "kind(N)" for
// a value this version does not know.
func (k Kind) String() string {
	switch k {
	case KindKeySubmitted:
		return "key_submitted"
	case KindKeyDeleted:
		return "key_deleted"
	case KindKeyBlocked:
		return "key_blocked"
	case KindKeyUnblocked:
		return "key_unblocked"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is a kind this version knows.
func (k Kind) Valid() bool { return k >= KindKeySubmitted && k <= KindKeyUnblocked }

// isAdmin reports whether k acts on Event.Target rather than carrying a key.
func (k Kind) isAdmin() bool { return k >= KindKeyDeleted && k <= KindKeyUnblocked }

// Origin says how a submission reached this server.
//
// Append only: values are on disk.
type Origin uint8

const (
	OriginHKP    Origin = 1 // uploaded to /pks/add
	OriginRecon  Origin = 2 // fetched from a recon peer
	OriginMail   Origin = 3 // received by PKS mail
	OriginImport Origin = 4 // loaded from a dump file
	OriginAdmin  Origin = 5 // an operator's action
)

var originNames = [...]string{
	OriginHKP:    "hkp",
	OriginRecon:  "recon",
	OriginMail:   "mail",
	OriginImport: "import",
	OriginAdmin:  "admin",
}

// String returns "hkp", "recon", "mail", "import" or "admin", or
// "origin(N)" for a value this version does not know.
func (o Origin) String() string {
	if o.Valid() {
		return originNames[o]
	}
	return fmt.Sprintf("origin(%d)", uint8(o))
}

// Valid reports whether o is an origin this version knows.
func (o Origin) Valid() bool { return o >= OriginHKP && o <= OriginAdmin }

// ParseOrigin is the inverse of Origin.String for the known origins.
func ParseOrigin(s string) (Origin, error) {
	for o := OriginHKP; o <= OriginAdmin; o++ {
		if originNames[o] == s {
			return o, nil
		}
	}
	return 0, fmt.Errorf("eventlog: unknown origin %q", s)
}

// Event is one entry of the log.
//
// An Event returned by Read or an Iterator belongs to the caller; its byte
// slices do not alias any buffer the Log reuses.
type Event struct {
	Kind   Kind
	Origin Origin
	// Peer names where the event came from: a recon peer, a mail sender,
	// an import file name. May be empty.
	Peer string
	// Time is when this server received the event. Append stamps
	// time.Now() when it is zero, clamps a future time to now, and raises
	// a time older than the previous entry's to that entry's time, so Time
	// never decreases along the log. Stored as Unix nanoseconds (years
	// 1678 to 2262) and returned in UTC.
	Time time.Time
	// Key is, for KindKeySubmitted, one transferable public key as binary
	// OpenPGP packets exactly as submitted.
	Key []byte
	// Target is, for the admin kinds, the fingerprint of the key acted on.
	Target []byte
	// Reason is the operator's reason, for the admin kinds.
	Reason string
}

// Record layout, described byte for byte in doc.go.
const (
	formatVersion = 1

	tagTime   = 1
	tagOrigin = 2
	tagPeer   = 3
	tagKey    = 4
	tagTarget = 5
	tagReason = 6

	crcSize = 4
	// minRecordBytes is a record with no fields: version, kind, CRC.
	minRecordBytes = 2 + crcSize
	// timeOffset is where the 8 time bytes sit in a record written by
	// this package: version, kind, tag 1, length 8.
	timeOffset = 4
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

func fieldLen(tag uint64, n int) int {
	if n == 0 {
		return 0
	}
	return uvarintLen(tag) + uvarintLen(uint64(n)) + n
}

// encodedSize returns the length of e's record; withTime forces the time
// field to be counted (Append always stores one).
func (e *Event) encodedSize(withTime bool) int {
	n := minRecordBytes
	if withTime || !e.Time.IsZero() {
		n += fieldLen(tagTime, 8)
	}
	if e.Origin != 0 {
		n += fieldLen(tagOrigin, 1)
	}
	n += fieldLen(tagPeer, len(e.Peer))
	n += fieldLen(tagKey, len(e.Key))
	n += fieldLen(tagTarget, len(e.Target))
	n += fieldLen(tagReason, len(e.Reason))
	return n
}

func appendField(dst []byte, tag uint64, v []byte) []byte {
	if len(v) == 0 {
		return dst
	}
	dst = binary.AppendUvarint(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func appendStringField(dst []byte, tag uint64, v string) []byte {
	if len(v) == 0 {
		return dst
	}
	dst = binary.AppendUvarint(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func checkTime(t time.Time) error {
	if t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("%w: time %s outside the years 1678 to 2262", ErrInvalid, t.Format(time.RFC3339))
	}
	return nil
}

// appendRecord appends e's record to dst. If withTime, the time field is
// always written, with the value ns; otherwise it is written from e.Time
// unless that is zero.
func (e *Event) appendRecord(dst []byte, withTime bool, ns int64) []byte {
	start := len(dst)
	dst = append(dst, formatVersion, byte(e.Kind))
	if !withTime && !e.Time.IsZero() {
		withTime, ns = true, e.Time.UnixNano()
	}
	if withTime {
		dst = append(dst, tagTime, 8)
		dst = binary.BigEndian.AppendUint64(dst, uint64(ns))
	}
	if e.Origin != 0 {
		dst = append(dst, tagOrigin, 1, byte(e.Origin))
	}
	dst = appendStringField(dst, tagPeer, e.Peer)
	dst = appendField(dst, tagKey, e.Key)
	dst = appendField(dst, tagTarget, e.Target)
	dst = appendStringField(dst, tagReason, e.Reason)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], crcTable))
}

// MarshalBinary encodes e as one self-describing record (layout in doc.go):
// a format version byte, the kind, the non-empty fields as tag-length-value
// triples, and a CRC-32C over all of it. A zero Time is left out. It fails
// only if Time is outside the years 1678 to 2262.
//
// MarshalBinary does not check that Kind and Origin are known or that the
// fields fit the kind; Append does.
func (e *Event) MarshalBinary() ([]byte, error) {
	if !e.Time.IsZero() {
		if err := checkTime(e.Time); err != nil {
			return nil, err
		}
	}
	return e.appendRecord(make([]byte, 0, e.encodedSize(false)), false, 0), nil
}

// UnmarshalBinary decodes a record written by MarshalBinary (or by Append)
// into e, replacing all of e's fields. It copies what it keeps from b.
//
// It returns an error wrapping ErrCorrupt, saying what is wrong, if the
// checksum does not match or the record is malformed, and ErrUnknownVersion
// for a record of a newer format version. Fields with tags this version
// does not know are skipped. It never panics and allocates no more than
// len(b).
func (e *Event) UnmarshalBinary(b []byte) error {
	return e.decode(b, true)
}

// verifyRecord checks the framing-independent integrity of a record: its
// minimum length and its checksum.
func verifyRecord(b []byte) error {
	if len(b) < minRecordBytes {
		return fmt.Errorf("%w: record of %d bytes is shorter than %d", ErrCorrupt, len(b), minRecordBytes)
	}
	body := b[:len(b)-crcSize]
	want := binary.BigEndian.Uint32(b[len(b)-crcSize:])
	if got := crc32.Checksum(body, crcTable); got != want {
		return fmt.Errorf("%w: checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	return nil
}

// decode is UnmarshalBinary; with copyBytes false, Key and Target alias b
// (the reader gives each record its own buffer, so that is safe there).
func (e *Event) decode(b []byte, copyBytes bool) error {
	if err := verifyRecord(b); err != nil {
		return err
	}
	if b[0] != formatVersion {
		return fmt.Errorf("%w: version %d (this build reads %d)", ErrUnknownVersion, b[0], formatVersion)
	}
	*e = Event{Kind: Kind(b[1])}
	p := b[2 : len(b)-crcSize]
	off := 2
	var prev uint64
	for len(p) > 0 {
		tag, n := binary.Uvarint(p)
		if n <= 0 {
			return fmt.Errorf("%w: bad field tag at byte %d", ErrCorrupt, off)
		}
		if tag <= prev {
			return fmt.Errorf("%w: field tag %d at byte %d after tag %d (tags must increase)", ErrCorrupt, tag, off, prev)
		}
		prev = tag
		p, off = p[n:], off+n
		size, n := binary.Uvarint(p)
		if n <= 0 {
			return fmt.Errorf("%w: bad length of field %d at byte %d", ErrCorrupt, tag, off)
		}
		p, off = p[n:], off+n
		if size > uint64(len(p)) {
			return fmt.Errorf("%w: field %d at byte %d has length %d, only %d bytes left", ErrCorrupt, tag, off, size, len(p))
		}
		v := p[:size]
		p, off = p[size:], off+int(size)
		switch tag {
		case tagTime:
			if len(v) != 8 {
				return fmt.Errorf("%w: time field of %d bytes, want 8", ErrCorrupt, len(v))
			}
			e.Time = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
		case tagOrigin:
			if len(v) != 1 {
				return fmt.Errorf("%w: origin field of %d bytes, want 1", ErrCorrupt, len(v))
			}
			e.Origin = Origin(v[0])
		case tagPeer:
			e.Peer = string(v)
		case tagKey:
			e.Key = maybeCopy(v, copyBytes)
		case tagTarget:
			e.Target = maybeCopy(v, copyBytes)
		case tagReason:
			e.Reason = string(v)
		default:
			// A field added by a later version that older readers may
			// ignore; fields that must not be ignored bump formatVersion.
		}
	}
	return nil
}

func maybeCopy(v []byte, copyBytes bool) []byte {
	if len(v) == 0 {
		return nil
	}
	if !copyBytes {
		return v[:len(v):len(v)]
	}
	return append([]byte(nil), v...)
}

// recordTime returns the time stored in a verified record, or false if it
// has none.
func recordTime(b []byte) (int64, bool) {
	var e Event
	if err := e.decode(b, false); err != nil || e.Time.IsZero() {
		return 0, false
	}
	return e.Time.UnixNano(), true
}

// validate checks what Append requires of an event.
func (e *Event) validate() error {
	switch {
	case !e.Kind.Valid():
		return fmt.Errorf("%w: unknown kind %d", ErrInvalid, e.Kind)
	case !e.Origin.Valid():
		return fmt.Errorf("%w: unknown origin %d", ErrInvalid, e.Origin)
	case e.Kind == KindKeySubmitted && len(e.Key) == 0:
		return fmt.Errorf("%w: %s without a key", ErrInvalid, e.Kind)
	case e.Kind.isAdmin() && len(e.Target) == 0:
		return fmt.Errorf("%w: %s without a target", ErrInvalid, e.Kind)
	}
	if !e.Time.IsZero() {
		return checkTime(e.Time)
	}
	return nil
}

// The counters of Log.Appended are indexed by origin and kind.
// A compile-time check that the largest of each fits.
var _ = [1]struct{}{}[int(OriginAdmin/8)+int(KindKeyUnblocked/8)]
