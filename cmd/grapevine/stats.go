package main

import (
	"context"
	"fmt"
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
		// A running daemon holds the basedir: ask it.
		if out, aerr := adminRequest(ctx, *basedirFlag, "GET", "/stats", nil); aerr == nil {
			fmt.Fprint(e.stdout, out)
			return nil
		}
		return fmt.Errorf("stats: %w", err)
	}
	defer b.Close()
	return writeStats(e.stdout, b)
}
