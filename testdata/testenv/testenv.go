// Package testenv holds the few helpers that tests across grapevine share:
// finding ../shared beside the checkout and requiring real programs.
//
// It lives under testdata/ because it is test support, not product code; Go
// still builds it when a test imports it by path.
//
// The rule it enforces (DEVELOPERS.md): a test whose real program or fixture
// is missing may skip on a developer's machine but must fail when CI=true.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// InCI reports whether the tests run under .ci/run (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips the test, or fails it under CI, saying what is missing.
func Missing(tb testing.TB, what string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("%s is missing (CI=true: .ci/run must install it)", what)
	}
	tb.Skipf("%s is missing; skipped locally (it must be present when CI=true)", what)
}

// RepoRoot returns the directory holding go.mod.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("testenv: cannot locate source file")
	}
	// file is <root>/testdata/testenv/testenv.go
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// SharedDir returns ../shared beside the checkout (spec, fixtures, tools),
// or skips/fails through Missing when it is absent. GRAPEVINE_SHARED
// overrides the location.
func SharedDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("GRAPEVINE_SHARED")
	if dir == "" {
		dir = filepath.Join(filepath.Dir(RepoRoot(tb)), "shared")
	}
	if _, err := os.Stat(filepath.Join(dir, "fixtures")); err != nil {
		Missing(tb, "shared directory "+dir)
	}
	return dir
}

// SharedFile returns the path of a file under the shared directory,
// e.g. SharedFile(t, "fixtures/sks/test-keys/keys-a.pgp").
func SharedFile(tb testing.TB, rel string) string {
	tb.Helper()
	p := filepath.Join(SharedDir(tb), rel)
	if _, err := os.Stat(p); err != nil {
		Missing(tb, "shared file "+p)
	}
	return p
}

// RequireProgram returns the path of a real program (gpg, sq, nginx, sks...)
// or skips/fails through Missing.
func RequireProgram(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(tb, "program "+name)
	}
	return p
}

// RequireFile returns path if it exists (e.g. a file from a Debian package)
// or skips/fails through Missing.
func RequireFile(tb testing.TB, path, pkg string) string {
	tb.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(tb, path+" (Debian package "+pkg+")")
	}
	return path
}
