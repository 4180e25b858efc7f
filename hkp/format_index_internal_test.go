package hkp

import (
	"strings"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/projections/pgpkey"
)

// TestMREntryTextFollowsExpiry: an MR entry's lines are kept between
// writes, but the "e" flags must still be those of the time written: the
// kept text is rendered again whenever the time crosses an expiry date, in
// either direction (clocks can step back).
func TestMREntryTextFollowsExpiry(t *testing.T) {
	created := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	keyExp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	uidExp := time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
	e := &mrEntry{
		id: "0123456789ABCDEF0123456789ABCDEF01234567",
		sum: pgpkey.Summary{Algorithm: 22, Bits: 256, Created: created, Expires: keyExp,
			UIDs: []pgpkey.UIDSummary{{Text: "Alice <alice@example.org>", Created: created, Expires: uidExp}}},
		order: []int{0},
	}
	render := func(now time.Time) string {
		var b strings.Builder
		appendMREntry(&b, e, now)
		return b.String()
	}
	for _, now := range []time.Time{
		created, uidExp.Add(-time.Second), uidExp, uidExp.Add(time.Hour), keyExp.Add(-time.Second),
		keyExp, keyExp.Add(24 * time.Hour), uidExp.Add(-time.Hour), keyExp, created,
	} {
		if got, want := string(e.appendText(nil, now)), render(now); got != want {
			t.Fatalf("at %s: kept text\n%s\nwant\n%s", now, got, want)
		}
	}
	// The flags do differ across those times, so the test sees a change.
	if render(created) == render(keyExp) || render(uidExp) == render(keyExp) {
		t.Fatal("expiry flags do not change with the time: the test checks nothing")
	}
}
