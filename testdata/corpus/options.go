package corpus

import (
	"errors"
	"fmt"
	"runtime"
)

// MaxN is the largest corpus Generate accepts. Creation times are spread
// over fixed windows of at least eleven years and must stay distinct within
// each key class (see plan.created); 10^8 keys leave several seconds
// between neighbours.
const MaxN = 100_000_000

// DefaultRSAPoolSize is the number of distinct RSA moduli per size and role
// when Options.RSAPoolSize is zero.
const DefaultRSAPoolSize = 64

// DefaultKeysPerFile is the number of keys per dump file when GenerateDump
// is given zero: Hockeypuck's default, and the batch size sks fastbuild
// uses (spec dumps.md §1.1).
const DefaultKeysPerFile = 15000

// Options selects a corpus. The same Options, apart from Workers and
// Progress, give byte-identical output on every run and machine.
type Options struct {
	// N is the number of keys, 1 to MaxN.
	N int
	// Seed selects the corpus; any value is fine.
	Seed int64
	// Mix sets the proportions of key kinds. The zero Mix means DefaultMix().
	Mix Mix
	// RSAPoolSize is the number of distinct RSA moduli per size and role
	// (primary, encryption subkey, sign-only primary). Zero means
	// DefaultRSAPoolSize. Smaller pools start faster; the output depends
	// on it.
	RSAPoolSize int

	// Workers is the number of goroutines that build keys. Zero means
	// runtime.GOMAXPROCS(0). The output does not depend on it.
	Workers int
	// Progress, if not nil, is called on the goroutine that called
	// Generate (or GenerateDump) after every 1000 keys written and after
	// the last, with the totals so far.
	Progress func(keys int, bytes int64)
}

// Mix gives the proportions of key kinds. Fractions are clamped to [0, 1];
// the four primary kinds (Ed25519, RSA, ECDSA, SignOnly) are normalised by
// their sum, as are the RSA sizes, so only ratios matter there. Counts per
// kind are exact: position i of the output is mapped to a kind by a seeded
// permutation, not by a coin toss.
type Mix struct {
	// Ed25519 is the share of EdDSA (legacy, v4) Ed25519 primaries with a
	// Cv25519 ECDH encryption subkey.
	Ed25519 float64
	// RSA is the share of RSA primaries with an RSA encryption subkey of
	// the same size.
	RSA float64
	// ECDSA is the share of ECDSA primaries with an ECDH subkey on the same
	// curve (NIST P-256 or P-384).
	ECDSA float64
	// SignOnly is the share of keys without an encryption subkey: half
	// Ed25519 and half RSA primaries that sign and certify.
	SignOnly float64

	// RSA2048, RSA3072 and RSA4096 split the RSA keys by size.
	RSA2048, RSA3072, RSA4096 float64
	// P384 is the share of ECDSA keys on P-384; the rest use P-256.
	P384 float64

	// RevokedKeys is the share of keys with a key revocation signature.
	RevokedKeys float64
	// ExpiringKeys is the share of keys whose self-signatures set a key
	// expiration time (one to five years; many have expired by 2026).
	ExpiringKeys float64
	// RevokedUserIDs is the share of second and later user IDs that carry
	// a certification revocation by the key itself.
	RevokedUserIDs float64
	// RotatedSubkeys is the share of ECC keys with encryption subkeys that
	// have a revoked old subkey and a newer one.
	RotatedSubkeys float64

	// Certified is the share of keys that carry third-party certifications
	// from other corpus keys. Their number per key has a power-law tail,
	// P(d >= k) = k^-1.5, up to MaxCertifications.
	Certified float64
	// MaxCertifications caps the certifications on one key. It is also
	// capped at (N-1)/4 so that certifiers stay easy to find.
	MaxCertifications int
}

// DefaultMix returns the proportions used when Options.Mix is zero: roughly
// what a keyserver received in the 2015-2025 era.
func DefaultMix() Mix {
	return Mix{
		Ed25519: 0.45, RSA: 0.35, ECDSA: 0.15, SignOnly: 0.05,
		RSA2048: 0.55, RSA3072: 0.15, RSA4096: 0.30,
		P384:              0.30,
		RevokedKeys:       0.02,
		ExpiringKeys:      0.15,
		RevokedUserIDs:    0.10,
		RotatedSubkeys:    0.03,
		Certified:         0.50,
		MaxCertifications: 1000,
	}
}

// ValidationError reports an Options field with a bad value.
type ValidationError struct {
	Field string
	Value any
	Err   error
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("corpus: %s = %v: %v", e.Field, e.Value, e.Err)
}

func (e *ValidationError) Unwrap() error { return e.Err }

var (
	errRange = errors.New("out of range")
	errEmpty = errors.New("all shares are zero")
)

// withDefaults returns opt with zero fields replaced by their defaults.
func (opt Options) withDefaults() Options {
	if opt.Mix == (Mix{}) {
		opt.Mix = DefaultMix()
	}
	if opt.RSAPoolSize == 0 {
		opt.RSAPoolSize = DefaultRSAPoolSize
	}
	if opt.Workers == 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	return opt
}

// Validate reports the first field of opt, after defaults, that Generate
// would reject.
func (opt Options) Validate() error {
	opt = opt.withDefaults()
	m := opt.Mix
	switch {
	case opt.N < 1 || opt.N > MaxN:
		return &ValidationError{"N", opt.N, fmt.Errorf("%w: want 1 to %d", errRange, MaxN)}
	case opt.RSAPoolSize < 1:
		return &ValidationError{"RSAPoolSize", opt.RSAPoolSize, errRange}
	case opt.Workers < 1:
		return &ValidationError{"Workers", opt.Workers, errRange}
	case m.MaxCertifications < 0:
		return &ValidationError{"Mix.MaxCertifications", m.MaxCertifications, errRange}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"Ed25519", m.Ed25519}, {"RSA", m.RSA}, {"ECDSA", m.ECDSA}, {"SignOnly", m.SignOnly},
		{"RSA2048", m.RSA2048}, {"RSA3072", m.RSA3072}, {"RSA4096", m.RSA4096}, {"P384", m.P384},
		{"RevokedKeys", m.RevokedKeys}, {"ExpiringKeys", m.ExpiringKeys}, {"RevokedUserIDs", m.RevokedUserIDs},
		{"RotatedSubkeys", m.RotatedSubkeys}, {"Certified", m.Certified},
	} {
		if !(f.v >= 0 && f.v <= 1) { // also rejects NaN
			return &ValidationError{"Mix." + f.name, f.v, fmt.Errorf("%w: want 0 to 1", errRange)}
		}
	}
	if m.Ed25519+m.RSA+m.ECDSA+m.SignOnly == 0 {
		return &ValidationError{"Mix", "Ed25519+RSA+ECDSA+SignOnly", errEmpty}
	}
	if (m.RSA > 0 || m.SignOnly > 0) && m.RSA2048+m.RSA3072+m.RSA4096 == 0 {
		return &ValidationError{"Mix", "RSA2048+RSA3072+RSA4096", errEmpty}
	}
	return nil
}

// Stats summarises a generated corpus. Counts are of packets as written.
type Stats struct {
	Keys    int
	Bytes   int64
	Packets int64

	// ByAlgorithm counts primary keys by algorithm: "ed25519", "rsa2048",
	// "rsa3072", "rsa4096", "nistp256", "nistp384".
	ByAlgorithm map[string]int
	// WithoutEncryption counts keys without an encryption subkey.
	WithoutEncryption int

	UserIDs        int
	RevokedUserIDs int // user IDs with a revocation by the key itself
	Subkeys        int
	RevokedSubkeys int
	RevokedKeys    int
	ExpiringKeys   int // keys whose self-signatures set an expiration time

	// Signatures counts all signature packets, self-signatures and
	// revocations included; Certifications counts third-party
	// certifications (0x10-0x13 by another corpus key) only.
	Signatures     int
	Certifications int
	// MaxCertifications is the largest number of third-party
	// certifications on one key.
	MaxCertifications int

	// Files lists the dump files written by GenerateDump, in order.
	Files []string
}
