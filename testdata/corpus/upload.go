package corpus

import (
	"bytes"
	"io"
	"net/url"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// UploadBodies splits a binary corpus (Generate's output) into one
// `/pks/add` request body per key: keytext= and the key ASCII-armored, as
// gpg sends it. The benchmarks upload these.
func UploadBodies(data []byte) ([][]byte, error) {
	r := pgpkey.NewReader(bytes.NewReader(data))
	var out [][]byte
	for {
		raw, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		w, err := armor.Encode(&b, "PGP PUBLIC KEY BLOCK", nil)
		if err != nil {
			return nil, err
		}
		w.Write(raw.Raw)
		w.Close()
		out = append(out, []byte("keytext="+url.QueryEscape(b.String())))
	}
}
