package hkp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/hkp"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestHashqueryHockeypuckDataset: a Hockeypuck hash is answered with the
// key as the Hockeypuck dataset holds it (which hashes back to it), an SKS
// hash with the SKS key; HashqueryDataset restricts the answer to one.
func TestHashqueryHockeypuckDataset(t *testing.T) {
	f, err := os.ReadFile("../projections/pgpkey/testdata/hockeypuck/gentoo-l1.asc")
	if err != nil {
		t.Fatal(err)
	}
	blk, err := armor.Decode(bytes.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	gentoo, _ := io.ReadAll(blk.Body)
	hpHash, _ := pgpkey.ParseKeyHash("21eb8f7fdf500338aef41ed6f722a3ad")
	sksHash, _ := pgpkey.ParseKeyHash("0fa4cd2df7ede287ac0b7a608bf30faa")
	for _, tc := range []struct {
		dataset  string
		sks, hkp bool
	}{{"", true, true}, {hkp.DatasetSKS, true, false}, {hkp.DatasetHockeypuck, false, true}} {
		t.Run("dataset="+tc.dataset, func(t *testing.T) {
			ts := newTestServer(t, func(c *hkp.Config) { c.HashqueryDataset = tc.dataset })
			idx, err := ts.log.Append(context.Background(), &eventlog.Event{Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: time.Now(), Key: gentoo})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := ts.store.WaitApplied(ctx, idx); err != nil {
				t.Fatal(err)
			}
			if err := ts.store.WaitHockeypuckApplied(ctx, idx); err != nil {
				t.Fatal(err)
			}
			var req []byte
			req = binary.BigEndian.AppendUint32(req, 2)
			for _, h := range []pgpkey.KeyHash{hpHash, sksHash} {
				req = binary.BigEndian.AppendUint32(req, 16)
				req = append(req, h[:]...)
			}
			resp, err := http.Post(ts.URL+"/pks/hashquery", "", bytes.NewReader(req))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || len(body) < 4 {
				t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
			}
			n := binary.BigEndian.Uint32(body)
			b := body[4:]
			var gotSKS, gotHP bool
			for i := uint32(0); i < n; i++ {
				l := binary.BigEndian.Uint32(b)
				key := b[4 : 4+l]
				b = b[4+l:]
				if k, err := projections.ParseEventKey(key); err == nil && k.Hash() == sksHash {
					gotSKS = true // SKS bytes (they normalise to the Hockeypuck hash too)
				} else if h, err := projections.HockeypuckHash(key); err == nil && h == hpHash {
					gotHP = true
				}
			}
			if gotSKS != tc.sks || gotHP != tc.hkp {
				t.Errorf("%d keys: SKS key %v (want %v), Hockeypuck key %v (want %v)", n, gotSKS, tc.sks, gotHP, tc.hkp)
			}
		})
	}
}
