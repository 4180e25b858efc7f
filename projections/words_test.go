package projections_test

import (
	"reflect"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections"
)

func TestWords(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"Alice Example <alice@example.org>", []string{"alice", "example", "org"}},
		{"foo+bar@x.org", []string{"foo", "bar", "x", "org"}},
		{"Jürgen Müller (Test) <jm@ex.de>", []string{"jürgen", "müller", "test", "jm", "ex", "de"}},
		{"ÉLODIE", []string{"élodie"}},
		{"a\xffb", []string{"a", "b"}},
		{"", nil},
		{"--- <> ---", nil},
	}
	for _, c := range cases {
		if got := projections.Words(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Words(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestEmail(t *testing.T) {
	cases := map[string]string{
		"Alice <Alice@Example.ORG>": "alice@example.org",
		"bob@example.org":           "bob@example.org",
		"No Address":                "",
		"Bad <not an address>":      "",
		"x <a@b> y":                 "a@b",
		"<@b>":                      "",
	}
	for in, want := range cases {
		if got := projections.Email(in); got != want {
			t.Errorf("Email(%q) = %q, want %q", in, got, want)
		}
	}
}
