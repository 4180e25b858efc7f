package hkp

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// The VKS API of keys.openpgp.org (Hagrid's /about/api page):
//
//	GET  /vks/v1/by-fingerprint/<FPR>   40 or 64 uppercase hex digits, no 0x; primary key or subkey
//	GET  /vks/v1/by-keyid/<KEYID>       16 uppercase hex digits, no 0x; primary key or subkey
//	GET  /vks/v1/by-email/<ADDRESS>     URI-encoded address, exact match
//	POST /vks/v1/upload                 {"keytext": "<armor or base64>"} → {"key_fpr", "status", "token"}
//	POST /vks/v1/request-verify         {"token", "addresses", "locale"} → the same shape
//
// Keys are answered ASCII-armored as application/pgp-keys; GET errors are
// plain text (404 when no key matches), POST errors a JSON object with one
// "error" field. Unlike Hagrid, this server verifies no e-mail address: it
// serves every key whole, as its HKP interface does (docs/compat.md), so an
// upload's addresses are all reported "published" (or "revoked") at once
// and request-verify sends no mail.

// vksStatus values (Hagrid's).
const (
	vksPublished = "published"
	vksRevoked   = "revoked"
)

// serveVKS routes /vks/v1/<operation>[/<argument>].
func (s *Server) serveVKS(w http.ResponseWriter, r *http.Request) {
	segs, err := pathSegments(r, "/vks/v1/")
	if err != nil {
		s.writeAPIError(w, r, err, false)
		return
	}
	op, arg := segs[0], strings.Join(segs[1:], "/")
	switch op {
	case "by-fingerprint", "by-keyid", "by-email":
		if len(segs) < 2 {
			s.writeAPIError(w, r, errNotFound("GET /vks/v1/"+op+"/<argument>"), false)
			return
		}
		s.serveAPI(w, r, false, func(w http.ResponseWriter, r *http.Request) error {
			return s.vksGet(w, r, op, arg)
		}, "GET", "HEAD")
	case "upload":
		s.serveAPI(w, r, true, s.vksUpload, "POST")
	case "request-verify":
		s.serveAPI(w, r, true, s.vksRequestVerify, "POST")
	default:
		s.writeAPIError(w, r, errNotFound("no VKS operation "+strconv.Quote(op)), false)
	}
}

// vksGet answers the three lookups.
func (s *Server) vksGet(w http.ResponseWriter, r *http.Request, op, arg string) error {
	var recs []*projections.Record
	var err error
	switch op {
	case "by-fingerprint":
		if (len(arg) != 40 && len(arg) != 64) || !upperHex(arg) {
			return errBadRequest("fingerprint %q: use 40 or 64 uppercase hex digits without 0x", arg)
		}
		fpr, _ := hex.DecodeString(arg)
		recs, err = s.store.ByFingerprint(fpr)
	case "by-keyid":
		if len(arg) != 16 || !upperHex(arg) {
			return errBadRequest("key ID %q: use 16 uppercase hex digits without 0x", arg)
		}
		id, _ := strconv.ParseUint(arg, 16, 64)
		recs, err = s.store.ByKeyID(pgpkey.KeyID(id))
	case "by-email":
		addr := projections.Email("<" + arg + ">")
		if addr == "" || !strings.EqualFold(addr, arg) {
			return errBadRequest("%q is not an e-mail address", arg)
		}
		recs, err = s.store.SearchEmail(addr, s.conf().MaxMatches)
		// Mail clients (Thunderbird, OpenKeychain) look up by address
		// and cannot parse v6 keys yet: the v1 rule applies here.
		if err == nil && !s.conf().IndexV6 {
			recs = slicesFilter(recs, func(rec *projections.Record) bool { return rec.SKS })
		}
	}
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return errNotFound("No key found for " + arg)
	}
	keys := make([][]byte, len(recs))
	for i, rec := range recs {
		keys[i] = rec.Key
	}
	w.Header().Set("Content-Type", "application/pgp-keys")
	return writeBody(w, r, pgpkey.AppendArmor(nil, nil, keys...))
}

func upperHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

func slicesFilter[T any](in []T, keep func(T) bool) []T {
	out := in[:0:0]
	for _, v := range in {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}

// VKSUploadResult is the answer to /vks/v1/upload and request-verify.
type VKSUploadResult struct {
	KeyFpr string            `json:"key_fpr"`
	Status map[string]string `json:"status"`
	Token  string            `json:"token"`
}

// vksUpload serves POST /vks/v1/upload: one key, armored or base64, in the
// keytext field of a JSON body. It goes through ingest like /pks/add, so
// the answer comes after the append is durable.
func (s *Server) vksUpload(w http.ResponseWriter, r *http.Request) error {
	body, release, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	if err := wantJSONBody(r); err != nil {
		return err
	}
	var req struct {
		Keytext *string `json:"keytext"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Keytext == nil {
		return errBadRequest(`the body must be a JSON object {"keytext": "<key>"}`)
	}
	keytext := []byte(*req.Keytext)
	if !bytes.Contains(keytext, []byte("-----BEGIN PGP")) {
		// Hagrid takes unarmored keys as plain base64.
		bin, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(*req.Keytext), ""))
		if err != nil {
			return errBadRequest("keytext is neither ASCII armor nor base64: %v", err)
		}
		keytext = bin
	}
	raws, err := pgpkey.Decode(keytext)
	if err != nil || len(raws) == 0 {
		return errBadRequest("no OpenPGP key found in keytext: %v", err)
	}
	if len(raws) != 1 {
		return errBadRequest("keytext holds %d keys; upload one at a time (or use /pks/add)", len(raws))
	}
	res, err := s.ingest(r.Context(), raws, func() { release(); released = true })
	if err != nil {
		return err
	}
	if len(res.Failed) > 0 {
		return &httpError{http.StatusUnprocessableEntity, "Unprocessable", strings.Join(res.Failed, "; ")}
	}
	fpr := append(res.Added, append(res.Updated, res.Unchanged...)...)
	if len(fpr) != 1 {
		return fmt.Errorf("vks upload: %d fingerprints for one key", len(fpr))
	}
	// Durable but not applied within ApplyWait: the key is stored and
	// will be served once the projections catch up.
	s.awaitUploads(r.Context()) // uploads do not wait for the apply (pending.go)
	return s.writeVKSStatus(w, r, fpr[0], &httpError{http.StatusServiceUnavailable, "Service unavailable", "the key is stored but not yet served; ask again shortly"})
}

// vksRequestVerify serves POST /vks/v1/request-verify. Every address of a
// key is already published here, so there is no mail to send: it answers
// the key's status, as Hagrid does after queuing the mails.
func (s *Server) vksRequestVerify(w http.ResponseWriter, r *http.Request) error {
	body, release, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	defer release()
	if err := wantJSONBody(r); err != nil {
		return err
	}
	var req struct {
		Token     string   `json:"token"`
		Addresses []string `json:"addresses"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return errBadRequest(`the body must be a JSON object {"token": "...", "addresses": [...]}`)
	}
	fpr, err := base64.RawURLEncoding.DecodeString(req.Token)
	if err != nil || (len(fpr) != 20 && len(fpr) != 32) {
		return errBadRequest("token %q was not issued by this server", req.Token)
	}
	f, err := pgpkey.FingerprintFromBytes(fpr)
	if err != nil {
		return errBadRequest("token %q was not issued by this server", req.Token)
	}
	return s.writeVKSStatus(w, r, f.String(), errNotFound("no key "+f.String()+" here"))
}

func wantJSONBody(r *http.Request) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/json" {
		return &httpError{http.StatusUnsupportedMediaType, "Unsupported media type", "send the request as application/json"}
	}
	return nil
}

// writeVKSStatus answers with the stored key fpr's addresses. The token
// is the fingerprint, base64url: it grants nothing (request-verify only
// reads public state), so it needs no secret.
// missing is the error when the key is not served.
func (s *Server) writeVKSStatus(w http.ResponseWriter, r *http.Request, fprHex string, missing error) error {
	f, err := pgpkey.ParseFingerprint(fprHex)
	if err != nil {
		return err
	}
	recs, err := s.store.ByFingerprint(f.Bytes())
	if err != nil {
		return err
	}
	var key *pgpkey.Key
	for _, rec := range recs {
		if k, err := projections.ParseEventKey(rec.Key); err == nil && k.Fingerprint() == f {
			key = k
		}
	}
	if key == nil {
		return missing
	}
	out := VKSUploadResult{KeyFpr: f.String(), Status: map[string]string{}, Token: base64.RawURLEncoding.EncodeToString(f.Bytes())}
	for _, u := range key.Summary().UIDs {
		addr := projections.Email(u.Text)
		if u.IsAttribute || addr == "" {
			continue
		}
		if u.Revoked {
			if _, ok := out.Status[addr]; !ok {
				out.Status[addr] = vksRevoked
			}
			continue
		}
		out.Status[addr] = vksPublished
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return writeBody(w, r, append(b, '\n'))
}
