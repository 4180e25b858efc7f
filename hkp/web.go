package hkp

import (
	"net/http"
)

// web serves the search and upload page at / (and /index.html); every
// other path is 404, as on SKS when the web directory lacks the file.
func (s *Server) web(w http.ResponseWriter, r *http.Request) error {
	switch r.URL.Path {
	case "/", "/index.html", "/index.htm":
	default:
		return &httpError{http.StatusNotFound, "Page not found", r.URL.Path}
	}
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	return writeBody(w, r, []byte(homePage))
}

// homePage is a plain form page: it works without JavaScript, and every
// link it leads to is an ordinary HKP URL a person can bookmark.
const homePage = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OpenPGP Keyserver</title>
<style>
body { font-family: sans-serif; max-width: 48em; margin: 2em auto; padding: 0 1em; line-height: 1.4; }
fieldset { margin-bottom: 1.5em; }
input[type=text] { width: 100%; box-sizing: border-box; padding: .4em; }
textarea { width: 100%; box-sizing: border-box; font-family: monospace; }
label { display: block; margin: .3em 0; }
</style>
</head>
<body>
<h1>OpenPGP Keyserver</h1>
<p>Keys are not verified: anyone can upload a key with any name. Check fingerprints with their owners.</p>
<form id="search" action="/pks/lookup" method="get">
<fieldset>
<legend>Search for a key</legend>
<label for="search-text">Name, e-mail address, key ID (0x…) or fingerprint</label>
<input type="text" id="search-text" name="search" required autofocus>
<input type="hidden" name="fingerprint" value="on">
<label><input type="radio" name="op" value="index" checked> Index</label>
<label><input type="radio" name="op" value="vindex"> Verbose index (signatures)</label>
<label><input type="radio" name="op" value="get"> Get the key</label>
<button type="submit" id="search-button">Search</button>
</fieldset>
</form>
<form id="upload" action="/pks/add" method="post">
<fieldset>
<legend>Submit a key</legend>
<label for="keytext">ASCII-armored public key (gpg --armor --export KEYID)</label>
<textarea id="keytext" name="keytext" rows="12" required></textarea>
<button type="submit" id="upload-button">Submit</button>
</fieldset>
</form>
<p><a href="/pks/lookup?op=stats">Server statistics</a></p>
</body>
</html>
`
