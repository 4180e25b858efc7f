package hkp

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// V2IndexCert is one certificate of a v2 JSON index (GET /pks/v2/index/…).
// The draft requires only the version and fingerprint of key material and
// the uidString of user IDs; the rest is what the HKP v1 index shows.
// Fingerprints are lowercase hex without 0x, times RFC 3339 in UTC
// (draft §7.1.1), and an absent expiration means none.
type V2IndexCert struct {
	Version     int             `json:"version"`
	Fingerprint string          `json:"fingerprint"`
	KeyID       string          `json:"keyID,omitempty"`
	Algorithm   V2Algorithm     `json:"algorithm"`
	Creation    string          `json:"creation,omitempty"`
	Expiration  string          `json:"expiration,omitempty"`
	IsRevoked   bool            `json:"isRevoked"`
	UserIDs     []V2IndexUID    `json:"userIDs"`
	Subkeys     []V2IndexSubkey `json:"subkeys,omitempty"`
}

// V2IndexSubkey is one subkey of a V2IndexCert.
type V2IndexSubkey struct {
	Version     int         `json:"version"`
	Fingerprint string      `json:"fingerprint"`
	KeyID       string      `json:"keyID,omitempty"`
	Algorithm   V2Algorithm `json:"algorithm"`
	Creation    string      `json:"creation,omitempty"`
	Expiration  string      `json:"expiration,omitempty"`
	IsRevoked   bool        `json:"isRevoked"`
}

// V2Algorithm names a public-key algorithm (RFC 9580 §9.1).
type V2Algorithm struct {
	Code      int    `json:"code"`
	Name      string `json:"name"`
	BitLength int    `json:"bitLength,omitempty"`
}

// V2IndexUID is one user ID of a V2IndexCert. User attributes (photos)
// are not listed.
type V2IndexUID struct {
	UIDString  string `json:"uidString"`
	Creation   string `json:"creation,omitempty"`
	Expiration string `json:"expiration,omitempty"`
	IsRevoked  bool   `json:"isRevoked"`
}

// algorithmNames are RFC 9580's names of public-key algorithms (§9.1).
var algorithmNames = map[int]string{
	1: "RSA (Encrypt or Sign)", 2: "RSA Encrypt-Only", 3: "RSA Sign-Only",
	16: "Elgamal (Encrypt-Only)", 17: "DSA", 18: "ECDH", 19: "ECDSA",
	20: "Reserved (formerly Elgamal Encrypt or Sign)", 22: "EdDSALegacy",
	25: "X25519", 26: "X448", 27: "Ed25519", 28: "Ed448",
}

func algorithmOf(code, bits int) V2Algorithm {
	name, ok := algorithmNames[code]
	if !ok {
		name = "unknown"
	}
	return V2Algorithm{Code: code, Name: name, BitLength: bits}
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// MarshalV2Index returns the v2 JSON index of keys, in the given order.
func MarshalV2Index(keys []*pgpkey.Key) ([]byte, error) {
	out := make([]V2IndexCert, 0, len(keys))
	for _, k := range keys {
		out = append(out, v2IndexCert(k))
	}
	b, err := json.Marshal(out)
	return append(b, '\n'), err
}

func v2IndexCert(k *pgpkey.Key) V2IndexCert {
	s := k.Summary()
	c := V2IndexCert{
		Version:     k.Version(),
		Fingerprint: strings.ToLower(k.Fingerprint().String()),
		KeyID:       strings.ToLower(k.KeyID().String()),
		Algorithm:   algorithmOf(s.Algorithm, s.Bits),
		Creation:    rfc3339(s.Created),
		Expiration:  rfc3339(s.Expires),
		IsRevoked:   s.Revoked,
		UserIDs:     []V2IndexUID{},
	}
	for _, u := range s.UIDs {
		if u.IsAttribute {
			continue
		}
		c.UserIDs = append(c.UserIDs, V2IndexUID{
			UIDString: u.Text, Creation: rfc3339(u.Created), Expiration: rfc3339(u.Expires), IsRevoked: u.Revoked,
		})
	}
	for _, sk := range s.Subkeys {
		c.Subkeys = append(c.Subkeys, V2IndexSubkey{
			Version:     keyVersionOf(k, sk.Fingerprint.Bytes()),
			Fingerprint: strings.ToLower(sk.Fingerprint.String()),
			KeyID:       strings.ToLower(sk.KeyID.String()),
			Algorithm:   algorithmOf(sk.Algorithm, sk.Bits),
			Creation:    rfc3339(sk.Created),
			Expiration:  rfc3339(sk.Expires),
			IsRevoked:   sk.Revoked,
		})
	}
	return c
}
