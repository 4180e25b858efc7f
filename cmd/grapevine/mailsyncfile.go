package main

// Reading an SKS mailsync file (spec config.md §5, mailsync.md §2).

import (
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
)

// ParseMailsync reads a mailsync file the way SKS 1.1.6 does (membership.ml
// load_mailsync_partners_file): everything from the first '#' on a line is
// a comment, blanks (space, tab, CR, LF) around the rest are stripped, and
// each line that contains '@' is one partner. The lines are returned as
// written: SKS joins them with ", " into the To: header of its sync mails,
// so a display name ("PKS <pgp-public-keys@example.org>") works.
//
// Lines that SKS would ignore or mangle are left out and reported: a line
// without '@' (SKS skips it silently, which hides typos) and a line that is
// not exactly one RFC 5322 address (SKS would put it into To: as it is,
// e.g. "a@example.org b@example.org", and sendmail -t would then mail
// someone else). When some lines are bad, ParseMailsync returns the good
// addresses together with an error that joins one *ConfigLineError per bad
// line ("name:line: reason"); the caller logs it and carries on, as SKS
// does. A read error returns nil.
//
// An empty result is not an error here; see mailsync.md §2.3 for what SKS
// does with no partners.
func ParseMailsync(r io.Reader, name string) ([]string, error) {
	var addrs []string
	var errs []error
	err := readConfLines(r, name, func(n int, line string) error {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = trimConfSpace(line)
		if line == "" {
			return nil
		}
		bad := func(format string, args ...any) error {
			errs = append(errs, &ConfigLineError{Name: name, Line: n, Reason: fmt.Sprintf(format, args...)})
			return nil
		}
		if b, ok := firstControlChar(line); ok {
			return bad("control character 0x%02x in line", b)
		}
		if !strings.Contains(line, "@") {
			return bad("%s: no '@', not an e-mail address (SKS 1.1.6 ignores this line)", quoteTrunc(line))
		}
		if _, err := mail.ParseAddress(line); err != nil {
			return bad("%s: not one e-mail address (%v)", quoteTrunc(line), err)
		}
		addrs = append(addrs, line)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return addrs, errors.Join(errs...)
}
