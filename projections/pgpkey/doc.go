// Package pgpkey is grapevine's OpenPGP key model: splitting packet streams
// into keys, SKS canonicalisation and merge, the SKS key hash, fingerprints,
// key IDs, and the summary HKP index pages show.
//
// It is pure: no I/O beyond the io.Reader it is handed, no logging, no
// global state, so every layer may import it. The spec it implements is
// ../shared/spec/keyhash.md; section numbers (§) below refer to it.
//
// # From bytes to a stored key
//
// Every key, whatever it came by, takes the same path:
//
//	raws, err := pgpkey.Decode(upload)     // or NewReader(dump).Next() in a loop
//	for _, raw := range raws {
//		k, err := pgpkey.ParseKey(raw)     // hygiene + Canonicalize
//		if err != nil { … }                // *ParseError: says which packet, at which byte
//		h := k.Hash()                      // the recon element and hget key
//		if old != nil && old.SamePrimary(k) {
//			k = pgpkey.Merge(old, k)       // then store k under k.Hash(), delete old
//		}
//	}
//
// Reader splits a binary stream the way SKS does (§3): a new key at every
// public-key packet. A framing error drops one key and the Reader
// resynchronises, so one bad key never aborts an import. Decode handles
// uploads: binary, or ASCII armor with any number of blocks.
//
// ParseKey refuses secret key material, strips trust and marker packets,
// canonicalises (§4) and requires a user ID. Canonicalize, Merge (§6), Hash
// (§5) and Marshal (§7) reproduce SKS 1.1.6 byte for byte: every key of the
// Debian keyring hashes to the value a real SKS reports.
//
// # Compatibility
//
// Matches SKS 1.1.6 (keyMerge.ml, keyHash.ml, packet.ml, parsePGP.ml):
//
//   - Canonical order is SKS "record order" (tag, body length, body bytes);
//     the hash sorts by (tag, body bytes) with no length step (§4.3, §5).
//   - A group that occurs once keeps its signature list as given, duplicate
//     signatures included; a group that occurs twice or more, or in both
//     keys of a merge, gets the sorted set union (§4.3, the dedup_sigpairs
//     quirk). So Merge(k, k) is not always k; Key.Contains treats an equal
//     hash as "nothing to do", as SKS does (§6 step 2).
//   - Marshal writes SKS's write_packet framing: old format for tags below
//     16, new format with a five-octet length for tags 16 and above (§7).
//   - Signatures are never parsed or verified for hashing or merging.
//
// Deliberate differences, each documented where it is decided:
//
//   - ParseKey strips trust (12) and marker (10) packets; SKS rejects the
//     whole key. The result is a key SKS accepts, so peers agree on it.
//     Hockeypuck strips them too (§9).
//   - ParseKey rejects keys with no user ID; SKS accepts them.
//   - Canonicalize accepts v5 and v6 primaries with the v4 grammar; SKS fails
//     on them. Key.SKSCompatible reports false for them, and they must stay
//     out of the recon set (recon.md §11.5).
//   - Reader reports input that ends inside a packet; SKS silently keeps the
//     packets before it (§2).
//   - Reader bounds packet and key sizes (MaxPacketBytes, MaxKeyBytes); SKS
//     has no limit (§8).
//   - Limits.Apply, the abuse limits and flooded-key policy every key passes
//     before it is stored, drops packets over size and count budgets (see
//     Limits); SKS stores everything. A key it changed hashes differently
//     from the sender's copy.
//   - Decode reads every armor block and tolerates a missing CRC-24; SKS's
//     armor.ml reads only the first block and requires it (§8).
//   - Summary verifies self-signatures before it reports a key, user ID or
//     subkey revoked or takes an expiry from them; SKS's index trusts any
//     revocation-typed signature (hkp.md §6.1).
//
// Hockeypuck uses the same hash formula but feeds it a differently
// normalised packet set (§9); nothing here copies its policy.
//
// # Memory
//
// Packets alias the buffers they were read from: a RawKey's packets alias
// its Raw, a Key's packets alias the RawKey, and merged keys share packets
// with their inputs. Keys are immutable by convention. Reader reads each
// key into a buffer of its own, grown only as data arrives, so a lying
// length cannot make it allocate memory the input does not back.
package pgpkey
