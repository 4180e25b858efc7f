package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets TestExitStatus run the real main in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("GENCORPUS_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"NoN", []string{"-o", "x.pgp"}, "-n 0"},
		{"NotANumber", []string{"-n", "many", "-o", "x.pgp"}, "invalid value"},
		{"Unknown", []string{"-n", "5", "-o", "x.pgp", "-bogus"}, "not defined: -bogus"},
		{"NoOutput", []string{"-n", "5"}, "exactly one of -out DIR and -o FILE"},
		{"BothOutputs", []string{"-n", "5", "-o", "x", "-out", "y"}, "exactly one of"},
		{"KeysPerFile", []string{"-n", "5", "-out", "y", "-keys-per-file", "0"}, "-keys-per-file 0"},
		{"Argument", []string{"-n", "5", "-o", "x", "extra"}, `unexpected argument "extra"`},
		{"Pool", []string{"-n", "5", "-o", "x", "-rsa-pool", "0"}, "-rsa-pool 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), c.args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("run(%q) = %v, want an error containing %q", c.args, err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if stdout.Len()+stderr.Len() != 0 {
				t.Errorf("printed %q %q", stdout.String(), stderr.String())
			}
		})
	}
}

func TestHelp(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &stdout, &stdout); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run(-h) = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(stdout.String(), "-keys-per-file") {
		t.Errorf("help lacks the flags:\n%s", stdout.String())
	}
}

func TestExitStatus(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-n", "0", "-o", filepath.Join(t.TempDir(), "x.pgp"))
	cmd.Env = append(os.Environ(), "GENCORPUS_RUN_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("gencorpus -n 0: %v, want exit status 1", err)
	}
	if got := stderr.String(); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "gencorpus: ") {
		t.Errorf("stderr = %q, want one line starting with gencorpus:", got)
	}
}

func TestFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.pgp")
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"-n", "20", "-seed", "3", "-rsa-pool", "2", "-o", file}, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "wrote 20 keys, ") || fi.Size() == 0 {
		t.Errorf("file %d bytes, summary:\n%s", fi.Size(), stdout.String())
	}
}

func TestDump(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dump")
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"-n", "25", "-rsa-pool", "2", "-out", dir, "-keys-per-file", "10"}, &stdout, &stdout); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sks-dump-0000.pgp", "sks-dump-0001.pgp", "sks-dump-0002.pgp", "metadata-sks-dump.txt", "MD5SUMS"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(stdout.String(), "3 dump files") {
		t.Errorf("summary:\n%s", stdout.String())
	}
}
