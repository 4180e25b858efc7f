//go:build !linux

package projections

import (
	"errors"
	"os"
)

// adviseHugePages: transparent huge pages are Linux's; elsewhere the sorts'
// memory keeps the system's page size.
func adviseHugePages([]byte) error {
	return errors.New("transparent huge pages are not supported on this system")
}

// punchHole: elsewhere the runs' pages are freed when the files are
// removed.
func punchHole(*os.File, int64, int64) error {
	return errors.New("punching holes is not supported on this system")
}
