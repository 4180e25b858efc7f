package corpus

import (
	"bytes"
	"cmp"
	"crypto"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// builder builds keys for one worker goroutine. It keeps a bounded cache of
// identities, because certifiers are chosen with a heavy tail: a few keys
// certify hundreds of others.
type builder struct {
	p      *plan
	idents map[uint64]*ident
	tmp    bytes.Buffer
}

const identCacheSize = 4096

func newBuilder(p *plan) *builder {
	return &builder{p: p, idents: make(map[uint64]*ident)}
}

func (b *builder) ident(i uint64) (*ident, error) {
	if id := b.idents[i]; id != nil {
		return id, nil
	}
	id, err := b.p.ident(i)
	if err != nil {
		return nil, err
	}
	if len(b.idents) >= identCacheSize {
		clear(b.idents) // crude, but hubs come back at once
	}
	b.idents[i] = id
	return id, nil
}

// keyStats describes one built key for Stats.
type keyStats struct {
	cls                                  *class
	packets, uids, revokedUIDs           int
	subkeys, revokedSubkeys, sigs, certs int
	revoked, expiring                    bool
}

// userID is one user ID of the key being built, with what is signed on it.
type userID struct {
	text    string
	created int64 // self-signature time
	revoked int64 // 0, or the time of its revocation by the key
	primary bool
	certs   []cert
}

// cert is a third-party certification of a user ID.
type cert struct {
	by      *ident
	at      int64
	sigType packet.SignatureType
	hash    crypto.Hash
	revoked int64 // 0, or the time the certifier revoked it
}

// Probabilities of the shape of a key.
var (
	uidCountWeights = []ppm{550_000, 270_000, 110_000, 70_000} // 1 to 4 user IDs
	certTypes       = []packet.SignatureType{packet.SigTypeGenericCert, packet.SigTypePositiveCert, packet.SigTypeCasualCert, packet.SigTypePersonaCert}
	certTypeWeights = []ppm{700_000, 150_000, 100_000, 50_000} // GnuPG's default is 0x10
	revokeReasons   = []packet.ReasonForRevocation{packet.NoReason, packet.KeySuperseded, packet.KeyCompromised, packet.KeyRetired}
	revokeWeights   = []ppm{300_000, 300_000, 150_000, 250_000}
	revokeTexts     = []string{"", "", "", "replaced by a new key", "lost the passphrase", "key material may have leaked", "no longer used"}
)

const (
	primaryUIDChance  ppm = 600_000 // of keys with several user IDs, the first is flagged primary
	certOnPrimaryUID  ppm = 750_000 // certifiers mostly sign the primary user ID
	certRevokedChance ppm = 10_000
	uidRevokeText     ppm = 300_000
	rotationMinAge        = 30 * day
	laterUIDMaxAge        = 3 * 365 * day
)

// build returns the transferable public key at position i.
//
// Packet order is GnuPG's export order: primary key, key revocation, then
// each user ID with its self-signature, its revocation and its
// certifications by time, then each subkey with its binding and
// revocation.
func (b *builder) build(i uint64) ([]byte, keyStats, error) {
	p := b.p
	id, err := b.ident(i)
	if err != nil {
		return nil, keyStats{}, err
	}
	s := newStream("body", p.opt.Seed, i)
	limit := id.limit()
	ks := keyStats{cls: id.cls, revoked: id.revoked != 0, expiring: id.lifetime != 0}

	// User IDs.
	pr := choosePerson(s)
	nuid := s.pick(uidCountWeights) + 1
	uids := make([]userID, 0, nuid)
	format := s.pick(uidFormatWeights)
	for k := 0; k < nuid; k++ {
		u := userID{created: id.created}
		if k > 0 {
			if hi := min(limit, id.created+laterUIDMaxAge); id.created+1 < hi {
				u.created = s.between(id.created+1, hi)
			}
			format = s.pick(laterUIDFormatWeights)
		}
		for try := 0; ; try++ {
			u.text = userIDText(s, pr, format)
			if !slices.ContainsFunc(uids, func(v userID) bool { return v.text == u.text }) {
				break
			}
			if try == 8 {
				u.text = fmt.Sprintf("%s (%d)", u.text, k+1)
				break
			}
		}
		if k > 0 && s.chance(p.revokedUIDs) && u.created+1 < limit {
			u.revoked = s.between(u.created+1, limit)
		}
		uids = append(uids, u)
	}
	if nuid > 1 && s.chance(primaryUIDChance) {
		uids[0].primary = true
	}
	selfHash := chooseHash(s, id.cls.primary)

	// Encryption subkeys: one, or an old revoked one and its successor.
	type subkey struct {
		body    []byte
		created int64
		revoked int64
	}
	var subs []subkey
	if id.cls.sub != algNone {
		body, err := p.subkeyBody(id.cls, id.cls.sub, id.rank, id.created, s)
		if err != nil {
			return nil, ks, err
		}
		subs = append(subs, subkey{body: body, created: id.created})
		if id.cls.sub != algRSA && s.chance(p.rotatedSubkeys) && id.created+rotationMinAge < limit {
			t := s.between(id.created+rotationMinAge, limit)
			subs[0].revoked = t
			body, err := p.subkeyBody(id.cls, id.cls.sub, id.rank, t, s)
			if err != nil {
				return nil, ks, err
			}
			subs = append(subs, subkey{body: body, created: t})
		}
	}

	// Third-party certifications from other corpus keys.
	if p.maxCerts > 0 && s.chance(p.certified) {
		want := s.powerLaw(p.maxCerts)
		seen := map[uint64]bool{i: true}
		certs := 0
		for attempt := 0; certs < want && attempt < 4*want+16; attempt++ {
			y := p.signers.at(p.zipf.sample(s))
			if seen[y] {
				// The heavy tail picks the same few certifiers again and
				// again; fall back to anyone so that hubs can fill up.
				y = s.below(p.n)
			}
			k := 0
			if !s.chance(certOnPrimaryUID) {
				k = s.intn(nuid)
			}
			if seen[y] {
				continue
			}
			seen[y] = true
			by, err := b.ident(y)
			if err != nil {
				return nil, ks, err
			}
			lo, hi := max(uids[k].created, by.created)+1, min(limit, by.limit())
			if lo >= hi {
				continue // the certifier expired or was revoked before this user ID existed
			}
			c := cert{by: by, at: s.between(lo, hi), sigType: certTypes[s.pick(certTypeWeights)], hash: chooseHash(s, by.cls.primary)}
			if s.chance(certRevokedChance) && c.at+1 < hi {
				c.revoked = s.between(c.at+1, hi)
			}
			uids[k].certs = append(uids[k].certs, c)
			certs++
		}
	}
	var reason packet.ReasonForRevocation
	var reasonText string
	if id.revoked != 0 {
		reason = revokeReasons[s.pick(revokeWeights)]
		reasonText = revokeTexts[s.intn(len(revokeTexts))]
	}

	// Serialise.
	sym, hashes, comp := preferences(id.created)
	out := appendPacket(make([]byte, 0, 4096), tagPublicKey, id.body)
	ks.packets++
	sign := func(sig *packet.Signature, f func(*packet.Signature) error) error {
		if err := f(sig); err != nil {
			return fmt.Errorf("key %d: sign 0x%02x: %w", i, uint8(sig.SigType), err)
		}
		var err error
		out, err = appendSignature(out, sig, &b.tmp)
		ks.packets++
		ks.sigs++
		return err
	}
	newSig := func(t packet.SignatureType, by *ident, h crypto.Hash, at int64) *packet.Signature {
		keyID := by.pub.KeyId
		return &packet.Signature{SigType: t, PubKeyAlgo: by.pub.PubKeyAlgo, Hash: h, CreationTime: time.Unix(at, 0), IssuerKeyId: &keyID}
	}
	var lifetime *uint32
	if id.lifetime != 0 {
		lt := id.lifetime
		lifetime = &lt
	}

	if id.revoked != 0 {
		sig := newSig(packet.SigTypeKeyRevocation, id, selfHash, id.revoked)
		sig.RevocationReason, sig.RevocationReasonText = &reason, reasonText
		if err := sign(sig, func(sig *packet.Signature) error { return sig.RevokeKey(id.pub, id.priv, p.cfg) }); err != nil {
			return nil, ks, err
		}
	}
	for _, u := range uids {
		out = appendPacket(out, tagUserID, []byte(u.text))
		ks.packets++
		ks.uids++
		sig := newSig(packet.SigTypePositiveCert, id, selfHash, u.created)
		sig.FlagsValid, sig.FlagCertify, sig.FlagSign = true, true, true
		sig.KeyLifetimeSecs = lifetime
		sig.PreferredSymmetric, sig.PreferredHash, sig.PreferredCompression = sym, hashes, comp
		sig.SEIPDv1 = true // features: MDC
		sig.KeyserverPrefsValid, sig.KeyserverPrefNoModify = true, true
		if u.primary {
			yes := true
			sig.IsPrimaryId = &yes
		}
		signUID := func(by *ident) func(*packet.Signature) error {
			return func(sig *packet.Signature) error { return sig.SignUserId(u.text, id.pub, by.priv, p.cfg) }
		}
		if err := sign(sig, signUID(id)); err != nil {
			return nil, ks, err
		}
		if u.revoked != 0 {
			sig := newSig(packet.SigTypeCertificationRevocation, id, selfHash, u.revoked)
			r := packet.UserIDNotValid
			sig.RevocationReason = &r
			if s.chance(uidRevokeText) {
				sig.RevocationReasonText = "address no longer in use"
			}
			if err := sign(sig, signUID(id)); err != nil {
				return nil, ks, err
			}
			ks.revokedUIDs++
		}
		slices.SortFunc(u.certs, func(a, b cert) int {
			return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.by.index, b.by.index))
		})
		for _, c := range u.certs {
			if err := sign(newSig(c.sigType, c.by, c.hash, c.at), signUID(c.by)); err != nil {
				return nil, ks, err
			}
			ks.certs++
			if c.revoked != 0 {
				if err := sign(newSig(packet.SigTypeCertificationRevocation, c.by, c.hash, c.revoked), signUID(c.by)); err != nil {
					return nil, ks, err
				}
			}
		}
	}
	for _, sk := range subs {
		pub, err := parseKey(tagSubkey, sk.body)
		if err != nil {
			return nil, ks, fmt.Errorf("key %d: %w", i, err)
		}
		out = appendPacket(out, tagSubkey, sk.body)
		ks.packets++
		ks.subkeys++
		sig := newSig(packet.SigTypeSubkeyBinding, id, selfHash, sk.created)
		sig.FlagsValid, sig.FlagEncryptCommunications, sig.FlagEncryptStorage = true, true, true
		if id.lifetime != 0 {
			// Relative to the subkey's creation, so that it expires with the key.
			lt := uint32(id.created + int64(id.lifetime) - sk.created)
			sig.KeyLifetimeSecs = &lt
		}
		if err := sign(sig, func(sig *packet.Signature) error { return sig.SignKey(pub, id.priv, p.cfg) }); err != nil {
			return nil, ks, err
		}
		if sk.revoked != 0 {
			sig := newSig(packet.SigTypeSubkeyRevocation, id, selfHash, sk.revoked)
			r := packet.KeySuperseded
			sig.RevocationReason = &r
			if err := sign(sig, func(sig *packet.Signature) error { return sig.RevokeSubkey(pub, id.priv, p.cfg) }); err != nil {
				return nil, ks, err
			}
			ks.revokedSubkeys++
		}
	}
	return out, ks, nil
}

// chooseHash picks the digest a key of primary algorithm a signs with:
// GnuPG matches ECDSA digests to the curve; for RSA and EdDSA it used
// SHA-256 by default and SHA-512 when configured (Sequoia's default).
// Nothing uses SHA-1, which go-crypto and Sequoia reject.
func chooseHash(s *stream, a algo) crypto.Hash {
	switch a {
	case algP256:
		return crypto.SHA256
	case algP384:
		return crypto.SHA384
	}
	if s.chance(280_000) {
		return crypto.SHA512
	}
	return crypto.SHA256
}

// preferences returns the algorithm preferences GnuPG wrote into
// self-signatures when the key was made: 2.0 until the end of 2014, 2.1
// and later afterwards (cipher, hash and compression IDs of RFC 9580 §9).
func preferences(created int64) (sym, hash, comp []uint8) {
	if created < unix(2015, 1, 1) {
		return []uint8{9, 8, 7, 3, 2}, []uint8{8, 2, 9, 10, 11}, []uint8{2, 3, 1}
	}
	return []uint8{9, 8, 7, 2}, []uint8{10, 9, 8, 11, 2}, []uint8{2, 3, 1}
}

// person is the owner of a key.
type person struct {
	given, family name
	familyFirst   bool   // write the family name first, as in Chinese and Japanese
	sep           string // between the names when familyFirst
}

// asciiChance is how often a person whose name has non-ASCII letters
// writes it in ASCII ("Juergen Mueller", "Dmitry Ivanov"), as many did.
const asciiChance ppm = 450_000

func choosePerson(s *stream) person {
	w := make([]ppm, len(locales))
	for i := range locales {
		w[i] = locales[i].weight
	}
	loc := &locales[s.pick(w)]
	pr := person{
		given:       loc.given[zipfIndex(s, len(loc.given))],
		family:      loc.family[zipfIndex(s, len(loc.family))],
		familyFirst: loc.familyFirst,
		sep:         loc.sep,
	}
	if s.chance(asciiChance) && !isASCII(pr.given.display+pr.family.display) {
		pr.given.display, pr.family.display = capitalize(pr.given.ascii), capitalize(pr.family.ascii)
		pr.familyFirst = false // "Wei Wang", not "WangWei"
	}
	return pr
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// zipfIndex returns a heavy-tailed index into a list of n entries.
func zipfIndex(s *stream, n int) int { return int(newCubeZipf(uint64(n)).sample(s)) }

func (pr person) name() string {
	if pr.familyFirst {
		return pr.family.display + pr.sep + pr.given.display
	}
	return pr.given.display + " " + pr.family.display
}

// User ID formats.
const (
	uidNameEmail = iota
	uidNameCommentEmail
	uidMiddleInitial
	uidBracketedEmail // "<alice@example.org>", as Sequoia makes
	uidBareEmail
	uidNameOnly
)

var (
	uidFormatWeights      = []ppm{800_000, 90_000, 40_000, 30_000, 15_000, 25_000}
	laterUIDFormatWeights = []ppm{850_000, 120_000, 10_000, 20_000, 0, 0}
)

func userIDText(s *stream, pr person, format int) string {
	switch format {
	case uidNameCommentEmail:
		return fmt.Sprintf("%s (%s) <%s>", pr.name(), comments[zipfIndex(s, len(comments))], email(s, pr))
	case uidMiddleInitial:
		if !pr.familyFirst {
			return fmt.Sprintf("%s %c. %s <%s>", pr.given.display, 'A'+s.intn(26), pr.family.display, email(s, pr))
		}
	case uidBracketedEmail:
		return "<" + email(s, pr) + ">"
	case uidBareEmail:
		return email(s, pr)
	case uidNameOnly:
		return pr.name()
	}
	return fmt.Sprintf("%s <%s>", pr.name(), email(s, pr))
}

var (
	localWeights  = []ppm{300_000, 150_000, 120_000, 80_000, 50_000, 50_000, 50_000, 100_000, 50_000, 50_000}
	domainWeights = []ppm{550_000, 150_000, 300_000} // popular, personal, organisation
)

func email(s *stream, pr person) string {
	g, f := pr.given.ascii, strings.ReplaceAll(pr.family.ascii, " ", "")
	var local string
	switch s.pick(localWeights) {
	case 0:
		local = g + "." + f
	case 1:
		local = g[:1] + f
	case 2:
		local = g
	case 3:
		local = g + f
	case 4:
		local = g + "_" + f
	case 5:
		local = f
	case 6:
		local = g[:1] + "." + f
	case 7:
		local = fmt.Sprintf("%s%02d", g, s.intn(100))
	case 8:
		local = fmt.Sprintf("%s%d", words[zipfIndex(s, len(words))], s.intn(1000))
	default:
		local = fmt.Sprintf("%s.%s%d", g, f, 1+s.intn(9))
	}
	var domain string
	switch s.pick(domainWeights) {
	case 0:
		domain = popularDomains[zipfIndex(s, len(popularDomains))]
	case 1:
		domain = f + tlds[s.intn(len(tlds))]
	default:
		w := words[zipfIndex(s, len(words))]
		switch s.intn(4) {
		case 0:
			w += "-" + words[s.intn(len(words))]
		case 1:
			w = "mail." + w
		}
		domain = w + tlds[s.intn(len(tlds))]
	}
	return local + "@" + domain
}
