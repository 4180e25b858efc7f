//go:build !linux

package projections

import "errors"

// adviseHugePages: transparent huge pages are Linux's; elsewhere the sorts'
// memory keeps the system's page size.
func adviseHugePages([]byte) error {
	return errors.New("transparent huge pages are not supported on this system")
}
