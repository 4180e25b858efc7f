package pgpkey

import "errors"

// ParseKey checks a raw key and canonicalises it. It is the one path every
// key takes into storage, whatever it came by (upload, dump, hashquery,
// mail).
//
// Before Canonicalize it applies grapevine's hygiene rules:
//
//   - secret key material (tag 5 or 7) anywhere refuses the key with
//     ErrSecretKey ("secret key material refused"); it is never stored.
//     SKS rejects such keys as unparseable too.
//   - trust (12) and marker (10) packets are stripped. NB: SKS 1.1.6
//     rejects the whole key instead (keyhash.md §8). Stripping is a
//     deliberate difference: the result is a key SKS accepts, so recon
//     peers agree on its hash, and GnuPG exports with trust packets still
//     load. Hockeypuck strips them too (keyhash.md §9).
//
// and after it:
//
//   - a key without any user ID packet (tag 13) is rejected with
//     ErrNoUserID. NB: SKS accepts such keys (its grammar allows zero
//     user IDs); refusing them is grapevine policy. An SKS peer holding
//     one shows it as a hash we lack at every recon; the recon layer must
//     remember refused hashes to avoid refetching them (recon.md §11.5).
//
// v5 and v6 primaries are accepted with the v4 grammar; they report
// SKSCompatible() == false and must not enter the recon set.
//
// Errors are *ParseError with the offset of the culprit in the input.
// The Key shares packet bodies with raw.Raw.
func ParseKey(raw *RawKey) (*Key, error) {
	pkts := raw.Packets
	var index []int // index[i] = position in raw.Packets of pkts[i], when stripped
	for i, p := range pkts {
		switch p.Tag {
		case TagSecretKey, TagSecretSubkey:
			return nil, raw.errorAt(i, "secret key material refused", ErrSecretKey)
		case TagTrust, TagMarker:
			if index == nil {
				index = make([]int, 0, len(raw.Packets))
				for j := range i {
					index = append(index, j)
				}
			}
		default:
			if index != nil {
				index = append(index, i)
			}
		}
	}
	if index != nil {
		pkts = make([]Packet, len(index))
		for i, j := range index {
			pkts[i] = raw.Packets[j]
		}
	}
	k, err := Canonicalize(pkts)
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) {
			return nil, err
		}
		i := pe.Packet - 1
		if i >= 0 && index != nil {
			i = index[i]
		}
		if len(pkts) == 0 && len(raw.Packets) > 0 {
			pe.Reason = "key holds only trust and marker packets"
		}
		return nil, raw.errorAt(i, pe.Reason, pe.Err)
	}
	if !k.hasUserID() {
		return nil, raw.errorAt(-1, "key has no user ID", ErrNoUserID)
	}
	return k, nil
}

// errorAt builds a ParseError for packet i of the key (i < 0: the key as a
// whole), finding the packet's offset in Raw.
func (raw *RawKey) errorAt(i int, reason string, err error) *ParseError {
	pe := &ParseError{Offset: raw.Offset, Packet: i + 1, Reason: reason, Block: raw.Block, Err: err}
	if i < 0 {
		pe.Packet = 0
		return pe
	}
	if offs, ok := packetOffsets(raw.Raw); ok && len(offs) == len(raw.Packets) {
		pe.Offset = raw.Offset + offs[i]
	}
	return pe
}
