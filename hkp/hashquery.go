package hkp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/http"
	"strconv"

	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// hashquery serves POST /pks/hashquery, the recon peers' key fetch
// (hkp.md §10, recon.md §11.4). Request body: uint32 count, then count
// strings (uint32 length + bytes) of 16-byte key hashes: SKS hashes, or
// Hockeypuck hashes of the Hockeypuck dataset (issue 11), each answered
// with its dataset's key. Response body:
// uint32 count, then count strings holding one key each, exactly as stored,
// then "\r\n" as SKS sends it. Unknown hashes are skipped. Peers send
// HTTP/1.0 without Host or Content-Type, and need a Content-Length.
func (s *Server) hashquery(w http.ResponseWriter, r *http.Request) error {
	body, release, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	defer release()
	hashes, err := decodeHashQuery(body, s.conf().MaxHashqueryHashes)
	if err != nil {
		return errBadRequest("hashquery: %v", err)
	}
	s.awaitUploads(r.Context()) // a peer may ask for a key uploaded just now
	var keys [][]byte
	seen := make(map[pgpkey.KeyHash]bool, len(hashes))
	ds := s.conf().HashqueryDataset
	for _, h := range hashes {
		if seen[h] {
			continue
		}
		seen[h] = true
		if ds != DatasetHockeypuck {
			rec, err := s.store.ByHash(h)
			if err != nil && !errors.Is(err, projections.ErrNotFound) {
				return err
			}
			// Never hand SKS peers a key they cannot parse (recon.md §11.5).
			if err == nil && rec.SKS {
				keys = append(keys, rec.Key)
				continue
			}
		}
		if ds == DatasetSKS {
			continue
		}
		// A Hockeypuck hash: the key as the Hockeypuck dataset holds it,
		// which is what a Hockeypuck peer hashes to the same value.
		rec, err := s.store.HockeypuckByHash(h)
		if errors.Is(err, projections.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		keys = append(keys, rec.Key)
	}
	var out bytes.Buffer
	out.Write(binary.BigEndian.AppendUint32(nil, uint32(len(keys))))
	for _, k := range keys {
		out.Write(binary.BigEndian.AppendUint32(nil, uint32(len(k))))
		out.Write(k)
	}
	out.WriteString("\r\n")
	w.Header().Set("Content-Type", "pgp/keys")
	w.Header().Set("X-HKP-Results-Count", strconv.Itoa(len(keys)))
	return writeBody(w, r, out.Bytes())
}

// Values of Config.HashqueryDataset.
const (
	DatasetSKS        = "sks"
	DatasetHockeypuck = "hockeypuck"
)

var errHashquery = errors.New("malformed hash list")

func decodeHashQuery(b []byte, max int) ([]pgpkey.KeyHash, error) {
	if len(b) < 4 {
		return nil, errHashquery
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if int64(n) > int64(max) {
		return nil, errors.New("too many hashes in one request")
	}
	if int64(n)*20 > int64(len(b)) {
		return nil, errHashquery
	}
	out := make([]pgpkey.KeyHash, 0, n)
	for i := uint32(0); i < n; i++ {
		if len(b) < 4 {
			return nil, errHashquery
		}
		l := binary.BigEndian.Uint32(b)
		b = b[4:]
		if l != 16 || len(b) < 16 {
			return nil, errHashquery
		}
		var h pgpkey.KeyHash
		copy(h[:], b)
		out = append(out, h)
		b = b[16:]
	}
	return out, nil
}
