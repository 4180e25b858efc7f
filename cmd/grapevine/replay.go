package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/grapevine-keyserver/grapevine/projections"
)

func (e *env) replayCmd(ctx context.Context, args []string) error {
	fs := e.newFlagSet("replay", "[--basedir DIR]")
	basedirFlag := fs.String("basedir", ".", "base directory (as in SKS)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("replay: unexpected argument %q", rest[0])
	}
	logger := newLogger(e.stderr)
	b, err := openBasedirLog(*basedirFlag, logger, false)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer b.Close()

	// Rebuild into a fresh directory and swap it in only when complete, so
	// an interrupted replay leaves the old projections in place.
	final := filepath.Join(b.dir, dbDir)
	fresh := final + ".replay"
	if err := os.RemoveAll(fresh); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	cfg := projections.DefaultConfig()
	cfg.Logger = logger
	cfg.Log = b.log
	store, err := projections.Open(fresh, cfg)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	b.store = store
	if err := b.catchUp(ctx, e.stderr, "replay"); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if err := store.Close(); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	b.store = nil
	if err := swapInDir(fresh, final); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if b.store, err = projections.Open(final, cfg); err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	n, _ := b.store.KeyCount()
	fmt.Fprintf(e.stdout, "replayed %d events: %d keys\n", b.store.Applied(), n)
	return nil
}
