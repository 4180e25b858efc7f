package wire

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Config keys, exactly as SKS sends them (spec recon.md §4.1).
const (
	KeyBitQuantum = "bitquantum"
	KeyFilters    = "filters"
	KeyHTTPPort   = "http port"
	KeyMBar       = "mbar"
	KeyVersion    = "version"
)

// SKS defaults (spec recon.md quick reference, §4.3).
const (
	// Version is the version string we send. Hockeypuck >= 2.2 accepts
	// only exactly "1.1.6"; SKS anything >= 0.1.5.
	Version = "1.1.6"
	// DefaultFilters is what SKS built with cleandb and Hockeypuck <= 2.1
	// send and expect.
	DefaultFilters = "yminsky.dedup,yminsky.merge"
	// DefaultBitQuantum and DefaultMBar are SKS's settings.ml values.
	DefaultBitQuantum = 2
	DefaultMBar       = 5
	// DefaultHTTPPort is the HKP port, recon port + 1.
	DefaultHTTPPort = 11371
)

// compatibleVersion is SKS's compatible_version_tuple (common.ml).
var compatibleVersion = [3]int64{0, 1, 5}

const compatibleVersionString = "0.1.5"

// Verdict strings of the Config handshake (SKS reconCS.ml handle_config).
const (
	verdictPassed = "passed"
	verdictFailed = "failed"
)

// Verdict is the outcome of the Config handshake as sent on the wire: the
// bare string "passed", or "failed" plus a reason string.
type Verdict struct {
	Passed bool
	// Reason says why the config was rejected; empty when Passed.
	Reason string
}

// Err returns nil for a passed verdict and a *RejectError otherwise.
func (v Verdict) Err() error {
	if v.Passed {
		return nil
	}
	return &RejectError{Reason: v.Reason}
}

// Config is the typed view of a ConfigMsg: the session parameters one side
// announces (spec recon.md §4.1).
//
// The zero value is not useful; start from DefaultConfig.
type Config struct {
	// Version is sent as text. Use Version ("1.1.6").
	Version string
	// HTTPPort is the HKP port the peer fetches missing keys from
	// (spec recon.md §11.1), sent as 4-byte big-endian binary.
	HTTPPort int
	// BitQuantum and MBar are the ptree parameters, sent as 4-byte
	// big-endian binary. Both peers must use the same values.
	BitQuantum int
	MBar       int
	// Filters is the comma-separated filter list, sent as is. SKS
	// compares it as a set; Hockeypuck >= 2.2 byte for byte, which is why
	// the session may pick it per peer (spec recon.md §4.3).
	Filters string
	// Extra holds any other pairs: sent in key order with the standard
	// ones, and filled by ParseConfig with the unknown keys received
	// (conflux's "Custom" values). Keys must be unique and must not be
	// one of the five standard keys.
	Extra []ConfigPair
}

// DefaultConfig returns SKS 1.1.6's settings: version 1.1.6, HTTP port
// 11371, bitquantum 2, mbar 5, filters "yminsky.dedup,yminsky.merge".
func DefaultConfig() Config {
	return Config{
		Version:    Version,
		HTTPPort:   DefaultHTTPPort,
		BitQuantum: DefaultBitQuantum,
		MBar:       DefaultMBar,
		Filters:    DefaultFilters,
	}
}

// ConfigValidationError names the Config field that has no wire form.
type ConfigValidationError struct {
	Field  string
	Value  any
	Reason string
}

func (e *ConfigValidationError) Error() string {
	return fmt.Sprintf("recon/wire: config %s %v: %s", e.Field, e.Value, e.Reason)
}

func (e *ConfigValidationError) Unwrap() error { return ErrInvalidMessage }

// Validate reports whether c can be sent: HTTPPort in 1..65535, BitQuantum
// and MBar in 1..2^32-1, Version non-empty, Extra keys unique and not
// standard ones.
func (c Config) Validate() error {
	switch {
	case c.Version == "":
		return &ConfigValidationError{Field: "Version", Value: `""`, Reason: "empty"}
	case c.HTTPPort < 1 || c.HTTPPort > 65535:
		return &ConfigValidationError{Field: "HTTPPort", Value: c.HTTPPort, Reason: "not a TCP port"}
	case c.BitQuantum < 1 || uint64(c.BitQuantum) > math.MaxUint32:
		return &ConfigValidationError{Field: "BitQuantum", Value: c.BitQuantum, Reason: "out of range"}
	case c.MBar < 1 || uint64(c.MBar) > math.MaxUint32:
		return &ConfigValidationError{Field: "MBar", Value: c.MBar, Reason: "out of range"}
	}
	seen := make(map[string]bool, len(c.Extra))
	for _, p := range c.Extra {
		switch p.Key {
		case KeyBitQuantum, KeyFilters, KeyHTTPPort, KeyMBar, KeyVersion:
			return &ConfigValidationError{Field: "Extra", Value: fmt.Sprintf("%q", p.Key), Reason: "is a standard key"}
		}
		if seen[p.Key] {
			return &ConfigValidationError{Field: "Extra", Value: fmt.Sprintf("%q", p.Key), Reason: "duplicate key"}
		}
		seen[p.Key] = true
	}
	return nil
}

// Message returns the ConfigMsg for c with the pairs sorted by key, bytewise,
// as SKS sends them (its config map is an AVL tree and to_alist walks it in
// order): bitquantum, filters, http port, mbar, version, with Extra keys in
// their sorted places. It returns Validate's error if c has no wire form.
func (c Config) Message() (*ConfigMsg, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	pairs := make([]ConfigPair, 0, 5+len(c.Extra))
	pairs = append(pairs,
		ConfigPair{KeyBitQuantum, encodeInt(uint32(c.BitQuantum))},
		ConfigPair{KeyFilters, c.Filters},
		ConfigPair{KeyHTTPPort, encodeInt(uint32(c.HTTPPort))},
		ConfigPair{KeyMBar, encodeInt(uint32(c.MBar))},
		ConfigPair{KeyVersion, c.Version},
	)
	pairs = append(pairs, c.Extra...)
	slices.SortFunc(pairs, func(a, b ConfigPair) int { return strings.Compare(a.Key, b.Key) })
	return &ConfigMsg{Pairs: pairs}, nil
}

// ParseConfig returns the typed view of m. All five standard keys are
// required, as SKS needs them all (it reads "http port" after the verdict
// and aborts without it). Integer values are read from their first 4 bytes
// as SKS does (CMarshal.int_of_string); a shorter value is an error.
// conflux insists on exactly 4 bytes; SKS and we ignore the rest. Duplicate
// keys: the last one wins. Errors wrap ErrMalformed.
func ParseConfig(m *ConfigMsg) (Config, error) {
	var c Config
	var err error
	get := func(key string) string {
		v, ok := m.Get(key)
		if !ok && err == nil {
			err = fmt.Errorf("recon/wire: config: missing entry %q: %w", key, ErrMalformed)
		}
		return v
	}
	getInt := func(key string) int {
		v := get(key)
		if err != nil {
			return 0
		}
		n, ok := decodeInt(v)
		if !ok {
			err = fmt.Errorf("recon/wire: config: %q value has %d bytes, want 4: %w", key, len(v), ErrMalformed)
		}
		return int(n)
	}
	c.Version = get(KeyVersion)
	c.Filters = get(KeyFilters)
	c.HTTPPort = getInt(KeyHTTPPort)
	c.BitQuantum = getInt(KeyBitQuantum)
	c.MBar = getInt(KeyMBar)
	if err != nil {
		return Config{}, err
	}
	for i, p := range m.Pairs {
		switch p.Key {
		case KeyBitQuantum, KeyFilters, KeyHTTPPort, KeyMBar, KeyVersion:
			continue
		}
		if slices.ContainsFunc(m.Pairs[i+1:], func(q ConfigPair) bool { return q.Key == p.Key }) {
			continue // a later pair with this key wins
		}
		c.Extra = append(c.Extra, p)
	}
	return c, nil
}

// Check applies SKS 1.1.6's acceptance rules (reconCS.ml test_configdata,
// spec recon.md §4.2) to the remote config and returns the verdict to send.
// The reasons are SKS's texts, byte for byte:
//
//  1. version missing: "Missing entry in configdata"; not three
//     dot-separated OCaml integers: "Error parsing configdata: ..."; below
//     0.1.5: "Requires version at least 0.1.5.  <remote> provided "
//     (two spaces after "0.1.5.", one at the end).
//  2. filters, split on "," as OCaml's Str.split does and compared as
//     sets: "filters do not match.\n\tlocal filters: [ a b ]\n\tremote
//     filters: [ a ]".
//  3. bitquantum and mbar, both read (missing: "Missing entry in
//     configdata"; under 4 bytes: "Error parsing configdata: End_of_file")
//     before either is compared: "bitquantum values do not match", then
//     "mbar values do not match".
//
// "http port" is not checked here: SKS reads it only after the verdict.
// Hockeypuck >= 2.2 is stricter (exact version and filters string, spec
// recon.md §4.2); that is the peer's business, not ours.
func (c Config) Check(remote *ConfigMsg) Verdict {
	fail := func(reason string) Verdict { return Verdict{Reason: reason} }
	const missing = "Missing entry in configdata"

	rv, ok := remote.Get(KeyVersion)
	if !ok {
		return fail(missing)
	}
	ver, exn := parseVersion(rv)
	if exn != "" {
		return fail("Error parsing configdata: " + exn)
	}
	if slices.Compare(ver[:], compatibleVersion[:]) < 0 {
		return fail(fmt.Sprintf("Requires version at least %s.  %s provided ", compatibleVersionString, rv))
	}

	rf, ok := remote.Get(KeyFilters)
	if !ok {
		return fail(missing)
	}
	local, theirs := SplitFilters(c.Filters), SplitFilters(rf)
	if !sameSet(local, theirs) {
		return fail(fmt.Sprintf("filters do not match.\n\tlocal filters: %s\n\tremote filters: %s", ocamlList(local), ocamlList(theirs)))
	}

	// OCaml evaluates "let bq = ... in let mbar = ... in" in order, and
	// both reads happen before either comparison.
	bq, reason := remoteInt(remote, KeyBitQuantum)
	if reason != "" {
		return fail(reason)
	}
	mbar, reason := remoteInt(remote, KeyMBar)
	if reason != "" {
		return fail(reason)
	}
	if int64(bq) != int64(c.BitQuantum) {
		return fail("bitquantum values do not match")
	}
	if int64(mbar) != int64(c.MBar) {
		return fail("mbar values do not match")
	}
	return Verdict{Passed: true}
}

// remoteInt reads a binary int value the way SKS does, returning the
// failure reason SKS would give.
func remoteInt(m *ConfigMsg, key string) (uint32, string) {
	v, ok := m.Get(key)
	if !ok {
		return 0, "Missing entry in configdata"
	}
	n, ok := decodeInt(v)
	if !ok {
		// Channel.string_in_channel raises End_of_file on a short read.
		return 0, "Error parsing configdata: End_of_file"
	}
	return n, ""
}

// SplitFilters splits a filters value the way SKS does (OCaml
// Str.split (Str.regexp ",")): one leading comma and a trailing one are
// dropped, but empty fields between commas are kept, so "a,,b" is
// ["a" "" "b"]. The spec's "empty fields dropped" (recon.md §4.2) holds only
// at the ends.
func SplitFilters(s string) []string {
	return ocamlSplit(s, ',', 0)
}

// ocamlSplit is Str.bounded_split for a one-character delimiter: a
// delimiter at the very start is skipped, the string ends the list
// (so a trailing delimiter adds nothing), and with limit > 0 the last
// field takes the rest of the string.
func ocamlSplit(s string, sep byte, limit int) []string {
	var out []string
	start := 0
	if len(s) > 0 && s[0] == sep {
		start = 1
	}
	for n := limit; start < len(s); n-- {
		if n == 1 {
			return append(out, s[start:])
		}
		i := strings.IndexByte(s[start:], sep)
		if i < 0 {
			return append(out, s[start:])
		}
		out = append(out, s[start:start+i])
		start += i + 1
	}
	return out
}

func sameSet(a, b []string) bool {
	as, bs := make(map[string]bool, len(a)), make(map[string]bool, len(b))
	for _, s := range a {
		as[s] = true
	}
	for _, s := range b {
		bs[s] = true
	}
	if len(as) != len(bs) {
		return false
	}
	for s := range as {
		if !bs[s] {
			return false
		}
	}
	return true
}

// ocamlList formats like SKS's MList.to_string: "[ a b ]", "[ ]" if empty.
func ocamlList(l []string) string {
	var sb strings.Builder
	sb.WriteString("[ ")
	for _, s := range l {
		sb.WriteString(s)
		sb.WriteByte(' ')
	}
	sb.WriteByte(']')
	return sb.String()
}

// parseVersion is SKS's Common.parse_version_string: Str.bounded_split on
// "." into at most 3 fields, then int_of_string on each. On failure it
// returns the text Printexc.to_string gives for the exception. OCaml
// evaluates tuple components right to left, so a missing third field is
// reported before a bad first one.
func parseVersion(s string) (v [3]int64, exn string) {
	f := ocamlSplit(s, '.', 3)
	for i := 2; i >= 0; i-- {
		if i >= len(f) {
			return v, `Invalid_argument("index out of bounds")`
		}
		n, ok := ocamlIntOfString(f[i])
		if !ok {
			return v, `Failure("int_of_string")`
		}
		v[i] = n
	}
	return v, ""
}

// ocamlIntOfString is OCaml's int_of_string on a 64-bit platform (runtime
// ints.c parse_intnat with 63 bits): an optional sign, an optional 0x/0o/
// 0b/0u prefix, digits with '_' allowed after the first one, range checked.
func ocamlIntOfString(s string) (int64, bool) {
	p, sign := 0, int64(1)
	if p < len(s) && s[p] == '-' {
		sign, p = -1, p+1
	} else if p < len(s) && s[p] == '+' {
		p++
	}
	base, signed := uint64(10), true
	if p+1 < len(s) && s[p] == '0' {
		switch s[p+1] {
		case 'x', 'X':
			base, signed, p = 16, false, p+2
		case 'o', 'O':
			base, signed, p = 8, false, p+2
		case 'b', 'B':
			base, signed, p = 2, false, p+2
		case 'u', 'U':
			signed, p = false, p+2
		}
	}
	digit := func(c byte) uint64 {
		switch {
		case c >= '0' && c <= '9':
			return uint64(c - '0')
		case c >= 'a' && c <= 'f':
			return uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			return uint64(c-'A') + 10
		}
		return 99
	}
	if p >= len(s) || digit(s[p]) >= base {
		return 0, false
	}
	res := digit(s[p])
	threshold := math.MaxUint64 / base
	for p++; p < len(s); p++ {
		if s[p] == '_' {
			continue
		}
		d := digit(s[p])
		if d >= base {
			return 0, false
		}
		if res > threshold {
			return 0, false
		}
		res = base*res + d
		if res < d {
			return 0, false
		}
	}
	const half = uint64(1) << 62 // 2^(nbits-1), nbits = 63
	if signed {
		if (sign > 0 && res >= half) || (sign < 0 && res > half) {
			return 0, false
		}
	} else if res >= 2*half {
		return 0, false
	}
	// Negate in 64 bits, then wrap to OCaml's 63-bit int as Val_long does.
	v := int64(res) * sign
	return v << 1 >> 1, true
}

func encodeInt(v uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return string(b[:])
}

// decodeInt reads the first 4 bytes of a binary int value.
func decodeInt(v string) (uint32, bool) {
	if len(v) < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32([]byte(v[:4])), true
}
