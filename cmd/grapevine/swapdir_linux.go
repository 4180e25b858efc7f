package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// swapInDir puts the directory fresh in place of final in one atomic step
// (renameat2 RENAME_EXCHANGE), then removes what was final, now at fresh.
// A crash at any moment leaves final either the old or the new directory,
// never missing (two renames left a window with no final, where the next
// start would find empty projections). Without an old final, or on a file
// system that cannot exchange, it falls back to swapInDirRenames.
func swapInDir(fresh, final string) error {
	err := unix.Renameat2(unix.AT_FDCWD, fresh, unix.AT_FDCWD, final, unix.RENAME_EXCHANGE)
	switch {
	case err == nil:
		if err := os.RemoveAll(fresh); err != nil {
			return fmt.Errorf("remove the replaced %s: %w", fresh, err)
		}
		return nil
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS):
		return swapInDirRenames(fresh, final)
	default:
		return fmt.Errorf("exchange %s and %s: %w", fresh, final, err)
	}
}
