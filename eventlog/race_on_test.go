//go:build race

package eventlog_test

// raceEnabled: the race detector is on (sync.Pool then drops a share of
// what it is given, on purpose, so allocation counts mean little).
const raceEnabled = true
