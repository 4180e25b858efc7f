// Package wire is the codec of the SKS set-reconciliation protocol ("recon",
// TCP port 11370) and of the /pks/hashquery bodies that follow it. It owns
// message structs, their byte layouts, the Config handshake strings and
// SKS's Config acceptance rules, and the limits that keep a hostile peer
// from making us allocate. It does no networking and holds no session
// state: package recon drives sessions over it, and projections/ptree gives
// elements their numeric meaning mod p.
//
// Everything here matches SKS 1.1.6 (reconMessages.ml, cMarshal.ml,
// reconCS.ml) as specified in spec recon.md, and was checked byte for byte
// against captures of real SKS sessions (shared/fixtures/sks).
//
// # Use
//
// Both sides of a session run the same opening (spec recon.md §4):
//
//	msg, _ := local.Message()               // Config, keys sorted as SKS does
//	wire.WriteMessage(bw, msg); bw.Flush()  // write before reading
//	rd := wire.NewReader(conn, wire.Limits{})
//	m, err := rd.ReadMessage()              // must be *wire.ConfigMsg
//	v := local.Check(m.(*wire.ConfigMsg))   // SKS's rules and reasons
//	wire.WriteVerdict(bw, v); bw.Flush()
//	theirs, err := rd.ReadVerdict()         // theirs.Err() is a *RejectError if "failed"
//
// then exchange frames with Reader.ReadMessage and WriteMessage until Done.
//
// # Primitives
//
// All integers are big-endian (spec recon.md §2.1).
//
//	u32      4 bytes
//	string   u32 len | len bytes
//	zz       17 bytes: a field element mod p, little-endian, zero-padded.
//	         For a key hash: the 16 MD5 bytes as they are, then 00.
//	zset     u32 count | count × zz      (also zarray; SKS sends sets in
//	                                      ascending numeric order)
//	prefix   u32 nbits | u32 ceil(nbits/8) | ceil(nbits/8) bytes,
//	         bits MSB-first, unused low bits of the last byte zero
//	         (written as zero; on reading they are cleared, as SKS
//	         ignores them).
//	         Root: 00000000 00000000; "01": 00000002 00000001 40
//
// # Frames
//
// Every message is one frame (spec recon.md §2.2):
//
//	+--------+------+----------------+
//	| u32 L  | type | body (L-1)     |
//	+--------+------+----------------+
//
// L counts the type byte and the body. Bytes after the body inside L are
// ignored, as SKS ignores them. Bodies by type (spec recon.md §2.3):
//
//	0  ReconRqst_Poly  prefix | u32 size | zset samples (mbar+1 = 6)
//	1  ReconRqst_Full  prefix | zset elements
//	2  Elements        zset
//	3  FullElements    zset
//	4  SyncFail        (empty)
//	5  Done            (empty)
//	6  Flush           (empty)
//	7  Error           string text
//	8  DbRqst          string   (reserved, never sent by SKS or Hockeypuck)
//	9  DbRepl          string   (reserved)
//	10 Config          u32 n | n × (string key | string value)
//
// For example Elements{z} with z = 0fa4cd2df7ede287ac0b7a608bf30faa00 is
//
//	00000016 02 00000001 0fa4cd2df7ede287ac0b7a608bf30faa00
//
// and Done is 00000001 05.
//
// # Config and verdict
//
// SKS sends the Config pairs sorted by key; "bitquantum", "mbar" and
// "http port" are 4-byte big-endian binary values, not text:
//
//	0000007e 0a 00000005
//	  0000000a "bitquantum"  00000004 00000002
//	  00000007 "filters"     0000001b "yminsky.dedup,yminsky.merge"
//	  00000009 "http port"   00000004 00002c6b
//	  00000004 "mbar"        00000004 00000005
//	  00000007 "version"     00000005 "1.1.6"
//
// After both Configs each side writes a bare string, with no frame and no
// type byte: "passed" (00000006 706173736564), or "failed" followed by a
// second bare string with the reason:
//
//	00000006 "failed" 00000018 "mbar values do not match"
//
// # Hashquery bodies
//
// After a session each side fetches what it lacks over HTTP with
// POST /pks/hashquery (spec recon.md §11.3, §11.4):
//
//	request   u32 count | count × (u32 16 | 16 hash bytes)
//	response  u32 count | count × (u32 len | key as binary packets) | "\r\n"
//
// SKS answers in reverse order and skips unknown hashes; the trailing
// "\r\n" is counted in Content-length and ignored by readers.
//
// # Limits and errors
//
// Decoders check every length and count against Limits before allocating
// and read claimed lengths in growing chunks. io.EOF comes back only at a
// clean boundary (before a frame, before a verdict); input cut short gives
// io.ErrUnexpectedEOF inside a *DecodeError; bad input ErrMalformed,
// ErrTooLarge or ErrUnknownType inside one. No input makes a decoder panic.
package wire
