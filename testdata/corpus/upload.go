package corpus

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

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

// UploadResult is what Upload measured.
type UploadResult struct {
	Keys, Errors int           // bodies posted, and those not answered 2xx
	Wall, Max    time.Duration // the whole upload, its longest request
}

// Upload posts each body (UploadBodies) to base+"/pks/add" from clients
// concurrent HTTP clients, as gpg would, and stops handing out bodies when
// ctx ends (requests under way finish; only the bodies posted count).
func Upload(ctx context.Context, base string, bodies [][]byte, clients int) UploadResult {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 120 * time.Second}
	next := make(chan []byte)
	go func() {
		defer close(next)
		for _, b := range bodies {
			if ctx.Err() != nil { // select alone picks at random when both are ready
				return
			}
			select {
			case next <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	reqCtx := context.WithoutCancel(ctx)
	var mu sync.Mutex
	var res UploadResult
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range next {
				t0 := time.Now()
				ok := post(reqCtx, client, base+"/pks/add", body)
				d := time.Since(t0)
				mu.Lock()
				res.Keys++
				if !ok {
					res.Errors++
				}
				res.Max = max(res.Max, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Wall = time.Since(start)
	return res
}

// post sends one urlencoded body and reports whether it was answered 2xx.
func post(ctx context.Context, client *http.Client, url string, body []byte) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode/100 == 2
}
