package hkp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// ChangeLog is what the prefix log reads: the event log's time index and
// iterator. *eventlog.Log implements it; the Server uses it when its
// Appender does too, and answers 501 otherwise.
type ChangeLog interface {
	IndexAtTime(t time.Time) (eventlog.Index, error)
	NewIterator(from, to eventlog.Index) *eventlog.Iterator
}

const (
	// prefixLogHexDigits is the length of each prefix: 32 bits, as
	// Hockeypuck serves. Short enough that a refreshing client does not
	// reveal which key it holds, long enough to skip most refreshes.
	prefixLogHexDigits = 8
	// maxPrefixLogEvents bounds the log entries one request reads. A day
	// with more changes (a bulk import) gets 503 rather than a silently
	// cut list, which would make clients skip refreshes they need.
	maxPrefixLogEvents = 50000
	// prefixLogDays bounds the finished days whose lists are kept.
	prefixLogDays = 32
)

// prefixLogCache keeps the prefix lists of finished UTC days: the log's
// times never decrease, so a day that is over never changes, and clients
// asking for it again (every refresh) cost a map lookup instead of a log
// scan. The zero value is ready to use.
type prefixLogCache struct {
	mu   sync.Mutex
	days map[string][]string
}

func (c *prefixLogCache) get(day string) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.days[day]
	return p, ok
}

func (c *prefixLogCache) put(day string, p []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.days == nil {
		c.days = make(map[string][]string)
	}
	if _, ok := c.days[day]; !ok && len(c.days) >= prefixLogDays {
		oldest := ""
		for d := range c.days { // YYYY-MM-DD sorts by date
			if oldest == "" || d < oldest {
				oldest = d
			}
		}
		delete(c.days, oldest)
	}
	c.days[day] = p
}

// v2PrefixLog serves prefixlog/<YYYY-MM-DD>: the first 8 hex digits
// (lowercase) of the fingerprint of every key that changed on that UTC
// day, one per CRLF-terminated line, sorted and without duplicates, as
// text/plain (draft §5.1.6; Hockeypuck's format). Changes are the log's
// key events of that day, whatever their origin; admin deletions are not
// listed, and blocked keys never reach the log.
func (s *Server) v2PrefixLog(w http.ResponseWriter, r *http.Request, ident []string) error {
	cl, ok := s.app.(ChangeLog)
	if !ok {
		return &httpError{http.StatusNotImplemented, "Not implemented", "this server keeps no change log"}
	}
	if len(ident) != 1 {
		return errBadRequest("prefixlog takes one date, YYYY-MM-DD")
	}
	day, err := time.Parse(time.DateOnly, ident[0])
	if err != nil || len(ident[0]) != len(time.DateOnly) {
		return errBadRequest("prefixlog date %q is not YYYY-MM-DD", ident[0])
	}
	prefixes, cached := s.prefixLogs.get(ident[0])
	if !cached {
		// Whether the day is over, decided before reading: events of the
		// day may still arrive while we read until it is.
		over := !time.Now().UTC().Before(day.Add(24 * time.Hour))
		if prefixes, err = dayPrefixes(cl, day); err != nil {
			return err
		}
		if over {
			s.prefixLogs.put(ident[0], prefixes)
		}
	}
	var b strings.Builder
	for _, p := range prefixes {
		b.WriteString(p)
		b.WriteString("\r\n")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	return writeBody(w, r, []byte(b.String()))
}

// dayPrefixes reads the log entries of [day, day+24h) UTC.
func dayPrefixes(cl ChangeLog, day time.Time) ([]string, error) {
	start := day.UTC()
	end := start.Add(24 * time.Hour)
	before, err := cl.IndexAtTime(start.Add(-time.Nanosecond))
	if err != nil {
		return nil, fmt.Errorf("prefix log %s: %w", start.Format(time.DateOnly), err)
	}
	last, err := cl.IndexAtTime(end.Add(-time.Nanosecond))
	if err != nil {
		return nil, fmt.Errorf("prefix log %s: %w", start.Format(time.DateOnly), err)
	}
	from, to := before+1, last+1
	if to <= from {
		return nil, nil
	}
	if to-from > maxPrefixLogEvents {
		return nil, &httpError{http.StatusServiceUnavailable, "Service unavailable",
			fmt.Sprintf("%s holds %d changes, more than the %d this server lists; refresh every key", start.Format(time.DateOnly), to-from, maxPrefixLogEvents)}
	}
	it := cl.NewIterator(from, to)
	defer it.Close()
	seen := make(map[string]bool)
	var out []string
	for {
		_, e, err := it.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("prefix log %s: %w", start.Format(time.DateOnly), err)
		}
		if e.Kind != eventlog.KindKeySubmitted || len(e.Key) == 0 {
			continue
		}
		raw, err := pgpkey.FirstKey(e.Key)
		if err != nil || raw.Packets[0].Tag != pgpkey.TagPublicKey {
			continue
		}
		fpr := (&pgpkey.Key{Primary: raw.Packets[0]}).Fingerprint()
		if fpr.IsZero() {
			continue
		}
		p := strings.ToLower(fpr.String()[:prefixLogHexDigits])
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out, nil
}
