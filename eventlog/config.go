package eventlog

import (
	"errors"
	"fmt"

	"github.com/rs/zerolog"
)

// Errors returned by this package. Compare with errors.Is: most come back
// wrapped with what was being done.
var (
	// ErrClosed: the Log was closed.
	ErrClosed = errors.New("eventlog: closed")
	// ErrNotFound: an index outside [FirstIndex, LastIndex].
	ErrNotFound = errors.New("eventlog: index not found")
	// ErrCorrupt: a record failed its checksum or is malformed, or the log
	// files are damaged somewhere other than a torn tail.
	ErrCorrupt = errors.New("eventlog: corrupt")
	// ErrTooLarge: an event whose record exceeds Config.MaxEventBytes.
	ErrTooLarge = errors.New("eventlog: event too large")
	// ErrInvalid: an event Append refuses (unknown kind or origin, missing
	// key or target, time out of range).
	ErrInvalid = errors.New("eventlog: invalid event")
	// ErrUnknownVersion: a record written by a newer format version.
	ErrUnknownVersion = errors.New("eventlog: unknown record format version")
	// ErrReadOnly: Append on a Log opened with OpenReadOnly.
	ErrReadOnly = errors.New("eventlog: opened read-only")
	// ErrLocked: another process has the log open for writing.
	ErrLocked = errors.New("eventlog: locked by another process")
)

const (
	// DefaultSegmentSize is 4 MiB, not tidwall/wal's 20 MiB: tidwall/wal
	// keeps the tail segment in memory as one slice that grows by append,
	// allocating about 5 times the segment's bytes as it fills. Smaller
	// segments keep that churn in the CPU caches and in heap memory the
	// runtime reuses instead of fresh pages: BenchmarkAppendBatch (8192
	// events of 1.4 KB per Append) needs about 35 % less CPU than with
	// 20 MiB. Below that, a segment per 2 MiB means more files, and an
	// fsync and a directory sync for each one tidwall/wal starts.
	DefaultSegmentSize = 4 << 20
	// DefaultMaxEventBytes bounds one record. The largest keys on the SKS
	// network are a few MiB; 64 MiB leaves room without letting one upload
	// exhaust memory.
	DefaultMaxEventBytes = 64 << 20
	// DefaultTailBytes is the size of the in-memory copy of the newest
	// records (Config.TailBytes): at 1.4 KB per uploaded key, the last
	// 3,000 keys, over a second of uploads at full speed, while the
	// projections following the log read a few records behind the writer.
	DefaultTailBytes = 4 << 20
	// DefaultMaxOpenSegments is how many segment files Read keeps open
	// (Config.MaxOpenSegments): at the default segment size, the most
	// recently read GiB of the log. Each is a file descriptor, and the
	// process also has Pebble's table files (up to its MaxOpenFiles, 1,000
	// by default), the log's writer and the network connections. Go raises
	// the soft RLIMIT_NOFILE to the hard limit at start, but a hard limit
	// of 4,096 is still common, so 256 leaves most of it to the others. A
	// log of the whole SKS keyspace has thousands of segments: where reads
	// from the log are spread over it and the limit allows, raise this.
	DefaultMaxOpenSegments = 256

	// MaxOpenSegmentsLimit caps Config.MaxOpenSegments: a value above it
	// is a mistake (the hard RLIMIT_NOFILE is rarely higher), not a wish.
	MaxOpenSegmentsLimit = 1 << 16

	// maxLimitBytes caps both sizes so that a segment always stays below
	// 2 GiB (segments overrun SegmentSize by at most one record) and
	// offsets inside a segment fit in a uint32.
	maxLimitBytes = 1 << 30
)

// Config configures a Log. The zero value of each field means its default.
type Config struct {
	// Logger receives lifecycle and recovery messages. Zero value: no
	// logging (zerolog.Nop()).
	Logger zerolog.Logger
	// NoSync skips fsync. DANGER: Append then returns before events are on
	// stable storage, so a machine crash or power loss can lose events that
	// callers were told were stored (an HKP client got its 200, a recon peer
	// was told we have the key) and the projections can end up ahead of the
	// log. A process crash alone loses nothing. ONLY for tests and
	// benchmarks; never set it in production.
	NoSync bool
	// SegmentSize is the target size of one segment file in bytes; a
	// segment may overrun it by one record. Zero: DefaultSegmentSize (4 MiB).
	// At most 1 GiB.
	SegmentSize int
	// MaxEventBytes bounds the encoded size of one event; Append rejects a
	// larger one with ErrTooLarge. Zero: DefaultMaxEventBytes (64 MiB). At
	// most 1 GiB.
	MaxEventBytes int
	// TailBytes bounds the copy of the newest records that a Log opened
	// for appending keeps in memory, so that readers following the log
	// (the projections, after every group commit) read them without
	// touching the segment files. Zero: DefaultTailBytes (4 MiB); negative:
	// no copy, every read goes to the files. At most 1 GiB.
	TailBytes int
	// DropWritten asks the kernel, once a batch is durable, to drop the
	// pages it occupied in the page cache (POSIX_FADV_DONTNEED on the
	// segment files, behind the writer; Linux only, elsewhere nothing).
	// For a writer whose records nobody reads back soon, a bulk import:
	// the pages freed are reused by its next writes instead of memory new
	// to the machine, which on a virtual machine can cost more than the
	// copy itself. Reads of those records then go to the disk. Only clean
	// pages are dropped, so durability is unchanged; with NoSync nothing is
	// dropped. Zero value: pages are left to the kernel.
	DropWritten bool
	// MaxOpenSegments is how many segment files Read keeps open between
	// reads, the least recently read closed first, so that a random read
	// of an entry no longer in the in-memory tail does not open and close
	// its file. Zero: DefaultMaxOpenSegments (256); negative: none kept,
	// every such read opens the file. At most 65,536.
	MaxOpenSegments int
}

// DefaultConfig returns the production configuration.
func DefaultConfig() Config {
	return Config{
		Logger:          zerolog.Nop(),
		SegmentSize:     DefaultSegmentSize,
		MaxEventBytes:   DefaultMaxEventBytes,
		TailBytes:       DefaultTailBytes,
		MaxOpenSegments: DefaultMaxOpenSegments,
	}
}

// ConfigError says which Config field is wrong and why.
type ConfigError struct {
	Field string
	Value any
	Err   error
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("eventlog: config %s = %v: %v", e.Field, e.Value, e.Err)
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Validate reports the first field that Open would refuse, as a
// *ConfigError.
func (c Config) Validate() error {
	switch {
	case c.SegmentSize < 0:
		return &ConfigError{"SegmentSize", c.SegmentSize, errors.New("must not be negative")}
	case c.SegmentSize > maxLimitBytes:
		return &ConfigError{"SegmentSize", c.SegmentSize, fmt.Errorf("must be at most %d", maxLimitBytes)}
	case c.MaxEventBytes < 0:
		return &ConfigError{"MaxEventBytes", c.MaxEventBytes, errors.New("must not be negative")}
	case c.MaxEventBytes > maxLimitBytes:
		return &ConfigError{"MaxEventBytes", c.MaxEventBytes, fmt.Errorf("must be at most %d", maxLimitBytes)}
	case c.TailBytes > maxLimitBytes:
		return &ConfigError{"TailBytes", c.TailBytes, fmt.Errorf("must be at most %d", maxLimitBytes)}
	case c.MaxOpenSegments > MaxOpenSegmentsLimit:
		return &ConfigError{"MaxOpenSegments", c.MaxOpenSegments, fmt.Errorf("must be at most %d", MaxOpenSegmentsLimit)}
	}
	return nil
}

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.SegmentSize == 0 {
		c.SegmentSize = DefaultSegmentSize
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = DefaultMaxEventBytes
	}
	if c.TailBytes == 0 {
		c.TailBytes = DefaultTailBytes
	}
	if c.MaxOpenSegments == 0 {
		c.MaxOpenSegments = DefaultMaxOpenSegments
	}
	return c
}
