package eventlog

// SetAfterWriteHook makes every later batch call fn once it is written, and
// fail if fn returns an error, as if its fsync had failed. Tests only; call
// it while no Append is in flight.
func SetAfterWriteHook(l *Log, fn func() error) { l.afterWriteHook = fn }

// TailWindow returns the entries [first, end) the in-memory tail holds.
func TailWindow(l *Log) (first, end Index) { return l.tail.window() }

// DirectoryListings returns how many times l listed its directory.
func DirectoryListings(l *Log) int64 { return l.listings.Load() }

// OpenSegments reports l's segment files kept open for Read: how many are
// cached, how many are open (cached, or evicted while a Read used them),
// and how many Reads found theirs cached and how many opened one.
func OpenSegments(l *Log) (cached, open, hits, opens int) { return l.files.stats() }
