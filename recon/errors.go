package recon

import (
	"errors"
	"fmt"
)

var (
	// ErrProtocol marks a peer that broke the protocol: an unexpected or
	// malformed message, a bogus field element, an Error message, a
	// SyncFail for a leaf. SKS aborts such a session and fetches nothing
	// (spec recon.md §8.4); so do we.
	ErrProtocol = errors.New("recon: protocol violation")

	// ErrIncomplete marks a session that ended before Done: EOF, a socket
	// error, a timeout, cancellation, or SKS's Error reply for a node it
	// does not have. As in SKS, what was collected so far is still fetched
	// (spec recon.md §8.4).
	ErrIncomplete = errors.New("recon: session ended early")

	// ErrNotMember is returned for a connection from an address that is
	// in no member's address list (spec recon.md §10.1).
	ErrNotMember = errors.New("recon: not a member")

	// ErrBusy is returned when MaxConcurrentSessions sessions already run.
	ErrBusy = errors.New("recon: too many sessions")
)

// ConfigError reports a Config exchange that ended with "failed"
// (spec recon.md §4). ByPeer tells whether the peer rejected our Config
// or we rejected the peer's. Reason is SKS's text, e.g. "mbar values do
// not match".
type ConfigError struct {
	ByPeer bool
	Reason string
}

func (e *ConfigError) Error() string {
	if e.ByPeer {
		return fmt.Sprintf("recon: peer rejected our config: %s", e.Reason)
	}
	return fmt.Sprintf("recon: peer's config rejected: %s", e.Reason)
}

func protocolErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}
