package main

import (
	"context"
	"fmt"

	"github.com/grapevine-keyserver/grapevine/projections"
)

func (e *env) statsCmd(ctx context.Context, args []string) error {
	fs := e.newFlagSet("stats", "[--basedir DIR]")
	basedirFlag := fs.String("basedir", ".", "base directory (as in SKS)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("stats: unexpected argument %q", rest[0])
	}
	b, err := openBasedir(*basedirFlag, newLogger(e.stderr), false)
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	defer b.Close()
	keys, err := b.store.KeyCount()
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	applied, err := b.store.AppliedIndexes()
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	fmt.Fprintf(e.stdout, "keys: %d\n", keys)
	fmt.Fprintf(e.stdout, "log_first_offset: %d\n", b.log.FirstIndex())
	fmt.Fprintf(e.stdout, "log_offset: %d\n", b.log.LastIndex())
	fmt.Fprintf(e.stdout, "log_bytes: %d\n", b.log.SizeBytes())
	for _, p := range projections.Projections {
		fmt.Fprintf(e.stdout, "applied_%s: %d\n", p, applied[p])
	}
	fmt.Fprintf(e.stdout, "ptree_elements: %d\n", b.store.PtreeElements())
	return nil
}
