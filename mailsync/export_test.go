package mailsync

import "github.com/grapevine-keyserver/grapevine/eventlog"

// SetCrashAfterSend installs the hook that runs between a successful send
// and the cursor write; an error from it ends Run as a crash would.
func SetCrashAfterSend(s *Sender, fn func(eventlog.Index) error) { s.crashAfterSend = fn }

// CRC24 exposes the armor checksum.
var CRC24 = crc24
