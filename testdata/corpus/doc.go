// Package corpus generates deterministic, realistic corpora of OpenPGP
// public keys for benchmarks, tests and soak runs: import 100,000 keys into
// grapevine and into SKS 1.1.6 side by side, and anyone can rerun with the
// same bytes.
//
// It lives under testdata/ because it is test support, not product code;
// build and test it by path (go test ./testdata/corpus). The command
// testdata/gencorpus writes corpora to files.
//
// # Use
//
//	st, err := corpus.Generate(ctx, w, corpus.Options{N: 100000, Seed: 1})
//	st, err := corpus.GenerateDump(ctx, dir, corpus.Options{N: 100000, Seed: 1}, 15000)
//
// Generate streams N transferable public keys, concatenated, to w.
// GenerateDump writes the same bytes split into SKS dump files
// (sks-dump-0000.pgp, ...) plus metadata-sks-dump.txt and MD5SUMS (spec
// dumps.md §1). Both return Stats. Memory stays bounded whatever N: keys
// are built by Options.Workers goroutines in a small window and written in
// order.
//
// # Determinism
//
// The same Options (N, Seed, Mix, RSAPoolSize; not Workers or Progress)
// give byte-identical output on every run and machine. TestGolden pins the
// SHA-256 of a small corpus; if it changes, benchmark results quoted
// against a seed change meaning, so say so in the commit.
//
//   - Every random choice comes from SHA-256 in counter mode, keyed by
//     (purpose, seed, key index) — see stream. Key i is a pure function of
//     (Options, i), so any worker can build any key, and a worker that
//     needs key j to certify key i recomputes j's identity.
//   - Sampling uses integers only: Go may fuse floating-point multiply-adds
//     on some architectures, so floats could differ between amd64 and arm64.
//   - Nothing reads crypto/rand. Ed25519 keys come from seeds, ECDSA and
//     ECDH scalars from the stream. Since Go 1.26, crypto/ecdsa and
//     crypto/rsa ignore a caller's random reader and use system randomness;
//     ECDSA therefore signs through crypto/ecdsa's RFC 6979 path (nil
//     reader), and go-crypto's packet.Config.Rand is a reader that fails,
//     so any randomness the packet layer might want shows up as an error.
//     EdDSA and RSA PKCS #1 v1.5 signatures are deterministic anyway.
//   - RSA keys are generated from the stream with math/big (Baillie-PSW),
//     not with crypto/rsa.GenerateKey. They are multi-prime (256-bit
//     primes), which no one can tell from outside and which makes signing
//     4 (2048 bits) to 11 (4096 bits) times cheaper than with crypto/rsa.
//     Because RSA generation is still slow, each size has a pool of
//     Options.RSAPoolSize moduli (default 64) per role (primary, encryption
//     subkey, sign-only primary), filled lazily and kept for the process;
//     keys reuse pool moduli with distinct creation times, so every key
//     packet and fingerprint in a corpus is distinct.
//
// # What a key looks like
//
// Every key is a version 4 OpenPGP key, written as GnuPG exports it:
// old-format packet headers with the shortest length (the form SKS accepts
// and writes back), in the order primary key, key revocation (if any), then
// each user ID with its positive self-certification (0x13), its revocation
// (0x30, if any) and third-party certifications sorted by time, then each
// subkey with its binding (0x18) and revocation (0x28, if any). All
// signatures are made with go-crypto's packet layer and verify; GnuPG,
// Sequoia and SKS 1.1.6 take every key (TestGnuPGImport,
// TestSequoiaInspect, TestSKSImport).
// Self-signatures carry GnuPG's algorithm preferences of the key's era,
// MDC features, keyserver no-modify, key flags, key expiration for expiring
// keys, and issuer key ID and fingerprint.
//
// The default Mix (DefaultMix) gives, with exact counts per kind:
//
//   - 45% Ed25519 (EdDSA legacy) primaries with a Cv25519 ECDH subkey,
//     created 2015-2025;
//   - 35% RSA primaries with an RSA subkey of the same size: 55% 2048-bit
//     (from 1998), 15% 3072-bit (from 2008), 30% 4096-bit (from 2002);
//   - 15% ECDSA primaries with an ECDH subkey, 70% NIST P-256 and 30% P-384
//     (from 2013);
//   - 5% keys without an encryption subkey, half Ed25519, half RSA.
//
// Within each window, creation times get denser towards 2025. Drawn per
// key: 2% revoked keys (with a reason), 15% expiring keys (1 to 10 years;
// many expired by 2026), 3% of ECC keys with a revoked old subkey and a
// newer one. Keys have 1 to 4 user IDs (55%, 27%, 11%, 7%), 10% of later
// user IDs are revoked. Names come from lists in 16 locales, including
// non-ASCII ones (Müller, Łukasz, Дмитрий, 田中 太郎, محمد), which people
// sometimes write in ASCII instead; addresses use reserved domains (RFC
// 2606), popular ones like example.org most of all, so keyword search finds
// very common and very rare words.
//
// # The web of trust
//
// Half of the keys carry third-party certifications by other corpus keys;
// how many follows a power law, P(d >= k) = k^-1.5, capped at
// Mix.MaxCertifications (1000): most keys have 0 to 2, a few hundreds.
// Certifiers are drawn with a heavy tail too (density proportional to
// rank^(-2/3) over a seeded ranking of all keys), so a few keys certify
// hundreds of others, as in the real web. This reproduces the degree
// distribution that preferential attachment produces without its state:
// growing the graph edge by edge needs O(N) memory and a sequential pass,
// while this model lets every key be built independently. Each
// certification lies in the lifetime of both keys (after creation, before
// expiry or revocation); 1% are later revoked by their issuer. GnuPG does
// not use expired or revoked keys as issuers, so gpg --check-sigs shows
// certifications made by them before they expired as "?" rather than "!".
//
// # Not modelled
//
// Version 3, DSA, ElGamal, v5/v6 and post-quantum keys; user attributes
// (photo IDs); signing or authentication subkeys; designated revokers;
// non-exportable or trust signatures; malformed or duplicate packets for
// SKS's merge rules (use hand-made fixtures for those). Subpackets are in
// go-crypto's order, and the issuer key ID is hashed, where GnuPG puts it
// in the unhashed area.
//
// # Speed
//
// About 0.8 ms of CPU per key, plus about 4 s once per seed to fill the RSA
// pools. Measured on a shared two-core VM (Go 1.26): N=10,000 took 12.7 s
// of CPU and N=100,000 took 82 s of CPU with 56 MB peak RSS, so about 40 s
// on two idle cores. Keys average 1.4 KB (140 MB per 100,000 keys).
package corpus
