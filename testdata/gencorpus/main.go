// Command gencorpus writes a deterministic corpus of OpenPGP keys for
// benchmarks, tests and soak runs (package testdata/corpus).
//
//	go run ./testdata/gencorpus -n 100000 -seed 1 -out DIR [-keys-per-file 15000]
//	go run ./testdata/gencorpus -n 2000 -seed 1 -o keys.pgp
//
// -out writes SKS dump files (sks-dump-0000.pgp, ..., metadata-sks-dump.txt,
// MD5SUMS); -o writes one file of concatenated keys ("-" for stdout). The
// same -n and -seed (and -rsa-pool) give the same bytes on every machine.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "gencorpus: %v\n", err)
		os.Exit(1)
	}
}

const usage = `usage: gencorpus -n N [-seed S] (-out DIR [-keys-per-file K] | -o FILE) [-workers W] [-rsa-pool P] [-progress]`

// run is the whole command, testable in-process. Bad flags come back as
// one-line errors; -h prints the flags to stdout and returns flag.ErrHelp.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gencorpus", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by main
	var (
		n           = fs.Int("n", 0, "number of keys (required)")
		seed        = fs.Int64("seed", 1, "corpus seed")
		outDir      = fs.String("out", "", "write SKS dump files into this directory")
		outFile     = fs.String("o", "", `write all keys to this file ("-" for stdout)`)
		keysPerFile = fs.Int("keys-per-file", corpus.DefaultKeysPerFile, "keys per dump file (with -out)")
		workers     = fs.Int("workers", 0, "goroutines building keys (0: GOMAXPROCS)")
		rsaPool     = fs.Int("rsa-pool", corpus.DefaultRSAPoolSize, "distinct RSA moduli per size and role (changes the output)")
		progress    = fs.Bool("progress", false, "report progress on stderr")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return err
		}
		return fmt.Errorf("%v (%s)", firstLine(err.Error()), usage)
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q (%s)", fs.Arg(0), usage)
	case *n < 1 || *n > corpus.MaxN:
		return fmt.Errorf("-n %d: want 1 to %d", *n, corpus.MaxN)
	case (*outDir == "") == (*outFile == ""):
		return fmt.Errorf("give exactly one of -out DIR and -o FILE")
	case *keysPerFile < 1:
		return fmt.Errorf("-keys-per-file %d: want at least 1", *keysPerFile)
	case *workers < 0:
		return fmt.Errorf("-workers %d: want 0 or more", *workers)
	case *rsaPool < 1:
		return fmt.Errorf("-rsa-pool %d: want at least 1", *rsaPool)
	}

	opt := corpus.Options{N: *n, Seed: *seed, Workers: *workers, RSAPoolSize: *rsaPool}
	start := time.Now()
	if *progress {
		opt.Progress = func(keys int, bytes int64) {
			if keys%10000 == 0 || keys == *n {
				fmt.Fprintf(stderr, "gencorpus: %d keys, %d bytes, %s\n", keys, bytes, time.Since(start).Round(time.Millisecond))
			}
		}
	}
	var (
		st  corpus.Stats
		err error
	)
	where := *outDir
	if *outDir != "" {
		st, err = corpus.GenerateDump(ctx, *outDir, opt, *keysPerFile)
	} else {
		st, err = generateFile(ctx, *outFile, stdout, opt)
		where = *outFile
	}
	if err != nil {
		return err
	}
	took := time.Since(start)
	summary := stdout
	if *outFile == "-" {
		summary = stderr
	}
	fmt.Fprintf(summary, "wrote %d keys, %d bytes (%d bytes/key) to %s in %s (%.0f keys/s)\n",
		st.Keys, st.Bytes, st.Bytes/int64(st.Keys), where, took.Round(time.Millisecond), float64(st.Keys)/took.Seconds())
	fmt.Fprintf(summary, "primaries %v, %d without encryption subkey; %d user IDs (%d revoked), %d subkeys (%d revoked), %d revoked keys, %d expiring keys\n",
		st.ByAlgorithm, st.WithoutEncryption, st.UserIDs, st.RevokedUserIDs, st.Subkeys, st.RevokedSubkeys, st.RevokedKeys, st.ExpiringKeys)
	fmt.Fprintf(summary, "%d signatures, %d third-party certifications (at most %d on one key)\n",
		st.Signatures, st.Certifications, st.MaxCertifications)
	if len(st.Files) > 0 {
		fmt.Fprintf(summary, "%d dump files: %s ... %s\n", len(st.Files), st.Files[0], st.Files[len(st.Files)-1])
	}
	return nil
}

func generateFile(ctx context.Context, path string, stdout io.Writer, opt corpus.Options) (corpus.Stats, error) {
	if path == "-" {
		return corpus.Generate(ctx, stdout, opt)
	}
	f, err := os.Create(path)
	if err != nil {
		return corpus.Stats{}, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	st, err := corpus.Generate(ctx, bw, opt)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return st, fmt.Errorf("write %s: %w", path, err)
	}
	return st, nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
