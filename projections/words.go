package projections

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what one user ID contributes to the search index, so that a
// hostile user ID cannot blow the index up. SKS had none.
const (
	maxWordBytes   = 64  // longer runs are indexed by their first 64 bytes
	maxWordsPerUID = 128 // further words of one user ID are not indexed
)

// Words splits a user ID (or a query) into lower-case search words.
//
// SKS splits on bytes (hkp.md §4.2): a word is a run of ASCII letters, digits
// and bytes 0xC0-0xFF, which cuts UTF-8 names in odd places. The index is
// private to each server, so grapevine uses Unicode instead: a word is a
// maximal run of letters and digits, lower-cased with Unicode rules. Queries
// go through the same function, so "alice@example.org" means the words alice,
// example and org, exactly as on SKS for ASCII text. Invalid UTF-8 separates
// words.
func Words(s string) []string {
	var words []string
	seen := make(map[string]bool)
	start := -1
	flush := func(end int) {
		if start < 0 {
			return
		}
		w := strings.ToLower(s[start:end])
		if len(w) > maxWordBytes {
			w = truncateUTF8(w, maxWordBytes)
		}
		if !seen[w] && len(words) < maxWordsPerUID {
			seen[w] = true
			words = append(words, w)
		}
		start = -1
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		word := (r != utf8.RuneError || size > 1) && (unicode.IsLetter(r) || unicode.IsDigit(r))
		if word && start < 0 {
			start = i
		} else if !word {
			flush(i)
		}
		i += size
	}
	flush(len(s))
	return words
}

func truncateUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Email returns the lower-cased e-mail address of a user ID: the text inside
// the last <...> if it holds an @, else the whole user ID if it looks like a
// bare address. It returns "" when there is none.
func Email(uid string) string {
	if i := strings.LastIndexByte(uid, '<'); i >= 0 {
		if j := strings.IndexByte(uid[i:], '>'); j > 0 {
			a := uid[i+1 : i+j]
			if validAddress(a) {
				return strings.ToLower(a)
			}
		}
		return ""
	}
	a := strings.TrimSpace(uid)
	if validAddress(a) {
		return strings.ToLower(a)
	}
	return ""
}

func validAddress(a string) bool {
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 || len(a) > 254 {
		return false
	}
	return !strings.ContainsAny(a, " \t\r\n<>\x00")
}
