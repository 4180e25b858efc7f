package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestSKSConfScratch(t *testing.T) {
	files, _ := filepath.Glob("testdata/sksconf/*.sksconf")
	for _, f := range files {
		fh, _ := os.Open(f)
		c, notices, err := ParseSKSConf(fh, filepath.Base(f))
		fh.Close()
		fmt.Printf("== %s\n", f)
		if err != nil {
			fmt.Printf("  ERR %v\n", err)
			continue
		}
		for _, n := range notices {
			fmt.Printf("  N %s\n", n)
		}
		fmt.Printf("  validate: %v\n", c.Validate())
	}
}
