package corpus

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestUploadBodies: one body per key, each the key itself armored behind
// keytext=.
func TestUploadBodies(t *testing.T) {
	var buf bytes.Buffer
	if _, err := Generate(context.Background(), &buf, Options{N: 3, Seed: 5}); err != nil {
		t.Fatal(err)
	}
	raws, err := pgpkey.Decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	bodies, err := UploadBodies(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 3 || len(raws) != 3 {
		t.Fatalf("%d bodies for %d keys, want 3", len(bodies), len(raws))
	}
	for i, b := range bodies {
		text, ok := strings.CutPrefix(string(b), "keytext=")
		if !ok {
			t.Fatalf("body %d does not start with keytext=", i)
		}
		armored, err := url.QueryUnescape(text)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgpkey.Decode([]byte(armored))
		if err != nil || len(got) != 1 || !bytes.Equal(got[0].Raw, raws[i].Raw) {
			t.Errorf("body %d does not carry key %d (%v)", i, i, err)
		}
	}
}
