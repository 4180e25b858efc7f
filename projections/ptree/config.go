package ptree

import "fmt"

// Defaults from SKS 1.1.6 (spec recon.md §5.1). Peers must agree on
// DefaultBitQuantum and DefaultMBar; the thresholds only shape the local tree.
const (
	DefaultBitQuantum     = 2     // Settings.bitquantum: 4 children per internal node
	DefaultMBar           = 5     // Settings.mbar: 6 sample points
	DefaultSplitThreshold = 50    // mbar × ptree_thresh_mult (10): a leaf splits above this
	DefaultJoinThreshold  = 25    // split / 2: an internal node joins at or below this
	DefaultMaxCachedNodes = 65536 // about 64 MiB of leaves at 50 elements each; SKS keeps a similar bound (pTreeDB)
)

// maxBitQuantum keeps a child index in one key byte; maxMBar keeps the
// svalue count in one value byte.
const (
	maxBitQuantum = 8
	maxMBar       = 254
)

// Config describes a prefix tree and where it lives in Pebble. Build it
// with DefaultConfig and change fields before Open.
type Config struct {
	// KeyPrefix is prepended to every Pebble key the tree owns (see doc.go
	// for the layout). The tree owns every key that starts with it, so it
	// must not be a prefix of another projection's keys. Empty means the
	// tree owns the whole keyspace.
	KeyPrefix []byte

	// MaxCachedNodes bounds the clean nodes the writer keeps in memory.
	// Nodes changed since the last Flush are pinned and not counted against
	// the bound until Flush writes them. Zero means no bound.
	MaxCachedNodes int

	// BitQuantum is the number of element bits consumed per level, so an
	// internal node has 2^BitQuantum children (1..8; SKS uses 2).
	BitQuantum int

	// MBar is m̄, the largest difference one node decodes; nodes keep
	// MBar+1 svalues (1..254; SKS uses 5).
	MBar int

	// SplitThreshold: a leaf with more elements than this splits (SKS 50).
	SplitThreshold int

	// JoinThreshold: an internal node with this many elements or fewer
	// becomes a leaf again (SKS 25). Must be below SplitThreshold.
	JoinThreshold int
}

// DefaultConfig returns the SKS-compatible configuration with an empty
// KeyPrefix.
func DefaultConfig() Config {
	return Config{
		MaxCachedNodes: DefaultMaxCachedNodes,
		BitQuantum:     DefaultBitQuantum,
		MBar:           DefaultMBar,
		SplitThreshold: DefaultSplitThreshold,
		JoinThreshold:  DefaultJoinThreshold,
	}
}

// ConfigValidationError names the Config field that Validate rejected.
type ConfigValidationError struct {
	Field string
	Value int
	Err   string
}

func (e *ConfigValidationError) Error() string {
	return fmt.Sprintf("ptree: config %s = %d: %s", e.Field, e.Value, e.Err)
}

// Validate checks c and returns a *ConfigValidationError for the first
// field that is out of range.
func (c Config) Validate() error {
	switch {
	case c.MaxCachedNodes < 0:
		return &ConfigValidationError{"MaxCachedNodes", c.MaxCachedNodes, "must not be negative"}
	case c.BitQuantum < 1 || c.BitQuantum > maxBitQuantum:
		return &ConfigValidationError{"BitQuantum", c.BitQuantum, "must be 1..8"}
	case c.MBar < 1 || c.MBar > maxMBar:
		return &ConfigValidationError{"MBar", c.MBar, "must be 1..254"}
	case c.SplitThreshold < 1:
		return &ConfigValidationError{"SplitThreshold", c.SplitThreshold, "must be positive"}
	case c.JoinThreshold < 0 || c.JoinThreshold >= c.SplitThreshold:
		return &ConfigValidationError{"JoinThreshold", c.JoinThreshold, "must be 0 or more and below SplitThreshold"}
	}
	return nil
}

// NumSamples returns MBar+1, the number of svalues per node and of sample
// points.
func (c Config) NumSamples() int { return c.MBar + 1 }

// fanout returns 2^BitQuantum.
func (c Config) fanout() int { return 1 << c.BitQuantum }
