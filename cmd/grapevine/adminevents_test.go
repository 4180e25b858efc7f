package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/testdata/corpus"
)

// TestAdminEventOffline: `grapevine block` with no daemon on the basedir
// applies its event itself instead of waiting for a runner that does not
// exist. It used to wait 30 s for one before applying: with a 10 s
// deadline on the command, that wait ran out and the command failed.
func TestAdminEventOffline(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(t.TempDir(), "keys.pgp")
	f, err := os.Create(keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := corpus.Generate(context.Background(), f, corpus.Options{N: 3, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mustRun(t, "import", "--basedir", dir, keys)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb strings.Builder
	fpr := strings.Repeat("0123456789", 4)
	if err := run(ctx, []string{"block", "--basedir", dir, "--reason", "test", fpr}, &out, &errb); err != nil {
		t.Fatalf("block offline: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "blocked") {
		t.Fatalf("block printed %q", out.String())
	}
	st := statsOf(t, dir)
	if st["log_offset"] != "4" {
		t.Fatalf("log_offset %s, want 4 (3 keys and the block)", st["log_offset"])
	}
	// The Hockeypuck dataset is caught up by serve, not by commands.
	for _, k := range []string{"applied_keys", "applied_search", "applied_ptree"} {
		if v := st[k]; v != st["log_offset"] {
			t.Errorf("%s %s after an offline block; want %s", k, v, st["log_offset"])
		}
	}
}
