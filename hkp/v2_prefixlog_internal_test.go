package hkp

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// countingLog is an empty change log that counts the days looked up.
type countingLog struct{ lookups int }

func (c *countingLog) Append(context.Context, ...*eventlog.Event) (eventlog.Index, error) {
	return 0, nil
}
func (c *countingLog) IndexAtTime(time.Time) (eventlog.Index, error) {
	c.lookups++
	return 7, nil
}
func (c *countingLog) NewIterator(from, to eventlog.Index) *eventlog.Iterator {
	panic("an empty day needs no iterator")
}

// TestPrefixLogCachesFinishedDays: a finished day is read from the log
// once; today, which can still change, every time.
func TestPrefixLogCachesFinishedDays(t *testing.T) {
	cl := &countingLog{}
	s := &Server{app: cl}
	cfg := DefaultConfig()
	s.setConfig(&cfg)
	get := func(day string) {
		t.Helper()
		rec := httptest.NewRecorder()
		if err := s.v2PrefixLog(rec, httptest.NewRequest("GET", "/pks/v2/prefixlog/"+day, nil), []string{day}); err != nil || rec.Code != 200 {
			t.Fatalf("prefixlog/%s: %d %v", day, rec.Code, err)
		}
	}
	get("2024-02-29")
	n := cl.lookups
	get("2024-02-29")
	if cl.lookups != n {
		t.Errorf("a finished day was read from the log again")
	}
	today := time.Now().UTC().Format(time.DateOnly)
	get(today)
	n = cl.lookups
	get(today)
	if cl.lookups == n {
		t.Errorf("today's list was cached")
	}
}

func TestPrefixLogCacheKeepsNewestDays(t *testing.T) {
	var c prefixLogCache
	for d := 1; d <= prefixLogDays+5; d++ {
		c.put(fmt.Sprintf("2024-01-%02d", d), nil)
	}
	if len(c.days) != prefixLogDays {
		t.Fatalf("%d days kept, want %d", len(c.days), prefixLogDays)
	}
	if _, ok := c.get("2024-01-05"); ok {
		t.Error("an old day survived")
	}
	if _, ok := c.get(fmt.Sprintf("2024-01-%02d", prefixLogDays+5)); !ok {
		t.Error("the newest day was evicted")
	}
}
