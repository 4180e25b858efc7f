package main

import (
	"fmt"
	"os"
)

// swapInDirRenames puts fresh in place of final with two renames, moving
// the old final aside to final.old first and removing it at the end.
func swapInDirRenames(fresh, final string) error {
	old := final + ".old"
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(final, old); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Rename(fresh, final); err != nil {
		return err
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("remove the replaced %s: %w", old, err)
	}
	return nil
}
