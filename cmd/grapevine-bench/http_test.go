package main

import "testing"

func TestAllApplied(t *testing.T) {
	for _, tc := range []struct {
		stats string
		want  bool
	}{
		{"keys: 3\nlog_offset: 7\napplied_keys: 7\napplied_hockeypuck: 7\n", true},
		{"keys: 3\nlog_offset: 7\napplied_keys: 7\napplied_hockeypuck: 5\n", false},
		{"log_offset: 7\napplied_keys: 6\napplied_hockeypuck: 7\n", false},
		{"log_offset: 7\n", false},                    // no projection named: not a stats answer
		{"applied_keys: 7\n", false},                  // no log offset
		{"log_offset:  12 \napplied_keys:12\n", true}, // spacing as stats may print it
	} {
		if got := allApplied(tc.stats); got != tc.want {
			t.Errorf("allApplied(%q) = %v, want %v", tc.stats, got, tc.want)
		}
	}
}
