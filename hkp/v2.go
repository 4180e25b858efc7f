package hkp

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/grapevine-keyserver/grapevine/projections"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// HKP v2 (draft-ietf-openpgp-hkp, the successor of draft-gallagher-openpgp-hkp)
// puts the operation and the search in the path:
//
//	GET  /pks/v2/certs/by-vfingerprint/<vfpr>     vfpr = 2 hex digits of version + fingerprint
//	GET  /pks/v2/certs/by-vfingerprint/<v>/<fpr>  the same, as Hockeypuck routes it
//	GET  /pks/v2/certs/by-keyid/<16 hex>          v4 (and older) keys only
//	GET  /pks/v2/certs/by-identity/<identity>     exact address or exact user ID
//	GET  /pks/v2/index/<identity>                 JSON
//	GET  /pks/v2/prefixlog/<YYYY-MM-DD>           8-hex fingerprint prefixes changed that day
//	POST /pks/v2/certs                            binary certificate bundle
//
// Certificates go out unarmored, concatenated, as
// "application/pgp-keys;armor=no", which draft-10 §7.1 requires ("MUST set
// Content-Type: application/pgp-keys;armor=no"; Hockeypuck master sends
// application/pgp, which we still accept on POST: docs/compat.md). Errors are plain text. The common
// headers (CORS, Server, no-cache), rate limits and the body limit are
// those of every other path (ServeHTTP, readBody).

// v2ContentType is the media type of v2 certificate bundles (binary).
const v2ContentType = "application/pgp-keys;armor=no"

// registerAPIs adds the HKP v2 and VKS paths to the mux.
func (s *Server) registerAPIs() {
	s.mux.Handle("/pks/v2/", http.HandlerFunc(s.serveV2))
	s.mux.Handle("/vks/v1/", http.HandlerFunc(s.serveVKS))
}

// v2 lookup categories and their handlers (draft §5.1).
var v2Lookups = map[string]func(*Server, http.ResponseWriter, *http.Request, []string) error{
	"certs/by-vfingerprint": (*Server).v2ByVFingerprint,
	"certs/by-keyid":        (*Server).v2ByKeyID,
	"certs/by-identity":     (*Server).v2ByIdentity,
	"index":                 (*Server).v2Index,
	"prefixlog":             (*Server).v2PrefixLog,
}

// serveV2 routes /pks/v2/<category>/<identifier>. OPTIONS on a category
// answers 200 with Allow (feature detection, draft §5.1.7, §5.2.6); an
// unknown category is 501, a lookup without identifier 403.
func (s *Server) serveV2(w http.ResponseWriter, r *http.Request) {
	segs, err := pathSegments(r, "/pks/v2/")
	if err != nil {
		s.writeAPIError(w, r, err, false)
		return
	}
	var category string
	var ident []string
	switch {
	case len(segs) >= 1 && segs[0] == "certs" && (len(segs) == 1 || len(segs) == 2 && segs[1] == ""):
		category = "certs"
	case len(segs) >= 2 && segs[0] == "certs":
		category, ident = "certs/"+segs[1], segs[2:]
	case len(segs) >= 1:
		category, ident = segs[0], segs[1:]
	}
	if category == "certs" {
		s.serveAPI(w, r, false, s.v2Submit, "POST")
		return
	}
	fn, ok := v2Lookups[category]
	if !ok {
		s.writeAPIError(w, r, &httpError{http.StatusNotImplemented, "Not implemented",
			fmt.Sprintf("HKP v2 category %q is not supported here", category)}, false)
		return
	}
	if len(ident) == 1 && ident[0] == "" {
		ident = nil
	}
	s.serveAPI(w, r, false, func(w http.ResponseWriter, r *http.Request) error {
		if len(ident) == 0 {
			return &httpError{http.StatusForbidden, "Forbidden", "HKP v2 " + category + " needs an identifier after the category"}
		}
		return fn(s, w, r, ident)
	}, "GET", "HEAD")
}

// pathSegments splits the escaped path after prefix into unescaped
// segments, so that an escaped '/' inside an identity stays in its segment.
func pathSegments(r *http.Request, prefix string) ([]string, error) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), prefix)
	if !ok {
		return nil, errNotFound("no such path")
	}
	parts := strings.Split(rest, "/")
	for i, p := range parts {
		u, err := url.PathUnescape(p)
		if err != nil {
			return nil, errBadRequest("path segment %q: %v", p, err)
		}
		parts[i] = u
	}
	return parts, nil
}

// serveAPI is handle for the v2 and VKS paths: OPTIONS answers 200 with
// Allow (the v2 draft asks for 200, not 204), other methods than the
// listed ones get 405, and errors are plain text or, for VKS POSTs, JSON
// ({"error": "..."}, as keys.openpgp.org documents).
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, jsonErrors bool, fn func(http.ResponseWriter, *http.Request) error, methods ...string) {
	allow := strings.Join(append(methods, "OPTIONS"), ", ")
	if r.Method == http.MethodOptions {
		h := w.Header()
		h.Set("Allow", allow)
		h.Set("Access-Control-Allow-Methods", allow)
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
		for _, m := range methods {
			if m == http.MethodPost {
				h.Set("Accept", acceptedUploadTypes(r.URL.Path))
			}
		}
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return
	}
	ok := false
	for _, m := range methods {
		ok = ok || r.Method == m
	}
	if !ok {
		w.Header().Set("Allow", allow)
		s.writeAPIError(w, r, &httpError{http.StatusMethodNotAllowed, "Method not allowed", r.Method + " is not supported here; use " + allow}, jsonErrors)
		return
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		s.awaitUploads(r.Context()) // read-your-writes (pending.go)
	}
	if err := fn(w, r); err != nil {
		s.writeAPIError(w, r, err, jsonErrors)
	}
}

func acceptedUploadTypes(path string) string {
	if strings.HasPrefix(path, "/vks/") {
		return "application/json"
	}
	return "application/pgp-keys;armor=no, application/pgp-keys, application/pgp, multipart/form-data"
}

// writeAPIError maps an error to a status, as writeError does for v1, with
// a plain-text or JSON body instead of SKS's HTML page.
func (s *Server) writeAPIError(w http.ResponseWriter, r *http.Request, err error, jsonBody bool) {
	var he *httpError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
	case errors.As(err, &mbe):
		he = &httpError{http.StatusRequestEntityTooLarge, "Request Entity Too Large", fmt.Sprintf("request body larger than %d bytes", mbe.Limit)}
		w.Header().Set("Connection", "close")
	case errors.Is(err, projections.ErrTooManyResponses), errors.Is(err, projections.ErrInsufficientlySpecific):
		he = &httpError{http.StatusInternalServerError, "Error handling request", err.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		he = &httpError{http.StatusServiceUnavailable, "Service unavailable", "the request could not be completed in time; try again"}
	default:
		s.log.Error().Err(err).Str("path", r.URL.Path).Msg("request failed")
		he = &httpError{http.StatusInternalServerError, "Error handling request", "internal error"}
	}
	var body []byte
	if jsonBody {
		body, _ = json.Marshal(struct {
			Error string `json:"error"`
		}{he.message})
		body = append(body, '\n')
		w.Header().Set("Content-Type", "application/json")
	} else {
		body = []byte(he.message + "\n")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(he.code)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// v2ByVFingerprint serves certs/by-vfingerprint. The identifier is a
// versioned fingerprint: one octet of key version then the fingerprint, in
// hex without 0x, any case (draft §5.1.2), e.g. 04 + 40 hex digits. The
// form <version>/<fingerprint> that Hockeypuck routes is accepted too. The
// key (primary or subkey) with that fingerprint must have that version.
func (s *Server) v2ByVFingerprint(w http.ResponseWriter, r *http.Request, ident []string) error {
	version, fpr, err := parseVFingerprint(ident)
	if err != nil {
		return err
	}
	recs, err := s.store.ByFingerprint(fpr)
	if err != nil {
		return err
	}
	var out []*projections.Record
	for _, rec := range recs {
		if k, err := projections.ParseEventKey(rec.Key); err == nil && keyVersionOf(k, fpr) == version {
			out = append(out, rec)
		}
	}
	return s.writeBundle(w, r, out)
}

// parseVFingerprint parses "VVFFFF…" or "V", "FFFF…".
func parseVFingerprint(ident []string) (version int, fpr []byte, err error) {
	var vs, fs string
	switch len(ident) {
	case 1:
		if len(ident[0]) < 2 {
			return 0, nil, errBadRequest("versioned fingerprint %q is too short", ident[0])
		}
		vs, fs = ident[0][:2], ident[0][2:]
	case 2:
		vs, fs = ident[0], ident[1]
	default:
		return 0, nil, errBadRequest("by-vfingerprint takes one versioned fingerprint")
	}
	v, err := strconv.ParseUint(vs, 16, 8)
	if err != nil || len(vs) > 2 {
		return 0, nil, errBadRequest("key version %q is not one hex octet", vs)
	}
	if !allHex(fs) {
		return 0, nil, errBadRequest("fingerprint %q is not hexadecimal (no 0x prefix)", fs)
	}
	fpr, _ = hex.DecodeString(fs)
	switch {
	case v == 4 && len(fpr) == 20, (v == 5 || v == 6) && len(fpr) == 32:
		return int(v), fpr, nil
	case v == 4 || v == 5 || v == 6:
		return 0, nil, errBadRequest("a v%d fingerprint has %d hex digits, not %d", v, map[uint64]int{4: 40, 5: 64, 6: 64}[v], len(fs))
	}
	return 0, nil, errBadRequest("key version %d has no fingerprint lookup (4, 5 or 6)", v)
}

func allHex(s string) bool {
	if s == "" || len(s)%2 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// keyVersionOf returns the version of the primary key or subkey of k whose
// fingerprint is fpr, or 0 if none has it.
func keyVersionOf(k *pgpkey.Key, fpr []byte) int {
	if bytes.Equal(k.Fingerprint().Bytes(), fpr) {
		return k.Version()
	}
	for _, g := range k.Subkeys {
		sub := &pgpkey.Key{Primary: g.Packet}
		if bytes.Equal(sub.Fingerprint().Bytes(), fpr) {
			return sub.Version()
		}
	}
	return 0
}

// v2ByKeyID serves certs/by-keyid: 16 hex digits without 0x, any case.
// Keys newer than v4 are never returned (draft §5.1.3: "certificates with
// versions greater than 4 MUST NOT be returned"; a v6 key is looked up by
// its fingerprint).
func (s *Server) v2ByKeyID(w http.ResponseWriter, r *http.Request, ident []string) error {
	if len(ident) != 1 || len(ident[0]) != 16 || !allHex(ident[0]) {
		return errBadRequest("by-keyid takes a key ID of 16 hex digits without 0x, not %q", strings.Join(ident, "/"))
	}
	id, _ := strconv.ParseUint(ident[0], 16, 64)
	recs, err := s.store.ByKeyID(pgpkey.KeyID(id))
	if err != nil {
		return err
	}
	out := recs[:0:0]
	for _, rec := range recs {
		if rec.SKS { // v2–v4
			out = append(out, rec)
		}
	}
	return s.writeBundle(w, r, out)
}

// v2ByIdentity serves certs/by-identity.
func (s *Server) v2ByIdentity(w http.ResponseWriter, r *http.Request, ident []string) error {
	recs, err := s.byIdentity(strings.Join(ident, "/"))
	if err != nil {
		return err
	}
	return s.writeBundle(w, r, recs)
}

// byIdentity finds the keys an identity names exactly (draft §5.1.9): an
// e-mail address (bare or in angle brackets) matches the address of a user
// ID; anything else must equal a whole user ID. Both ignore case. Keys of
// every version are returned: v2 clients can take them.
func (s *Server) byIdentity(identity string) ([]*projections.Record, error) {
	id := strings.TrimSpace(identity)
	if id == "" {
		return nil, errBadRequest("empty identity")
	}
	if len(id) > 1024 {
		return nil, errBadRequest("identity longer than 1024 bytes")
	}
	bare := strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	if addr := projections.Email("<" + bare + ">"); addr != "" && strings.EqualFold(addr, bare) {
		return s.store.SearchEmail(addr, s.conf().MaxMatches)
	}
	words := projections.Words(id)
	if len(words) == 0 {
		return nil, nil
	}
	recs, err := s.store.SearchWords(words, projections.SearchLimits{MaxMatches: s.conf().MaxMatches, MaxInternalMatches: s.conf().MaxInternalMatches})
	if err != nil {
		return nil, err
	}
	out := recs[:0:0]
	for _, rec := range recs {
		k, err := projections.ParseEventKey(rec.Key)
		if err != nil {
			continue
		}
		for _, u := range k.UserIDs() {
			if strings.EqualFold(u, id) {
				out = append(out, rec)
				break
			}
		}
	}
	return out, nil
}

// writeBundle answers a v2 certs lookup: the stored keys, unarmored and
// concatenated (a certificate bundle), or 404.
func (s *Server) writeBundle(w http.ResponseWriter, r *http.Request, recs []*projections.Record) error {
	if len(recs) == 0 {
		return &httpError{http.StatusNotFound, "Not found", "No keys found"}
	}
	n := 0
	for _, rec := range recs {
		n += len(rec.Key)
	}
	body := make([]byte, 0, n)
	for _, rec := range recs {
		body = append(body, rec.Key...)
	}
	w.Header().Set("Content-Type", v2ContentType)
	w.Header().Set("X-HKP-Results-Count", strconv.Itoa(len(recs)))
	return writeBody(w, r, body)
}

// v2Index serves index/<identity>: the keys by-identity would return, as a
// JSON array (v2IndexCert).
func (s *Server) v2Index(w http.ResponseWriter, r *http.Request, ident []string) error {
	recs, err := s.byIdentity(strings.Join(ident, "/"))
	if err != nil {
		return err
	}
	keys := s.parseRecords(recs)
	if len(keys) == 0 {
		return &httpError{http.StatusNotFound, "Not found", "No keys found"}
	}
	s.summaries.fill(keys)
	defer s.summaries.keep(keys)
	body, err := MarshalV2Index(keys)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-HKP-Results-Count", strconv.Itoa(len(keys)))
	return writeBody(w, r, body)
}

// V2SubmissionResult is the JSON answer to POST /pks/v2/certs, in the
// shape of Hockeypuck master's SubmissionResponse: every list is present,
// each certificate named by version and lowercase fingerprint, with a
// comment where it was not taken.
type V2SubmissionResult struct {
	Inserted []V2CertRef `json:"inserted"`
	Updated  []V2CertRef `json:"updated"`
	Deleted  []V2CertRef `json:"deleted"`
	Ignored  []V2CertRef `json:"ignored"`
	Invalid  []V2CertRef `json:"invalid"`
}

// V2CertRef names one certificate of a submission.
type V2CertRef struct {
	Version     int    `json:"version,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Comment     string `json:"comment,omitempty"`
}

// v2Submit serves POST /pks/v2/certs (draft §5.2.4, §5.2.5): a binary
// certificate bundle as the body (application/pgp or application/pgp-keys;
// armor is tolerated), or multipart/form-data with a keytext part. It goes
// through ingest, the path /pks/add uses, so the answer comes only after
// the append is durable. A body with no usable key is 422.
func (s *Server) v2Submit(w http.ResponseWriter, r *http.Request) error {
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
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	bundle := body
	switch mt {
	case "", "application/pgp", "application/pgp-keys", "application/octet-stream":
	case "multipart/form-data":
		if bundle, _, err = keytextOf(r, body); err != nil {
			msg := err.Error()
			var he *httpError
			if errors.As(err, &he) {
				msg = he.message
			}
			return &httpError{http.StatusUnprocessableEntity, "Unprocessable", msg}
		}
	default:
		return &httpError{http.StatusUnsupportedMediaType, "Unsupported media type",
			"send the certificates as application/pgp (binary) or multipart/form-data with a keytext part, not " + mt}
	}
	raws, err := pgpkey.Decode(bundle)
	if err != nil || len(raws) == 0 {
		return &httpError{http.StatusUnprocessableEntity, "Unprocessable", fmt.Sprintf("no OpenPGP certificate found: %v", err)}
	}
	versions := make(map[string]int, len(raws))
	for _, raw := range raws {
		if len(raw.Packets) > 0 && raw.Packets[0].Tag == pgpkey.TagPublicKey {
			k := &pgpkey.Key{Primary: raw.Packets[0]}
			versions[k.Fingerprint().String()] = k.Version()
		}
	}
	res, err := s.ingest(r.Context(), raws, func() { release(); released = true })
	if err != nil {
		return err
	}
	out := V2SubmissionResult{Inserted: []V2CertRef{}, Updated: []V2CertRef{}, Deleted: []V2CertRef{}, Ignored: []V2CertRef{}, Invalid: []V2CertRef{}}
	ref := func(fpr, comment string) V2CertRef {
		return V2CertRef{Version: versions[fpr], Fingerprint: strings.ToLower(fpr), Comment: comment}
	}
	for _, f := range res.Added {
		out.Inserted = append(out.Inserted, ref(f, ""))
	}
	for _, f := range res.Updated {
		out.Updated = append(out.Updated, ref(f, ""))
	}
	for _, f := range res.Unchanged {
		out.Ignored = append(out.Ignored, ref(f, "no new information"))
	}
	for _, msg := range res.Failed {
		out.Invalid = append(out.Invalid, V2CertRef{Comment: msg})
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return writeBody(w, r, append(b, '\n'))
}
