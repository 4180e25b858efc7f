package pgpkey_test

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Fuzz targets for every decoder of the package. go test runs the seeds (the
// shared fixture keys, armored and binary, and the keyhash.md vectors);
// make fuzz runs them longer. Properties: no panic, errors are
// *ParseError, the Reader makes progress and reports true offsets, and a
// parsed key survives Marshal → Reader → Canonicalize unchanged.

func addSeeds(f *testing.F) {
	s := fixtureStream(f)
	for _, data := range testKeyFiles(f) {
		f.Add(data)
	}
	f.Add(s.data)
	f.Add([]byte(armored(f, "PGP PUBLIC KEY BLOCK", s.data[:s.keyOffs[2]], true)))
	f.Add([]byte("junk\r\n" + armored(f, "PGP PUBLIC KEY BLOCK", s.data[s.keyOffs[2]:], false)))
	for _, v := range []string{
		`(6,P) (2,04ff) (2,040000) (13,"bob") (2,0401) (13,"al") (2,0402) (14,0411) (2,0403)`,
		`(6,P) (2,04aa) (2,04aa) (13,"u") (2,0401) (2,0401) (13,"v") (2,0402) (13,"v") (2,0402) (2,0403) (14,0411) (2,0404) (14,0411) (2,0404)`,
		`(6,P) (13,"u") (2,0402) (13,"w") (2,0405) (2,0405) (6,P) (13,"u") (2,0401)`,
		`(2,0420) (6,03) (13,"x") (12,00) (10,504750) (17,01)`,
	} {
		var data []byte
		for _, p := range vec(f, v) {
			data = pgpkey.AppendPacket(data, p)
		}
		f.Add(data)
	}
	f.Add([]byte{0x99, 0xff, 0xff, 0xc2, 0xe0, 0x8b, 0x00})
}

// checkParseError fails unless err is a *ParseError.
func checkParseError(t *testing.T, err error) {
	t.Helper()
	var pe *pgpkey.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *ParseError", err, err)
	}
	_ = pe.Error()
}

// roundTrip checks that k survives Marshal → Reader → Canonicalize.
func roundTrip(t *testing.T, k *pgpkey.Key) {
	t.Helper()
	m := k.Marshal()
	if len(m) != k.MarshalSize() {
		t.Fatalf("Marshal gave %d bytes, MarshalSize says %d", len(m), k.MarshalSize())
	}
	r := pgpkey.NewReader(bytes.NewReader(m))
	raw, err := r.Next()
	if err != nil {
		t.Fatalf("re-read: %v", err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Marshal produced more than one key: %v", err)
	}
	if !bytes.Equal(raw.Raw, m) {
		t.Fatal("re-read Raw differs from Marshal output")
	}
	k2, err := pgpkey.Canonicalize(raw.Packets)
	if err != nil {
		t.Fatalf("Canonicalize(Marshal): %v", err)
	}
	if !k2.Equal(k) || k2.Hash() != k.Hash() {
		t.Fatalf("round trip changed the key: %s\nto %s", format(k.Packets()), format(k2.Packets()))
	}
	if got := pgpkey.RawHash(k.Packets()); got != k.Hash() {
		t.Fatalf("RawHash(Packets()) = %s, Hash() = %s", got, k.Hash())
	}
	_ = k.Fingerprint()
	_ = k.KeyID()
	_ = k.SubkeyIDs()
}

func FuzzDecode(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		raws, err := pgpkey.Decode(data)
		if err != nil {
			checkParseError(t, err)
		}
		for _, raw := range raws {
			k, err := pgpkey.ParseKey(raw)
			if err != nil {
				checkParseError(t, err)
				continue
			}
			roundTrip(t, k)
			_ = k.Summary()
		}
	})
}

func FuzzReader(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// The default buffer, and one of a few dozen bytes (keys across
		// slabs, read piecewise).
		readAll(t, pgpkey.NewReader(bytes.NewReader(data)), data)
		readAll(t, pgpkey.NewReaderSize(bytes.NewReader(data), 16+len(data)%97), data)
	})
}

// readAll reads every key of r, a Reader over data, checking each as it
// comes and, at the end, that the keys handed out still hold the input's
// bytes (keys may alias the Reader's buffer).
func readAll(t *testing.T, r *pgpkey.Reader, data []byte) {
	t.Helper()
	var got []*pgpkey.RawKey
	defer func() {
		for _, raw := range got {
			if !bytes.Equal(raw.Raw, data[raw.Offset:raw.Offset+int64(len(raw.Raw))]) {
				t.Fatalf("Raw of key at %d changed after later reads", raw.Offset)
			}
		}
	}()
	{
		end := int64(0) // end of the last key
		for range len(data) + 2 {
			raw, err := r.Next()
			if err == io.EOF {
				if r.Offset() > int64(len(data)) {
					t.Fatalf("Offset() = %d past the input (%d bytes)", r.Offset(), len(data))
				}
				return
			}
			if err != nil {
				checkParseError(t, err)
				var pe *pgpkey.ParseError
				errors.As(err, &pe)
				if pe.Offset < 0 || pe.Offset > int64(len(data)) {
					t.Fatalf("error offset %d outside the input (%d bytes)", pe.Offset, len(data))
				}
				continue
			}
			if raw.Offset < end || raw.Offset+int64(len(raw.Raw)) > int64(len(data)) {
				t.Fatalf("key at %d (+%d) overlaps the previous key (ends %d) or the input end", raw.Offset, len(raw.Raw), end)
			}
			if !bytes.Equal(raw.Raw, data[raw.Offset:raw.Offset+int64(len(raw.Raw))]) {
				t.Fatalf("Raw of key at %d is not the input bytes", raw.Offset)
			}
			if len(raw.Packets) == 0 {
				t.Fatalf("key at %d has no packets", raw.Offset)
			}
			for i, p := range raw.Packets {
				if i > 0 && p.Tag == pgpkey.TagPublicKey {
					t.Fatalf("key at %d holds a second public key packet", raw.Offset)
				}
			}
			end = raw.Offset + int64(len(raw.Raw))
			got = append(got, raw)
			if k, err := pgpkey.ParseKey(raw); err == nil {
				roundTrip(t, k)
			} else {
				checkParseError(t, err)
			}
		}
		t.Fatal("Reader did not reach io.EOF: it is not making progress")
	}
}

func FuzzCanonicalize(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := pgpkey.NewReader(bytes.NewReader(data))
		for range len(data) + 2 {
			raw, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				continue
			}
			// SKS's path: no hygiene.
			k, err := pgpkey.Canonicalize(raw.Packets)
			if err != nil {
				checkParseError(t, err)
				continue
			}
			roundTrip(t, k)

			// The hash does not depend on the order of the groups.
			rev := []pgpkey.Packet{k.Primary}
			rev = append(rev, k.DirectSigs...)
			for _, gs := range [][]pgpkey.Group{k.UIDs, k.Subkeys} {
				for _, g := range slices.Backward(gs) {
					rev = append(append(rev, g.Packet), g.Sigs...)
				}
			}
			if k2, err := pgpkey.Canonicalize(rev); err != nil || !k2.Equal(k) {
				t.Fatalf("reversed groups: %v, %v", k2, err)
			}

			// Merge with a part of itself commutes.
			part := []pgpkey.Packet{k.Primary}
			for i, g := range k.UIDs {
				if i%2 == 0 {
					part = append(append(part, g.Packet), g.Sigs...)
				}
			}
			for i, g := range k.Subkeys {
				if i%2 == 1 {
					part = append(append(part, g.Packet), g.Sigs...)
				}
			}
			p, err := pgpkey.Canonicalize(part)
			if err != nil {
				t.Fatalf("Canonicalize(part of a canonical key): %v", err)
			}
			ab, ba := pgpkey.Merge(k, p), pgpkey.Merge(p, k)
			if !ab.Equal(ba) || ab.Hash() != ba.Hash() {
				t.Fatal("Merge is not commutative")
			}
			if !k.Contains(k) {
				t.Fatal("K.Contains(K) = false")
			}
		}
		t.Fatal("Reader did not reach io.EOF")
	})
}
