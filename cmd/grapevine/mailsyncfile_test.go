package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseMailsyncFiles(t *testing.T) {
	tests := []struct {
		file string
		want []string
		errs []string
	}{
		{file: "spec-config-md.mailsync", want: []string{"pgp-public-keys@pks.example.org"}},
		{file: "debian-etc-sks.mailsync"},
		{file: "sks-sample.mailsync"},
		{file: "sks-peer.mailsync"},
		{file: "mixed.mailsync", want: []string{
			"pgp-public-keys@pks.example.org",
			"PKS Sync <pgp-public-keys@pks2.example.net>",
			`"Quoted Name" <x@y.example>`,
		}, errs: []string{
			`mixed.mailsync:4: "pgp-public-keys at example.com": no '@', not an e-mail address (SKS 1.1.6 ignores this line)`,
			`mixed.mailsync:5: "a@example.org b@example.org": not one e-mail address (mail: expected single address, got "b@example.org")`,
			`mixed.mailsync:6: "keys": no '@', not an e-mail address (SKS 1.1.6 ignores this line)`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseMailsync(openTestdata(t, tc.file), tc.file)
			if !slices.Equal(got, tc.want) {
				t.Errorf("addresses\n got %q\nwant %q", got, tc.want)
			}
			var gotErrs []string
			if err != nil {
				gotErrs = strings.Split(err.Error(), "\n")
				var le *ConfigLineError
				if !errors.As(err, &le) {
					t.Errorf("error %#v holds no *ConfigLineError", err)
				}
			}
			if !slices.Equal(gotErrs, tc.errs) {
				t.Errorf("errors\n got %q\nwant %q", gotErrs, tc.errs)
			}
		})
	}
}

func TestParseMailsyncLines(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{in: "", want: nil},
		{in: "a@example.org", want: []string{"a@example.org"}},
		{in: "\t a@example.org \r\n\nb@example.net#c\n", want: []string{"a@example.org", "b@example.net"}},
		{in: "a@exa\x01mple.org\n", err: "m:1: control character 0x01 in line"},
		{in: "@\n", err: `m:1: "@": not one e-mail address (mail: `}, // the rest is net/mail's
		{in: "x\n" + strings.Repeat("y", maxConfLineBytes) + "@z\n", err: "m:2: line longer than 65536 bytes"},
	}
	for i, tc := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			got, err := ParseMailsync(strings.NewReader(tc.in), "m")
			if !slices.Equal(got, tc.want) {
				t.Errorf("addresses = %q, want %q", got, tc.want)
			}
			if got := errString(err); !strings.HasPrefix(got, tc.err) || (got == "") != (tc.err == "") {
				t.Errorf("error = %q, want %q", got, tc.err)
			}
		})
	}
}

func TestParseMailsyncReadError(t *testing.T) {
	boom := errors.New("boom")
	got, err := ParseMailsync(errReader{boom}, "mailsync")
	if got != nil || !errors.Is(err, boom) {
		t.Errorf("ParseMailsync = %v, %v; want nil, boom", got, err)
	}
}

func FuzzParseMailsync(f *testing.F) {
	files, err := filepath.Glob(filepath.Join(sksconfTestdata, "*.mailsync"))
	if err != nil {
		f.Fatal(err)
	}
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		addrs, err := ParseMailsync(bytes.NewReader(data), "fuzz")
		for _, a := range addrs {
			if !strings.Contains(a, "@") || strings.ContainsAny(a, "#\n") || a != strings.TrimSpace(a) {
				t.Fatalf("bad address %q", a)
			}
		}
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz:") {
					t.Fatalf("error line %q does not start with the name", line)
				}
			}
		}
	})
}
