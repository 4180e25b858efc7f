package hkp

import (
	"math/rand/v2"
	"testing"
)

// TestUnescapeBytes: the upload path's form decoding answers what
// unescape (the query path's) answers, on fixed cases and on random
// strings over the characters that matter.
func TestUnescapeBytes(t *testing.T) {
	cases := map[string]string{
		"":                      "",
		"abc":                   "abc",
		"a+b":                   "a b",
		"%41%2b%2F%3d":          "A+/=",
		"%0A%0d":                "\n\r",
		"100%":                  "100%",
		"%4":                    "%4",
		"%zz%4g":                "%zz%4g",
		"==unencoded=equals==":  "==unencoded=equals==",
		"%%41":                  "%A",
		"mQINBF%2Bx%2F%3D%3D+x": "mQINBF+x/== x",
	}
	for in, want := range cases {
		if got := string(unescapeBytes([]byte(in))); got != want {
			t.Errorf("unescapeBytes(%q) = %q, want %q", in, got, want)
		}
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
	const alphabet = "%+=aF0g9\n"
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		if got, want := string(unescapeBytes(b)), unescape(string(b)); got != want {
			t.Fatalf("unescapeBytes(%q) = %q, unescape gives %q", b, got, want)
		}
	}
}
