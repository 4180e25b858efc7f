package hkp

import (
	"bytes"

	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// revocationIssuer parses a signature packet body and returns its issuer
// key ID when it is a key revocation (type 0x20).
func revocationIssuer(body []byte) (pgpkey.KeyID, bool) {
	p, err := packet.Read(bytes.NewReader(framePacket(pgpkey.TagSignature, body)))
	if err != nil {
		return 0, false
	}
	sig, ok := p.(*packet.Signature)
	if !ok || sig.SigType != packet.SigTypeKeyRevocation {
		return 0, false
	}
	if sig.IssuerKeyId != nil {
		return pgpkey.KeyID(*sig.IssuerKeyId), true
	}
	if len(sig.IssuerFingerprint) == 20 {
		var v uint64
		for _, b := range sig.IssuerFingerprint[12:] {
			v = v<<8 | uint64(b)
		}
		return pgpkey.KeyID(v), true
	}
	return 0, false
}

// verifyKeyRevocation checks a key revocation signature against a primary
// key packet body.
func verifyKeyRevocation(primaryBody, sigBody []byte) bool {
	pp, err := packet.Read(bytes.NewReader(framePacket(pgpkey.TagPublicKey, primaryBody)))
	if err != nil {
		return false
	}
	pub, ok := pp.(*packet.PublicKey)
	if !ok {
		return false
	}
	sp, err := packet.Read(bytes.NewReader(framePacket(pgpkey.TagSignature, sigBody)))
	if err != nil {
		return false
	}
	sig, ok := sp.(*packet.Signature)
	if !ok {
		return false
	}
	return pub.VerifyRevocationSignature(sig) == nil
}

// framePacket puts a new-format header with a five-octet length in front
// of body, which go-crypto's packet.Read accepts for every tag.
func framePacket(tag uint8, body []byte) []byte {
	n := len(body)
	b := make([]byte, 0, 6+n)
	b = append(b, 0xC0|tag, 0xFF, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(b, body...)
}
