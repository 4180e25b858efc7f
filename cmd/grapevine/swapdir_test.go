package main

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestSwapInDir: the fresh directory takes final's place, with or without
// an old final, and nothing is left beside it.
func TestSwapInDir(t *testing.T) {
	for _, withOld := range []bool{true, false} {
		dir := t.TempDir()
		final, fresh := filepath.Join(dir, "db"), filepath.Join(dir, "db.replay")
		os.Mkdir(fresh, 0o755)
		os.WriteFile(filepath.Join(fresh, "new"), nil, 0o644)
		if withOld {
			os.Mkdir(final, 0o755)
			os.WriteFile(filepath.Join(final, "old"), nil, 0o644)
		}
		if err := swapInDir(fresh, final); err != nil {
			t.Fatalf("old final %v: %v", withOld, err)
		}
		if _, err := os.Stat(filepath.Join(final, "new")); err != nil {
			t.Errorf("old final %v: the fresh directory is not in place: %v", withOld, err)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			t.Errorf("old final %v: left %v, want only db", withOld, ents)
		}
	}
}

// TestSwapInDirNeverMissing: on Linux the swap is one exchange, so final
// exists at every moment. The two-rename way first clears final.old and
// moves final there (a crash then leaves no final); a file put at
// final.old shows which way the swap went.
func TestSwapInDirNeverMissing(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("renameat2 exchange is Linux only")
	}
	dir := t.TempDir()
	final, fresh := filepath.Join(dir, "db"), filepath.Join(dir, "db.replay")
	os.Mkdir(final, 0o755)
	os.Mkdir(fresh, 0o755)
	os.WriteFile(filepath.Join(fresh, "new"), nil, 0o644)
	os.WriteFile(final+".old", []byte("marker"), 0o644)
	if err := swapInDir(fresh, final); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(final, "new")); err != nil {
		t.Fatalf("final does not hold the fresh directory: %v", err)
	}
	if b, err := os.ReadFile(final + ".old"); err != nil || string(b) != "marker" {
		t.Fatalf("final.old touched (%v): the swap went through two renames, not one exchange", err)
	}
}
