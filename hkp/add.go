package hkp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// AddResult reports what an upload did, key by key (fingerprints in
// uppercase hex; failures as "what: why").
type AddResult struct {
	Added, Updated, Unchanged []string
	Failed                    []string
}

// add serves POST /pks/add (hkp.md §9). The answer is 200 only after every
// accepted key is durable in the log; nothing is appended when the
// submission holds no usable key. It does not wait for the projections
// when they are close behind: what reads them next waits instead
// (pending.go), so a client that uploads and then fetches finds its key,
// as on SKS.
func (s *Server) add(w http.ResponseWriter, r *http.Request) error {
	body, release, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	// The slot bounds memory: hold it while the body and its keys are
	// alive, up to the durable append, not while waiting for the apply.
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	keytext, wantJSON, err := keytextOf(r, body)
	if err != nil {
		return err
	}
	raws, err := pgpkey.Decode(keytext)
	if err != nil {
		return errBadRequest("no OpenPGP public key found: %v", err)
	}
	w.Header().Set("X-HKP-Results-Count", strconv.Itoa(len(raws)))
	res, err := s.ingest(r.Context(), raws, func() { release(); released = true })
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if wantJSON {
		w.Header().Set("Content-Type", "application/json")
		err = WriteAddResultJSON(&out, res)
	} else {
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		err = WriteAddResultHTML(&out, res)
	}
	if err != nil {
		return err
	}
	return writeBody(w, r, out.Bytes())
}

// ingest appends, in one durable batch, the keys among raws that would
// change the store, and reports what happened to each. It is the upload
// path every API shares (/pks/add, POST /pks/v2/certs, /vks/v1/upload).
// release is called once the append is done, to free the caller's body
// slot; the caller must still release when ingest returns before that (an
// error or nothing to append).
func (s *Server) ingest(ctx context.Context, raws []*pgpkey.RawKey, release func()) (AddResult, error) {
	var res AddResult
	var events []*eventlog.Event
	var novelKeys []*pgpkey.Key
	var novelRIDs [][]byte
	var existed []bool
	lim := s.conf().KeyLimits
	now := time.Now()
	for _, raw := range raws {
		k, err := pgpkey.ParseKey(raw)
		if err != nil {
			// A bare revocation certificate merges into the key it revokes.
			if rk, ok := s.revocationKey(raw); ok {
				k, err = rk, nil
			}
		}
		if err != nil {
			res.Failed = append(res.Failed, err.Error())
			continue
		}
		rid := projections.RecordID(k)
		s.awaitKey(ctx, rid) // an earlier upload of it, answered, not yet applied
		// The abuse limits apply before anything is stored (pgpkey.Limits).
		// Admit also reads whether the key is blocked and stored: one
		// lookup each per key, not two.
		ad, err := s.store.Admit(k, lim)
		if errors.Is(err, pgpkey.ErrTooLarge) {
			res.Failed = append(res.Failed, err.Error())
			continue
		} else if err != nil {
			return res, err
		}
		if ad.Blocked {
			s.log.Info().Str("fpr", k.Fingerprint().String()).Msg("refused upload of a blocked key")
			res.Failed = append(res.Failed, "key "+k.Fingerprint().String()+" is blocked on this server")
			continue
		}
		if !ad.Novel {
			res.Unchanged = append(res.Unchanged, k.Fingerprint().String())
			continue
		}
		keyBytes := eventKeyBytes(raw, k)
		if ad.Trim.Changed() {
			s.log.Info().Str("fpr", k.Fingerprint().String()).Str("key_hash", k.Hash().String()).Str("trim", ad.Trim.String()).Msg("upload trimmed by the key limits")
			k, keyBytes = ad.Key, ad.Key.Marshal()
		}
		events = append(events, &eventlog.Event{
			Kind: eventlog.KindKeySubmitted, Origin: eventlog.OriginHKP, Time: now, Key: keyBytes,
		})
		novelKeys = append(novelKeys, k)
		novelRIDs = append(novelRIDs, rid)
		existed = append(existed, ad.Stored)
	}
	if len(events) == 0 && len(res.Unchanged) == 0 {
		return res, &httpError{http.StatusUnprocessableEntity, "Add failed", "no usable key: " + strings.Join(res.Failed, "; ")}
	}
	if len(events) > 0 {
		// Not the request context: a client that half-closes after sending
		// (HTTP/1.0, hkp.md §1.2) must not turn a stored key into a 503.
		last, err := s.app.Append(context.WithoutCancel(ctx), events...)
		if err != nil {
			s.log.Error().Err(err).Msg("append upload to log")
			return res, &httpError{http.StatusServiceUnavailable, "Service unavailable", "the key could not be stored; try again later"}
		}
		events = nil
		release()
		// Durable: answer now, without waiting for the projections to
		// apply it (a fifth of an upload's time); readers wait instead
		// (pending.go) — unless the projections are far behind.
		s.afterAppend(ctx, last, novelRIDs)
		for i, k := range novelKeys {
			if existed[i] {
				res.Updated = append(res.Updated, k.Fingerprint().String())
			} else {
				res.Added = append(res.Added, k.Fingerprint().String())
			}
		}
		s.log.Debug().Int("keys", len(novelKeys)).Uint64("index", uint64(last)).Msg("upload appended")
	}
	return res, nil
}

// eventKeyBytes is what the log records for an accepted key: the bytes as
// submitted, or, for a key the server had to build (a revocation
// certificate merged into its key), that key's packets.
func eventKeyBytes(raw *pgpkey.RawKey, k *pgpkey.Key) []byte {
	if len(raw.Packets) > 0 && raw.Packets[0].Tag == pgpkey.TagPublicKey {
		return bytes.Clone(raw.Raw)
	}
	return k.Marshal()
}

// keytextOf extracts the submitted key text from the body, whatever way the
// client encoded it (hkp.md §9.1), and whether the client asked for JSON.
func keytextOf(r *http.Request, body []byte) (keytext []byte, wantJSON bool, err error) {
	wantJSON = strings.Contains(r.Header.Get("Accept"), "application/json")
	ct := r.Header.Get("Content-Type")
	mediatype, params, _ := mime.ParseMediaType(ct)
	switch mediatype {
	case "multipart/form-data":
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := r.ParseMultipartForm(int64(len(body)) + 1024); err != nil {
			return nil, false, errBadRequest("multipart body: %v", err)
		}
		if v := r.MultipartForm.Value["keytext"]; len(v) > 0 {
			return []byte(v[0]), wantJSON || hasOption(r.MultipartForm.Value["options"]), nil
		}
		if f := r.MultipartForm.File["keytext"]; len(f) > 0 {
			fh, err := f[0].Open()
			if err != nil {
				return nil, false, errBadRequest("multipart keytext: %v", err)
			}
			defer fh.Close()
			b, err := io.ReadAll(fh)
			return b, wantJSON, err
		}
		return nil, false, errBadRequest("multipart body has no keytext field")
	case "application/pgp-keys", "application/pgp", "application/octet-stream":
		return body, wantJSON, nil
	}
	_ = params
	// application/x-www-form-urlencoded, or no Content-Type at all: SKS
	// only needs the keytext field. Split pairs at the first '=' only, so
	// an unencoded '=' inside the armor (Sequoia) survives.
	found := false
	for _, pair := range bytes.Split(body, []byte("&")) {
		name, value, _ := bytes.Cut(pair, []byte("="))
		switch string(bytes.TrimSpace(name)) {
		case "keytext":
			keytext = unescapeBytes(value)
			found = true
		case "options":
			wantJSON = wantJSON || hasOption([]string{unescape(string(value))})
		}
	}
	if !found {
		if bytes.Contains(body, []byte("-----BEGIN PGP")) {
			return body, wantJSON, nil // a raw armored body without a form
		}
		return nil, false, errBadRequest("missing keytext field (send keytext=<armored key>, form-encoded)")
	}
	return keytext, wantJSON, nil
}

func hasOption(values []string) bool {
	for _, v := range values {
		for _, o := range strings.Split(v, ",") {
			if o = strings.TrimSpace(strings.ToLower(o)); o == "mr" || o == "json" {
				return true
			}
		}
	}
	return false
}

// revocationKey turns an uploaded bare key revocation certificate into a
// key that merges into the stored key it revokes: the stored primary key,
// its first user ID group and the revocation signature. It verifies the
// signature against the stored key, so nobody can attach a forged
// revocation. It reports false when raw is not such a certificate.
func (s *Server) revocationKey(raw *pgpkey.RawKey) (*pgpkey.Key, bool) {
	if len(raw.Packets) != 1 || raw.Packets[0].Tag != pgpkey.TagSignature {
		return nil, false
	}
	sig := raw.Packets[0]
	issuer, ok := revocationIssuer(sig.Body)
	if !ok {
		return nil, false
	}
	recs, err := s.store.ByKeyID(issuer)
	if err != nil {
		return nil, false
	}
	for _, rec := range recs {
		stored, err := projections.ParseEventKey(rec.Key)
		if err != nil || stored.KeyID() != issuer || len(stored.UIDs) == 0 {
			continue
		}
		if !verifyKeyRevocation(stored.Primary.Body, sig.Body) {
			continue
		}
		return &pgpkey.Key{Primary: stored.Primary, DirectSigs: []pgpkey.Packet{sig}, UIDs: stored.UIDs[:1]}, true
	}
	return nil, false
}
