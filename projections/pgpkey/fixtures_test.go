package pgpkey_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestTestKeys checks the keys captured with real SKS 1.1.6
// (fixtures/sks/README.md): hash, fingerprint and user IDs equal
// test-keys.tsv, which holds what SKS reported.
func TestTestKeys(t *testing.T) {
	want := loadTestKeys(t)
	files := testKeyFiles(t)
	seen := 0
	for _, tk := range want {
		t.Run(tk.fingerprint, func(t *testing.T) {
			var found *pgpkey.Key
			var raw *pgpkey.RawKey
			for _, r := range readAllKeys(t, files[tk.file]) {
				k, err := pgpkey.ParseKey(r)
				if err != nil {
					t.Fatalf("%s at byte %d: %v", tk.file, r.Offset, err)
				}
				if k.Fingerprint().String() == tk.fingerprint {
					found, raw = k, r
				}
			}
			if found == nil {
				t.Fatalf("%s: no key with fingerprint %s", tk.file, tk.fingerprint)
			}
			seen++
			if got, want := found.Hash().String(), tk.hash; got != want {
				t.Errorf("Hash() = %s, want %s", got, want)
			}
			fp, err := pgpkey.ParseFingerprint(tk.fingerprint)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := found.KeyID(), fp.KeyID(); got != want {
				t.Errorf("KeyID() = %s, want %s", got, want)
			}
			if got, want := found.Version(), 4; got != want {
				t.Errorf("Version() = %d, want %d", got, want)
			}
			if !found.SKSCompatible() {
				t.Errorf("SKSCompatible() = false")
			}
			// test-keys.tsv lists user IDs in gpg's order; compare sets.
			gotUIDs := strings.Join(slices.Sorted(slices.Values(found.UserIDs())), "; ")
			if wantUIDs := strings.Join(slices.Sorted(slices.Values(tk.uids)), "; "); gotUIDs != wantUIDs {
				t.Errorf("UserIDs() = %q, want %q", gotUIDs, wantUIDs)
			}
			// The exported keys are already in SKS's stored form: Marshal
			// gives back the input bytes.
			if got := found.Marshal(); !bytes.Equal(got, raw.Raw) {
				t.Errorf("Marshal() differs from the SKS-exported bytes (%d vs %d bytes)", len(got), len(raw.Raw))
			}
		})
	}
	if seen != 7 {
		t.Errorf("checked %d keys, want the 7 of test-keys.tsv", seen)
	}
}

// TestDebianKeyring checks every key of the Debian keyring against the hash
// a real SKS 1.1.6 reported for it.
func TestDebianKeyring(t *testing.T) {
	data := readDebianKeyring(t)
	want := debianHashes(t)
	if got, want := len(want), 905; got != want {
		t.Fatalf("hash fixture has %d keys, want %d", got, want)
	}
	seen := map[string]bool{}
	raws := readAllKeys(t, data)
	var off int64
	for i, raw := range raws {
		if raw.Offset != off {
			t.Fatalf("key %d: Offset = %d, want %d", i, raw.Offset, off)
		}
		if !bytes.Equal(raw.Raw, data[off:off+int64(len(raw.Raw))]) {
			t.Fatalf("key %d: Raw is not the input bytes", i)
		}
		off += int64(len(raw.Raw))
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			t.Errorf("key %d: %v", i, err)
			continue
		}
		fpr := k.Fingerprint().String()
		if seen[fpr] {
			t.Errorf("key %d: fingerprint %s seen twice", i, fpr)
		}
		seen[fpr] = true
		wantHash, ok := want[fpr]
		if !ok {
			t.Errorf("key %d: fingerprint %s not in the fixture", i, fpr)
			continue
		}
		if got := k.Hash().String(); got != wantHash {
			t.Errorf("key %s: Hash() = %s, want %s", fpr, got, wantHash)
		}
		// SKS's exported bytes are already canonical (fixtures README),
		// so the raw hash agrees too.
		if got := pgpkey.RawHash(raw.Packets).String(); got != wantHash {
			t.Errorf("key %s: RawHash = %s, want %s", fpr, got, wantHash)
		}
	}
	if off != int64(len(data)) {
		t.Errorf("keys cover %d of %d bytes", off, len(data))
	}
	if len(seen) != len(want) {
		t.Errorf("matched %d keys, want %d", len(seen), len(want))
	}
}
