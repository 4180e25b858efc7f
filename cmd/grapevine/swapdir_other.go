//go:build !linux

package main

// swapInDir puts the directory fresh in place of final (two renames: a
// crash between them leaves final missing and the old copy at final.old).
func swapInDir(fresh, final string) error { return swapInDirRenames(fresh, final) }
