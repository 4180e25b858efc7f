package wire_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/grapevine-keyserver/grapevine/recon/wire"
)

// remoteConfig returns the ConfigMsg of DefaultConfig with some values
// replaced (set) or removed (value "<none>").
func remoteConfig(tb testing.TB, set map[string]string) *wire.ConfigMsg {
	tb.Helper()
	m, err := wire.DefaultConfig().Message()
	if err != nil {
		tb.Fatal(err)
	}
	var pairs []wire.ConfigPair
	for _, p := range m.Pairs {
		if v, ok := set[p.Key]; ok {
			if v == "<none>" {
				continue
			}
			p.Value = v
		}
		pairs = append(pairs, p)
	}
	for k, v := range set {
		if _, ok := m.Get(k); !ok && v != "<none>" {
			pairs = append(pairs, wire.ConfigPair{Key: k, Value: v})
		}
	}
	return &wire.ConfigMsg{Pairs: pairs}
}

const (
	bq3   = "\x00\x00\x00\x03"
	mbar6 = "\x00\x00\x00\x06"
)

// TestCheck pins SKS 1.1.6's test_configdata (reconCS.ml): the order of the
// rules and the exact reason texts.
func TestCheck(t *testing.T) {
	const (
		missing  = "Missing entry in configdata"
		badInt   = `Error parsing configdata: Failure("int_of_string")`
		badIndex = `Error parsing configdata: Invalid_argument("index out of bounds")`
	)
	for _, tc := range []struct {
		name   string
		local  string // local filters; default if ""
		remote map[string]string
		want   string // "" = passed
	}{
		{"defaults", "", nil, ""},
		{"unknown keys ignored", "", map[string]string{"custom": "x"}, ""},
		{"http port not checked", "", map[string]string{wire.KeyHTTPPort: "<none>"}, ""},

		{"version missing", "", map[string]string{wire.KeyVersion: "<none>"}, missing},
		{"version 0.1.5", "", map[string]string{wire.KeyVersion: "0.1.5"}, ""},
		{"version 0.1.4", "", map[string]string{wire.KeyVersion: "0.1.4"}, "Requires version at least 0.1.5.  0.1.4 provided "},
		{"version 0.0.99", "", map[string]string{wire.KeyVersion: "0.0.99"}, "Requires version at least 0.1.5.  0.0.99 provided "},
		{"version -1.9.9", "", map[string]string{wire.KeyVersion: "-1.9.9"}, "Requires version at least 0.1.5.  -1.9.9 provided "},
		{"version 2.0.0", "", map[string]string{wire.KeyVersion: "2.0.0"}, ""},
		{"version with + suffix", "", map[string]string{wire.KeyVersion: "1.1.6+"}, badInt},
		{"version with space", "", map[string]string{wire.KeyVersion: "1.1.6 "}, badInt},
		{"version four fields", "", map[string]string{wire.KeyVersion: "1.1.6.1"}, badInt},
		{"version two fields", "", map[string]string{wire.KeyVersion: "1.1"}, badIndex},
		{"version bad first and missing third", "", map[string]string{wire.KeyVersion: "x.1"}, badIndex},
		{"version empty", "", map[string]string{wire.KeyVersion: ""}, badIndex},
		{"version empty field", "", map[string]string{wire.KeyVersion: "1..6"}, badInt},
		// OCaml's Str.split drops one leading delimiter, and int_of_string
		// takes underscores and base prefixes.
		{"version leading dot", "", map[string]string{wire.KeyVersion: ".1.1.6"}, ""},
		{"version underscores", "", map[string]string{wire.KeyVersion: "1_0.1.6"}, ""},
		{"version hex", "", map[string]string{wire.KeyVersion: "0x1.0.0"}, ""},
		{"version before filters", "", map[string]string{wire.KeyVersion: "0.1.0", wire.KeyFilters: "x"}, "Requires version at least 0.1.5.  0.1.0 provided "},

		{"filters missing", "", map[string]string{wire.KeyFilters: "<none>"}, missing},
		{"filters reordered", "", map[string]string{wire.KeyFilters: "yminsky.merge,yminsky.dedup"}, ""},
		{"filters duplicated", "", map[string]string{wire.KeyFilters: "yminsky.merge,yminsky.dedup,yminsky.merge"}, ""},
		{"filters leading and trailing comma", "", map[string]string{wire.KeyFilters: ",yminsky.dedup,yminsky.merge,"}, ""},
		{"filters subset", "", map[string]string{wire.KeyFilters: "yminsky.dedup"},
			"filters do not match.\n\tlocal filters: [ yminsky.dedup yminsky.merge ]\n\tremote filters: [ yminsky.dedup ]"},
		{"filters empty", "", map[string]string{wire.KeyFilters: ""},
			"filters do not match.\n\tlocal filters: [ yminsky.dedup yminsky.merge ]\n\tremote filters: [ ]"},
		{"filters inner empty field kept", "a,b", map[string]string{wire.KeyFilters: "a,,b"},
			"filters do not match.\n\tlocal filters: [ a b ]\n\tremote filters: [ a  b ]"},
		{"filters hockeypuck 2.4", "", map[string]string{wire.KeyFilters: "drop:UAT,drop:hardRevokedCruft,drop:implausible,drop:invalidSelfSig,drop:oldSlhdsaSelfSig,drop:structuralMartian,drop:unbound,drop:unparseable,schema:application/pgp-keys,versions:3+4+6+rfc9980,yminsky.dedup,yminsky.merge"},
			"filters do not match.\n\tlocal filters: [ yminsky.dedup yminsky.merge ]\n\tremote filters: [ drop:UAT drop:hardRevokedCruft drop:implausible drop:invalidSelfSig drop:oldSlhdsaSelfSig drop:structuralMartian drop:unbound drop:unparseable schema:application/pgp-keys versions:3+4+6+rfc9980 yminsky.dedup yminsky.merge ]"},
		{"filters before mbar", "", map[string]string{wire.KeyFilters: "x", wire.KeyMBar: mbar6},
			"filters do not match.\n\tlocal filters: [ yminsky.dedup yminsky.merge ]\n\tremote filters: [ x ]"},

		{"bitquantum differs", "", map[string]string{wire.KeyBitQuantum: bq3}, "bitquantum values do not match"},
		{"mbar differs", "", map[string]string{wire.KeyMBar: mbar6}, "mbar values do not match"},
		{"bitquantum reported before mbar", "", map[string]string{wire.KeyBitQuantum: bq3, wire.KeyMBar: mbar6}, "bitquantum values do not match"},
		{"mbar missing beats bitquantum mismatch", "", map[string]string{wire.KeyBitQuantum: bq3, wire.KeyMBar: "<none>"}, missing},
		{"bitquantum missing", "", map[string]string{wire.KeyBitQuantum: "<none>"}, missing},
		{"mbar short", "", map[string]string{wire.KeyMBar: "\x00\x05"}, "Error parsing configdata: End_of_file"},
		{"mbar short beats bitquantum mismatch", "", map[string]string{wire.KeyBitQuantum: bq3, wire.KeyMBar: "5"}, "Error parsing configdata: End_of_file"},
		{"bitquantum long: first 4 bytes count", "", map[string]string{wire.KeyBitQuantum: "\x00\x00\x00\x02\xff"}, ""},
		{"mbar as text", "", map[string]string{wire.KeyMBar: "0005"}, "mbar values do not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local := wire.DefaultConfig()
			if tc.local != "" {
				local.Filters = tc.local
			}
			got := local.Check(remoteConfig(t, tc.remote))
			want := wire.Verdict{Passed: tc.want == "", Reason: tc.want}
			if got != want {
				t.Errorf("Check:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestCheckLastDuplicateWins(t *testing.T) {
	m := remoteConfig(t, nil)
	m.Pairs = append(m.Pairs, wire.ConfigPair{Key: wire.KeyMBar, Value: mbar6})
	if got := wire.DefaultConfig().Check(m); got.Reason != "mbar values do not match" {
		t.Errorf("Check = %+v, want the later mbar to count", got)
	}
}

func TestSplitFilters(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{",", nil},
		{"a", []string{"a"}},
		{"a,b", []string{"a", "b"}},
		{",a,b,", []string{"a", "b"}},
		{"a,,b", []string{"a", "", "b"}},
		{",,a", []string{"", "a"}},
		{"a,,", []string{"a", ""}},
	} {
		if got := wire.SplitFilters(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SplitFilters(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestConfigMessageOrder(t *testing.T) {
	c := wire.DefaultConfig()
	c.Extra = []wire.ConfigPair{{"zzz", "1"}, {"aaa", "2"}, {"http", "3"}}
	m, err := c.Message()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, p := range m.Pairs {
		keys = append(keys, p.Key)
	}
	if want := []string{"aaa", "bitquantum", "filters", "http", "http port", "mbar", "version", "zzz"}; !slices.Equal(keys, want) {
		t.Errorf("keys %q, want %q", keys, want)
	}
	back, err := wire.ParseConfig(m)
	if err != nil {
		t.Fatal(err)
	}
	want := c
	want.Extra = []wire.ConfigPair{{"aaa", "2"}, {"http", "3"}, {"zzz", "1"}} // wire order
	if !reflect.DeepEqual(back, want) {
		t.Errorf("ParseConfig(Message()) = %+v, want %+v", back, want)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*wire.Config)
		field string
	}{
		{"version", func(c *wire.Config) { c.Version = "" }, "Version"},
		{"port 0", func(c *wire.Config) { c.HTTPPort = 0 }, "HTTPPort"},
		{"port 65536", func(c *wire.Config) { c.HTTPPort = 65536 }, "HTTPPort"},
		{"bitquantum", func(c *wire.Config) { c.BitQuantum = 0 }, "BitQuantum"},
		{"mbar", func(c *wire.Config) { c.MBar = -5 }, "MBar"},
		{"mbar too big", func(c *wire.Config) { c.MBar = 1 << 32 }, "MBar"},
		{"extra standard key", func(c *wire.Config) { c.Extra = []wire.ConfigPair{{wire.KeyMBar, "x"}} }, "Extra"},
		{"extra duplicate", func(c *wire.Config) { c.Extra = []wire.ConfigPair{{"a", "x"}, {"a", "y"}} }, "Extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := wire.DefaultConfig()
			tc.edit(&c)
			_, err := c.Message()
			var ve *wire.ConfigValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field || !errors.Is(err, wire.ErrInvalidMessage) {
				t.Errorf("Message() error = %v, want a ConfigValidationError for %s", err, tc.field)
			}
		})
	}
	if err := wire.DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  map[string]string
	}{
		{"no http port", map[string]string{wire.KeyHTTPPort: "<none>"}},
		{"no version", map[string]string{wire.KeyVersion: "<none>"}},
		{"no filters", map[string]string{wire.KeyFilters: "<none>"}},
		{"short mbar", map[string]string{wire.KeyMBar: "\x05"}},
		{"short http port", map[string]string{wire.KeyHTTPPort: ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := wire.ParseConfig(remoteConfig(t, tc.set)); !errors.Is(err, wire.ErrMalformed) {
				t.Errorf("ParseConfig error = %v, want ErrMalformed", err)
			}
		})
	}
	// SKS reads the first 4 bytes; so do we.
	c, err := wire.ParseConfig(remoteConfig(t, map[string]string{wire.KeyHTTPPort: "\x00\x00\x2c\x6b\x99"}))
	if err != nil || c.HTTPPort != 11371 {
		t.Errorf("ParseConfig with a 5-byte port = %d, %v", c.HTTPPort, err)
	}
}
