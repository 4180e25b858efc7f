package pgpkey_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// FirstKey must agree with Reader on every key, and refuse what Reader
// refuses, without panicking on any prefix of a key.
func TestFirstKeyAgreesWithReader(t *testing.T) {
	data := readShared(t, testKeysDir+"/keys-a.pgp")
	r := pgpkey.NewReader(bytes.NewReader(data))
	for {
		raw, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgpkey.FirstKey(raw.Raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Raw, raw.Raw) || len(got.Packets) != len(raw.Packets) {
			t.Fatalf("FirstKey differs from Reader")
		}
		for i := 1; i < len(raw.Raw); i++ {
			if k, err := pgpkey.FirstKey(raw.Raw[:i]); err == nil && len(k.Raw) != i {
				// A cut at a packet boundary is a whole (shorter) key; a cut
				// inside a packet must be an error.
				t.Fatalf("cut at %d: accepted %d bytes", i, len(k.Raw))
			}
		}
	}
	// Two keys: only the first is returned.
	k, err := pgpkey.FirstKey(data)
	if err != nil || len(k.Raw) >= len(data) {
		t.Fatalf("FirstKey on a stream: %v, %d of %d bytes", err, len(k.Raw), len(data))
	}
	for _, bad := range [][]byte{nil, {0x00}, {0x99}, {0x99, 0xff, 0xff}, {0xc6, 0xe0}} {
		if _, err := pgpkey.FirstKey(bad); err == nil {
			t.Errorf("FirstKey(%x) succeeded", bad)
		}
	}
}

func FuzzFirstKey(f *testing.F) {
	f.Add([]byte{0x99, 0x00, 0x01, 0x04})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := pgpkey.FirstKey(b)
		if err == nil && len(k.Raw) > len(b) {
			t.Fatal("Raw longer than input")
		}
	})
}
