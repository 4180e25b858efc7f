package pgpkey_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// Benchmarks of the import path on the Debian keyring (905 keys, 28.5 MB:
// large keys, ~31 KB each) and on the small test keys (~1 KB each, closer to
// the median key of a keyserver dump). Each reports keys/s.

type benchInput struct {
	name string
	data []byte
	raws []*pgpkey.RawKey
	keys []*pgpkey.Key
}

func benchInputs(b *testing.B) []benchInput {
	b.Helper()
	var out []benchInput
	deb := readDebianKeyring(b)
	small := fixtureStream(b).data
	// Repeat the seven test keys so that one iteration does real work.
	small = bytes.Repeat(small, 150)
	for _, in := range []benchInput{{name: "debian", data: deb}, {name: "small", data: small}} {
		in.raws = readAllKeys(b, in.data)
		for _, raw := range in.raws {
			k, err := pgpkey.ParseKey(raw)
			if err != nil {
				b.Fatal(err)
			}
			in.keys = append(in.keys, k)
		}
		out = append(out, in)
	}
	return out
}

func reportKeys(b *testing.B, n int) {
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
}

func BenchmarkParseKey(b *testing.B) {
	for _, in := range benchInputs(b) {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				for _, raw := range in.raws {
					if _, err := pgpkey.ParseKey(raw); err != nil {
						b.Fatal(err)
					}
				}
			}
			reportKeys(b, len(in.raws))
		})
	}
}

func BenchmarkHash(b *testing.B) {
	for _, in := range benchInputs(b) {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				for _, k := range in.keys {
					k.Hash()
				}
			}
			reportKeys(b, len(in.keys))
		})
	}
}

func BenchmarkReader(b *testing.B) {
	for _, in := range benchInputs(b) {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				r := pgpkey.NewReader(bytes.NewReader(in.data))
				for {
					if _, err := r.Next(); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
			}
			reportKeys(b, len(in.raws))
		})
	}
}

// BenchmarkImport is the whole per-key import path of one worker: read,
// canonicalise, hash, fingerprint.
func BenchmarkImport(b *testing.B) {
	for _, in := range benchInputs(b) {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				r := pgpkey.NewReader(bytes.NewReader(in.data))
				for {
					raw, err := r.Next()
					if err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
					k, err := pgpkey.ParseKey(raw)
					if err != nil {
						b.Fatal(err)
					}
					k.Hash()
					k.Fingerprint()
				}
			}
			reportKeys(b, len(in.raws))
		})
	}
}

func BenchmarkMarshal(b *testing.B) {
	for _, in := range benchInputs(b) {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				for _, k := range in.keys {
					buf = k.AppendMarshal(buf[:0])
				}
			}
		})
	}
}

func BenchmarkSummary(b *testing.B) {
	for _, in := range benchInputs(b) {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, k := range in.keys {
					k.Summary()
				}
			}
			reportKeys(b, len(in.keys))
		})
	}
}
